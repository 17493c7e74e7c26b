//! Tests of the ClickModels parser on fixtures in both variants.

use super::*;
use crate::error::{Error, ErrorPolicy};
use crate::test_files::{collect_sessions, expect_parse_error, TempFile};

fn parse(text: &[u8], policy: ErrorPolicy) -> (Vec<Session>, Option<Error>, Stats) {
    let file = TempFile::new("click_log.tsv", text);
    let lines = LineReader::open(file.path()).unwrap();
    collect_sessions(&mut ClickModelsParser::new(lines, Rejector::new(policy)))
}

fn parse_strict(text: &[u8]) -> Session {
    let (sessions, error, _) = parse(text, ErrorPolicy::Strict);
    assert!(error.is_none(), "{error:?}");
    assert_eq!(sessions.len(), 1);
    sessions.into_iter().next().unwrap()
}

fn clicks(session: &Session) -> Vec<bool> {
    session.results.iter().map(|result| result.click).collect()
}

fn urls(session: &Session) -> Vec<u64> {
    session
        .results
        .iter()
        .map(|result| result.document_key)
        .collect()
}

fn url(text: &str) -> u64 {
    document_fingerprint(text.as_bytes())
}

#[test]
fn list_variant_counts_clicks() {
    let session = parse_strict(
        b"q1\tcheap flights\t213\t0\t[\"u1\", \"u2\", \"u3\"]\t[false, false, false]\t[0, 2, 0]\n",
    );
    assert_eq!(session.query_key, query_fingerprint(b"cheap flights\t213"));
    assert_eq!(urls(&session), vec![url("u1"), url("u2"), url("u3")]);
    assert_eq!(clicks(&session), vec![false, true, false]);
    assert_eq!(session.events.repeated_clicks, 1);
    let positions: Vec<u32> = session.results.iter().map(|r| r.position).collect();
    assert_eq!(positions, vec![1, 2, 3]);
}

#[test]
fn object_variant_counts_invalid_keys() {
    let session = parse_strict(
        b"q1\tcheap flights\t213\t0\t{\"0\": \"u1\", \"1\": \"u2\", \"2\": \"u3\"}\t{}\t{\"1\": 2, \"x\": 1}\n",
    );
    assert_eq!(urls(&session), vec![url("u1"), url("u2"), url("u3")]);
    assert_eq!(clicks(&session), vec![false, true, false]);
    assert_eq!(session.events.repeated_clicks, 1);
    assert_eq!(session.events.invalid_position_keys, 1);
}

#[test]
fn object_urls_end_at_first_gap() {
    let session = parse_strict(
        b"q\tq\t1\t0.5\t{\"1\": \"b\", \"0\": \"a\", \"3\": \"d\", \"-1\": \"z\", \"01x\": \"y\"}\t{\"0\": true, \"3\": false}\t{\"1\": 1, \"3\": 1, \"7\": 0}\n",
    );
    assert_eq!(urls(&session), vec![url("a"), url("b")]);
    assert_eq!(clicks(&session), vec![false, true]);
    // URL keys "3", "-1", "01x"; layout key "3"; click keys "3" and "7".
    assert_eq!(session.events.invalid_position_keys, 6);
    assert!(session.has_logged_click);
}

#[test]
fn extra_click_entries_counted() {
    let session = parse_strict(b"1\tQ\t1\t0.1\t[\"a\", \"b\"]\t[false, true]\t[0, 0, 0, 3]\n");
    assert_eq!(clicks(&session), vec![false, false]);
    assert_eq!(session.events.extra_click_entries, 2);
    assert!(
        session.has_logged_click,
        "a click beyond the URLs is still a logged click"
    );
    assert_eq!(session.events.repeated_clicks, 0);
}

#[test]
fn query_text_and_region_key_the_query() {
    let text = "1\tмосква\t-5\t1\t[\"a\"]\t[false]\t[1]\n2\tмосква\t7\t1\t[\"a\"]\t[false]\t[1]\n";
    let (sessions, error, _) = parse(text.as_bytes(), ErrorPolicy::Strict);
    assert!(error.is_none(), "{error:?}");
    assert_eq!(
        sessions[0].query_key,
        query_fingerprint("москва\t-5".as_bytes())
    );
    assert_ne!(sessions[0].query_key, sessions[1].query_key);
}

#[test]
fn parse_errors_name_field_and_line() {
    let cases: [(&[u8], Field, &str); 14] = [
        (
            b"1\tq\t1\t1.5\t[\"a\"]\t[false]\t[1]",
            Field::IntentWeight,
            "1.5",
        ),
        (
            b"1\tq\t1\t-0.1\t[\"a\"]\t[false]\t[1]",
            Field::IntentWeight,
            "-0.1",
        ),
        (
            b"1\tq\t1\tnan\t[\"a\"]\t[false]\t[1]",
            Field::IntentWeight,
            "nan",
        ),
        (b"1\tq\tx\t0\t[\"a\"]\t[false]\t[1]", Field::Region, "x"),
        (
            b"1\tq\xff\t1\t0\t[\"a\"]\t[false]\t[1]",
            Field::Query,
            "q\u{fffd}",
        ),
        (
            b"1\tq\t1\t0\t[\"a\", 3]\t[false]\t[1]",
            Field::Urls,
            "[\"a\", 3]",
        ),
        (b"1\tq\t1\t0\t[\"a\"\t[false]\t[1]", Field::Urls, "[\"a\""),
        (b"1\tq\t1\t0\t\"a\"\t[false]\t[1]", Field::Urls, "\"a\""),
        (b"1\tq\t1\t0\t[\"a\"]\t[1]\t[1]", Field::Layout, "[1]"),
        (b"1\tq\t1\t0\t[\"a\"]\t{}\t[1]", Field::Layout, "{}"),
        (b"1\tq\t1\t0\t[\"a\"]\t[false]\t[-1]", Field::Clicks, "[-1]"),
        (
            b"1\tq\t1\t0\t[\"a\"]\t[false]\t[1.0]",
            Field::Clicks,
            "[1.0]",
        ),
        (
            b"1\tq\t1\t0\t[\"a\", \"b\"]\t[false]\t[1]",
            Field::Clicks,
            "[1]",
        ),
        (
            b"1\tq\t1\t0\t[\"a\"]\t[false]",
            Field::Line,
            "1\tq\t1\t0\t[\"a\"]\t[false]",
        ),
    ];
    for (bad, field, text) in cases {
        let mut content = b"1\tq\t1\t0\t[\"a\"]\t[false]\t[1]\n\n".to_vec();
        content.extend_from_slice(bad);
        content.push(b'\n');
        let (sessions, error, _) = parse(&content, ErrorPolicy::Strict);
        let error = expect_parse_error(error);
        assert_eq!((error.field, error.lineno), (field, 3), "{text:?}");
        assert_eq!(error.text, text);
        assert!(error.expected.len() > 5);
        assert_eq!(sessions.len(), 1);
    }
}

#[test]
fn skip_counts_by_field() {
    let text = b"1\tq\t1\t2\t[\"a\"]\t[false]\t[1]\n\
1\tq\t1\t0\t[\"a\"]\t[false]\t[1]\n\
1\tq\t1\t0\t{\"0\": \"a\"}\t[false]\t{}\r\n\
1\tq\t1\t0\t[\"a\"]\t[false]\t[1]";
    let (sessions, error, stats) = parse(text, ErrorPolicy::Skip);
    assert!(error.is_none(), "{error:?}");
    assert_eq!(sessions.len(), 2);
    assert_eq!(stats.skipped_by_field.get(Field::IntentWeight), 1);
    assert_eq!(stats.skipped_by_field.get(Field::Layout), 1);
    assert_eq!(stats.sessions_skipped, 2);
    assert_eq!(stats.lines_read, 4);
}

#[test]
fn click_on_invalid_key_is_logged() {
    let session = parse_strict(b"1\tq\t1\t0\t{\"0\": \"a\"}\t{}\t{\"x\": 2}\n");
    assert_eq!(clicks(&session), vec![false]);
    assert!(session.has_logged_click);
    assert_eq!(session.events.invalid_position_keys, 1);
    assert_eq!(session.events.repeated_clicks, 0);
}
