//! Tests of the Yandex click-log parser on tiny fixtures with invented ids.

use super::*;
use crate::error::{Error, ErrorPolicy};
use crate::options::{Format, ReaderOptions};
use crate::test_files::{collect_sessions, expect_parse_error, TempFile};

fn parse(
    text: &[u8],
    policy: ErrorPolicy,
    query_key: &str,
) -> (Vec<Session>, Option<Error>, Stats) {
    let file = TempFile::new("yandex", text);
    let options = ReaderOptions::default().with_query_key(query_key).unwrap();
    let config = options.parser_config(Format::Yandex).unwrap();
    let lines = LineReader::open(file.path()).unwrap();
    collect_sessions(&mut YandexParser::new(
        lines,
        Rejector::new(policy),
        &config,
    ))
}

fn parse_strict(text: &[u8]) -> (Vec<Session>, Option<Error>, Stats) {
    parse(text, ErrorPolicy::Strict, "query_region")
}

fn urls(session: &Session) -> Vec<u64> {
    session
        .results
        .iter()
        .map(|result| result.document_key)
        .collect()
}

fn clicks(session: &Session) -> Vec<bool> {
    session.results.iter().map(|result| result.click).collect()
}

fn url(id: &str) -> u64 {
    document_fingerprint(id.as_bytes())
}

/// The example of the format description: repeated click, second query with 3 URLs, another
/// session with the same query in another region.
const FIXTURE: &[u8] = b"7\t0\tQ\t1234\t5\t11\t12\t13\t14\t15\t16\t17\t18\t19\t20\n\
7\t15\tC\t13\n\
7\t40\tC\t17\n\
7\t41\tC\t17\n\
7\t52\tQ\t1300\t5\t21\t22\t23\n\
7\t60\tC\t22\n\
8\t0\tQ\t1234\t213\t12\t11\t13\t14\t15\t16\t17\t18\t19\t20\n";

#[test]
fn fixture_sessions_parsed() {
    let (sessions, error, stats) = parse_strict(FIXTURE);
    assert!(error.is_none(), "{error:?}");
    assert_eq!(sessions.len(), 3);

    assert_eq!(sessions[0].query_key, query_fingerprint(b"1234_5"));
    assert_eq!(sessions[0].results.len(), 10);
    let mut expected = vec![false; 10];
    expected[2] = true;
    expected[6] = true;
    assert_eq!(clicks(&sessions[0]), expected);
    assert_eq!(sessions[0].events.repeated_clicks, 1);
    let positions: Vec<u32> = sessions[0].results.iter().map(|r| r.position).collect();
    assert_eq!(positions, (1..=10).collect::<Vec<u32>>());

    assert_eq!(sessions[1].query_key, query_fingerprint(b"1300_5"));
    assert_eq!(urls(&sessions[1]), vec![url("21"), url("22"), url("23")]);
    assert_eq!(clicks(&sessions[1]), vec![false, true, false]);

    assert_eq!(sessions[2].query_key, query_fingerprint(b"1234_213"));
    assert!(!sessions[2].has_logged_click);
    assert_eq!(stats.lines_read, 7);
}

#[test]
fn query_key_without_region() {
    let (sessions, _, _) = parse(FIXTURE, ErrorPolicy::Strict, "query");
    assert_eq!(sessions[0].query_key, query_fingerprint(b"1234"));
    assert_eq!(sessions[0].query_key, sessions[2].query_key);
}

#[test]
fn ids_keyed_by_decimal_value() {
    let (sessions, _, _) = parse_strict(b"1\t0\tQ\t0042\t07\t0011\n1\t3\tC\t11\n");
    assert_eq!(sessions[0].query_key, query_fingerprint(b"42_7"));
    assert_eq!(urls(&sessions[0]), vec![url("11")]);
    assert_eq!(clicks(&sessions[0]), vec![true]);
}

#[test]
fn clicks_not_shown_and_before_query() {
    let text = b"3\t0\tC\t11\n\
4\t0\tQ\t1\t1\t11\t12\n\
4\t5\tC\t99\n\
5\t1\tC\t11\n\
4\t9\tC\t11\n";
    let (sessions, error, stats) = parse_strict(text);
    assert!(error.is_none(), "{error:?}");
    // The click with SessionID 5 closes the session of SessionID 4, so the later click with
    // SessionID 4 finds no open session.
    assert_eq!(sessions.len(), 1);
    assert_eq!(clicks(&sessions[0]), vec![false, false]);
    assert_eq!(sessions[0].events.clicks_not_shown, 1);
    assert!(sessions[0].has_logged_click);
    assert_eq!(stats.clicks_before_query, 3);
}

#[test]
fn duplicate_url_click_goes_to_first() {
    let (sessions, _, _) = parse_strict(b"1\t0\tQ\t1\t1\t11\t12\t11\n1\t1\tC\t11\n1\t2\tC\t11\n");
    assert_eq!(clicks(&sessions[0]), vec![true, false, false]);
    assert_eq!(sessions[0].events.repeated_clicks, 1);
}

#[test]
fn parse_errors_name_field_and_line() {
    let cases: [(&[u8], Field, &str); 11] = [
        (b"x\t0\tQ\t1\t1\t11", Field::SessionId, "x"),
        (b"1\t-3\tQ\t1\t1\t11", Field::TimePassed, "-3"),
        (b"1\t0\tT\t1\t1\t11", Field::ActionType, "T"),
        (b"1\t0\tQ\t1a\t1\t11", Field::QueryId, "1a"),
        (b"1\t0\tQ\t1\t\t11", Field::RegionId, ""),
        (b"1\t0\tQ\t1\t1\t11\t\xff", Field::UrlId, "\u{fffd}"),
        (b"1\t0\tQ\t1\t1", Field::Line, "1\t0\tQ\t1\t1"),
        (b"1\t0\tC\t11\t12", Field::Line, "1\t0\tC\t11\t12"),
        (b"1\t0\tC", Field::Line, "1\t0\tC"),
        (b"1\t0", Field::Line, "1\t0"),
        (b"1\t0\tC\t1.5", Field::UrlId, "1.5"),
    ];
    for (bad, field, text) in cases {
        let mut content = b"9\t0\tQ\t1\t1\t11\n\n".to_vec();
        content.extend_from_slice(bad);
        content.extend_from_slice(b"\n9\t0\tQ\t2\t1\t12\n");
        let (sessions, error, _) = parse_strict(&content);
        let error = expect_parse_error(error);
        assert_eq!((error.field, error.lineno), (field, 3), "{bad:?}");
        assert_eq!(error.text, text, "{bad:?}");
        assert!(sessions.len() <= 1, "{bad:?}");
    }
}

#[test]
fn strict_error_waits_for_finished_session() {
    let (sessions, error, _) = parse_strict(b"1\t0\tQ\t1\t1\t11\n2\t0\tQ\t1\t1\tx\n");
    assert_eq!(
        sessions.len(),
        1,
        "the session before the error comes first"
    );
    assert_eq!(expect_parse_error(error).field, Field::UrlId);
}

#[test]
fn skip_drops_only_malformed_sessions() {
    let text = b"1\t0\tQ\t1\t1\t11\n\
1\t1\tC\tbad\n\
1\t2\tC\t11\n\
2\t0\tQ\t2\t1\t12\n\
3\t0\tQ\tx\t1\t13\n\
3\t1\tC\t13\n\
4\t0\tQ\t4\t1\t14\n\
4\t1\tZ\t14\n\
5\t0\tQ\t5\t1\t15\n\
x\t0\tQ\t6\t1\t16\n\
6\t1\tC\t16\n";
    let (sessions, error, stats) = parse(text, ErrorPolicy::Skip, "query_region");
    assert!(error.is_none(), "{error:?}");
    let queries: Vec<u64> = sessions.iter().map(|s| s.query_key).collect();
    assert_eq!(
        queries,
        vec![query_fingerprint(b"2_1"), query_fingerprint(b"5_1")]
    );
    assert_eq!(stats.sessions_skipped, 4);
    assert_eq!(stats.skipped_by_field.get(Field::UrlId), 1);
    assert_eq!(stats.skipped_by_field.get(Field::QueryId), 1);
    assert_eq!(stats.skipped_by_field.get(Field::ActionType), 1);
    assert_eq!(stats.skipped_by_field.get(Field::SessionId), 1);
    // The click with SessionID 6 follows a line with an invalid session id, which it closes.
    assert_eq!(stats.clicks_before_query, 1);
}

#[test]
fn crlf_blank_lines_and_no_final_newline() {
    let (sessions, error, stats) = parse_strict(b"\r\n1\t0\tQ\t1\t1\t11\t12\r\n\r\n1\t4\tC\t12");
    assert!(error.is_none(), "{error:?}");
    assert_eq!(clicks(&sessions[0]), vec![false, true]);
    assert_eq!(stats.lines_read, 4);
}
