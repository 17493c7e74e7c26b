//! Tests of the Baidu-ULTR session parser on tiny fixtures with invented ids.

use super::*;
use crate::error::{Error, ErrorPolicy, ParseError};
use crate::options::{Format, ReaderOptions};
use crate::test_files::TempFile;

/// Builds a 32-field document line. Fields the parser ignores get an abstract, `-` or `0`.
pub(crate) fn document_line(pos: &str, url_md5: &str, title: &str, click: &str) -> String {
    let mut fields = vec!["0"; DOCUMENT_FIELDS];
    fields[column::POS] = pos;
    fields[column::URL_MD5] = url_md5;
    fields[column::TITLE] = title;
    fields[3] = "301\x01302";
    fields[4] = "-";
    fields[column::CLICK] = click;
    fields[6] = "-";
    fields.join("\t") + "\n"
}

pub(crate) const MISSING: &str = "21429";
pub(crate) const PSEUDO: &str = "3742\x0111492\x0112169\x015061\x0116905";

fn shown(url_md5: &str, position: u32, click: bool) -> SessionResult {
    SessionResult {
        document_key: document_fingerprint(url_md5.as_bytes()),
        position,
        click,
    }
}

fn session(query_tokens: &str, results: Vec<SessionResult>) -> Session {
    Session {
        query_key: query_fingerprint(query_tokens.as_bytes()),
        has_logged_click: results.iter().any(|result| result.click),
        results,
        ..Session::default()
    }
}

/// Parses every session of `text`, stopping at the first error.
fn parse_all(text: &str, policy: ErrorPolicy) -> (Vec<Session>, Option<Error>, Stats) {
    parse_with(text, policy, &ReaderOptions::default())
}

/// Parses every session of `text` with the Baidu settings of `options`.
fn parse_with(
    text: &str,
    policy: ErrorPolicy,
    options: &ReaderOptions,
) -> (Vec<Session>, Option<Error>, Stats) {
    let file = TempFile::new("part-00000", text.as_bytes());
    let config = options.parser_config(Format::Baidu).unwrap();
    let lines = LineReader::open(file.path()).unwrap();
    let mut parser = BaiduParser::new(lines, Rejector::new(policy), &config);
    let mut sessions = Vec::new();
    let mut stats = Stats::default();
    let mut session = Session::default();
    loop {
        match parser.next_session(&mut session, &mut stats) {
            Ok(true) => sessions.push(session.clone()),
            Ok(false) => return (sessions, None, stats),
            Err(error) => return (sessions, Some(error), stats),
        }
    }
}

fn expect_parse_error(error: Option<Error>) -> ParseError {
    match error {
        Some(Error::Parse(error)) => *error,
        other => panic!("expected a parse error, got {other:?}"),
    }
}

#[test]
fn fixture_sessions_parsed() {
    let text = [
        "1001\t101\x01102\x01103\t101\x01102\x01104\n".to_string(),
        document_line("1", "aa01", "201\x01202", "0"),
        document_line("2", "aa02", MISSING, "0"),
        document_line("3", "aa03", "205\x01206", "1"),
        "\r\n".to_string(),
        // The qid repeats, the query differs, and lines end in CRLF.
        "1001\t111\t\r\n".to_string(),
        document_line("1", "aa03", PSEUDO, "0").replace('\n', "\r\n"),
        document_line("2", "aa01", "207", "1.0").replace('\n', "\r\n"),
        // An empty query token field is a valid key.
        "1002\t\t-\n".to_string(),
        document_line("1", "aa04", "208", "0.0"),
    ]
    .concat();

    let (sessions, error, stats) = parse_all(&text, ErrorPolicy::Strict);
    assert!(error.is_none(), "{error:?}");

    let mut first = session(
        "101\x01102\x01103",
        vec![shown("aa01", 1, false), shown("aa03", 3, true)],
    );
    first.events.missing_results = 1;
    let mut second = session("111", vec![shown("aa01", 1, true)]);
    second.events.pseudo_results = 1;
    let third = session("", vec![shown("aa04", 1, false)]);
    assert_eq!(sessions, vec![first, second, third]);
    assert_eq!(stats.lines_read, 10);
    assert_eq!(stats.sessions_skipped, 0);
}

#[test]
fn query_key_ignores_qid() {
    let text = [
        "7\t101\x01102\t\n".to_string(),
        document_line("1", "aa01", "201", "0"),
        "8\t101\x01102\t\n".to_string(),
        document_line("1", "aa01", "201", "0"),
        "7\t101\x01103\t\n".to_string(),
        document_line("1", "aa01", "201", "0"),
    ]
    .concat();
    let (sessions, error, _) = parse_all(&text, ErrorPolicy::Strict);
    assert!(error.is_none());
    assert_eq!(sessions[0].query_key, sessions[1].query_key);
    assert_ne!(sessions[0].query_key, sessions[2].query_key);
}

#[test]
fn missing_results_keep_rank_moving() {
    let text = [
        "1\t5\t\n".to_string(),
        document_line("1", "aa01", MISSING, "0"),
        document_line("2", "aa02", PSEUDO, "0"),
        document_line("3", "aa03", "201", "0"),
        document_line("4", "aa04", PSEUDO, "1"),
        document_line("5", "aa05", MISSING, "0"),
        document_line("6", "aa06", "202", "0"),
    ]
    .concat();
    let (sessions, _, _) = parse_all(&text, ErrorPolicy::Strict);
    // Missing results take positions 1 and 3; pseudo-results take none.
    assert_eq!(
        sessions[0].results,
        vec![shown("aa03", 2, false), shown("aa06", 4, false)]
    );
    assert_eq!(sessions[0].events.missing_results, 2);
    assert_eq!(sessions[0].events.pseudo_results, 2);
    // The click on the pseudo-result is a logged click, though no slot shows it.
    assert!(sessions[0].has_logged_click);
}

#[test]
fn only_missing_results_give_empty_session() {
    let text = [
        "1\t5\t\n".to_string(),
        document_line("1", "-", MISSING, "0"),
    ]
    .concat();
    let (sessions, error, _) = parse_all(&text, ErrorPolicy::Strict);
    assert!(
        error.is_none(),
        "a missing result needs no URL MD5: {error:?}"
    );
    assert_eq!(sessions.len(), 1);
    assert!(sessions[0].results.is_empty());
}

/// Each case: the bad line, the field, the offending text. The fixture puts a good session and
/// a blank line before the bad line, which is physical line 4.
#[test]
fn parse_errors_name_field_and_line() {
    let cases = [
        (document_line("0", "aa09", "201", "0"), Field::Pos, "0"),
        (document_line("x1", "aa09", "201", "0"), Field::Pos, "x1"),
        (
            document_line("1001", "aa09", "201", "0"),
            Field::Pos,
            "1001",
        ),
        (document_line("", "aa09", "201", "0"), Field::Pos, ""),
        (document_line("2", "-", "201", "0"), Field::UrlMd5, "-"),
        (document_line("2", "", "201", "0"), Field::UrlMd5, ""),
        (document_line("2", "aa09", "201", "2"), Field::Click, "2"),
        (document_line("2", "aa09", "201", "-"), Field::Click, "-"),
        (
            document_line("2", "aa09", MISSING, "yes"),
            Field::Click,
            "yes",
        ),
        (
            "1\t2\t3\t4\t5\t6\t7\t8\n".to_string(),
            Field::Line,
            "1\t2\t3\t4\t5\t6\t7\t8",
        ),
    ];
    for (bad_line, field, text) in cases {
        let fixture = [
            "1\t5\t\n".to_string(),
            document_line("1", "aa01", "201", "1"),
            "\n".to_string(),
            bad_line,
            document_line("3", "aa03", "201", "0"),
        ]
        .concat();
        let (sessions, error, _) = parse_all(&fixture, ErrorPolicy::Strict);
        let error = expect_parse_error(error);
        assert_eq!(error.field, field, "{error}");
        assert_eq!(error.lineno, 4, "{error}");
        assert_eq!(error.text, text, "{error}");
        assert!(
            error.path.to_string_lossy().ends_with("part-00000"),
            "{error}"
        );
        // The session holding the bad line is not returned.
        assert!(sessions.is_empty(), "{error}");
    }
}

#[test]
fn document_before_query_rejected() {
    let text = ["\n".to_string(), document_line("1", "aa01", "201", "0")].concat();
    let (_, error, _) = parse_all(&text, ErrorPolicy::Strict);
    let error = expect_parse_error(error);
    assert_eq!(error.field, Field::Line);
    assert_eq!(error.lineno, 2);
    assert!(error.expected.contains("query line"), "{error}");
}

#[test]
fn broken_query_line_after_good_session() {
    let text = [
        "1\t5\t\n".to_string(),
        document_line("1", "aa01", "201", "1"),
        "\n".to_string(),
        "2\t6\t\t\n".to_string(),
        document_line("1", "aa02", "201", "0"),
    ]
    .concat();
    // Strict: the complete session before the broken query line comes first, then the error.
    let (sessions, error, _) = parse_all(&text, ErrorPolicy::Strict);
    assert_eq!(sessions, vec![session("5", vec![shown("aa01", 1, true)])]);
    let error = expect_parse_error(error);
    assert_eq!((error.field, error.lineno), (Field::Line, 4));
    assert!(error.expected.contains("found 4"), "{error}");
}

#[test]
fn skip_drops_only_malformed_sessions() {
    let text = [
        // Orphan document lines before any query: one malformed session.
        document_line("1", "aa00", "201", "0"),
        "1\t5\t\n".to_string(),
        document_line("1", "aa01", "201", "1"),
        // A bad click spoils the second session.
        "2\t6\t\n".to_string(),
        document_line("1", "aa02", "201", "1"),
        document_line("2", "aa03", "201", "7"),
        document_line("3", "aa04", "201", "0"),
        // A broken query line (4 fields) spoils the document lines after it.
        "3\t7\t\t\n".to_string(),
        document_line("1", "aa05", "201", "0"),
        "4\t8\t\n".to_string(),
        document_line("1", "aa06", "201", "0"),
        // A broken document line (31 fields) spoils its session, the last one.
        "5\t9\t\n".to_string(),
        document_line("1", "aa07", "201", "0").replacen("\t0", "", 1),
    ]
    .concat();
    let (sessions, error, stats) = parse_all(&text, ErrorPolicy::Skip);
    assert!(error.is_none(), "{error:?}");
    assert_eq!(
        sessions,
        vec![
            session("5", vec![shown("aa01", 1, true)]),
            session("8", vec![shown("aa06", 1, false)]),
        ]
    );
    assert_eq!(stats.sessions_skipped, 4);
    assert_eq!(
        stats.sessions_read, 4,
        "good sessions are counted by the rules"
    );
    assert_eq!(stats.skipped_by_field.get(Field::Line), 3);
    assert_eq!(stats.skipped_by_field.get(Field::Click), 1);
    assert_eq!(stats.lines_read, 13);
}

/// A document line like [`document_line`] with some fields replaced, by index.
fn document_line_with(
    pos: &str,
    url_md5: &str,
    title: &str,
    click: &str,
    values: &[(usize, &str)],
) -> String {
    let line = document_line(pos, url_md5, title, click);
    let mut fields: Vec<&str> = line.trim_end_matches('\n').split('\t').collect();
    for &(index, value) in values {
        fields[index] = value;
    }
    fields.join("\t") + "\n"
}

fn behaviour_options(names: &[&str]) -> ReaderOptions {
    ReaderOptions::default().with_behaviour(names).unwrap()
}

#[test]
fn behaviour_values_in_requested_order() {
    let text = [
        "1\t5\t\n".to_string(),
        document_line_with(
            "1",
            "aa01",
            "201",
            "1",
            &[(4, "11"), (9, "560"), (16, "35.5")],
        ),
        document_line_with("2", "aa02", MISSING, "0", &[(4, "bad"), (16, "bad")]),
        document_line_with("3", "aa03", "202", "0", &[(4, "-"), (9, "-"), (16, "0.25")]),
    ]
    .concat();
    let options = behaviour_options(&["dwelling_time", "multimedia_type", "serp_height"]);
    let (sessions, error, _) = parse_with(&text, ErrorPolicy::Strict, &options);
    assert!(error.is_none(), "{error:?}");

    // Floats per result: dwelling_time, serp_height. The missing result has no values.
    let floats = &sessions[0].floats;
    assert_eq!(floats.len(), 4);
    assert_eq!(&floats[..3], &[35.5, 560.0, 0.25]);
    assert!(floats[3].is_nan());
    assert_eq!(sessions[0].ints, vec![11, -1]);
}

#[test]
fn unselected_columns_not_checked() {
    let text = [
        "1\t5\t\n".to_string(),
        document_line_with("1", "aa01", "201", "1", &[(16, "n/a"), (4, "x")]),
    ]
    .concat();
    let (sessions, error, _) = parse_all(&text, ErrorPolicy::Strict);
    assert!(error.is_none(), "{error:?}");
    assert!(sessions[0].floats.is_empty() && sessions[0].ints.is_empty());
}

#[test]
fn invalid_behaviour_value_names_column() {
    let cases = [
        ("dwelling_time", 16, "1,5"),
        ("full_displayed_count", 26, "nan"),
        ("multimedia_type", 4, "3.0"),
        ("displayed_time_top", 17, ""),
    ];
    for (name, index, value) in cases {
        let text = [
            "1\t5\t\n".to_string(),
            document_line_with("1", "aa01", "201", "1", &[(index, value)]),
        ]
        .concat();
        let (_, error, _) = parse_with(&text, ErrorPolicy::Strict, &behaviour_options(&[name]));
        let error = expect_parse_error(error);
        assert_eq!(error.field.name(), name);
        assert_eq!(error.text, value);
        assert_eq!(error.lineno, 2);
    }
}

#[test]
fn text_key_hashes_title_and_abstract() {
    let text = [
        "1\t5\t\n".to_string(),
        document_line("1", "-", "201\x01202", "0"),
        document_line("2", "aa02", "201\x01202", "1"),
    ]
    .concat();
    let options = ReaderOptions::default().with_document_key("text").unwrap();
    let (sessions, error, _) = parse_with(&text, ErrorPolicy::Strict, &options);
    assert!(error.is_none(), "the URL MD5 is not used: {error:?}");
    let expected = text_document_fingerprint(b"201\x01202", b"301\x01302");
    assert_eq!(sessions[0].results[0].document_key, expected);
    assert_eq!(sessions[0].results[1].document_key, expected);

    let bad = [
        "1\t5\t\n".to_string(),
        document_line("1", "aa01", "20\u{e9}1", "0"),
    ]
    .concat();
    let (_, error, _) = parse_with(&bad, ErrorPolicy::Strict, &options);
    assert_eq!(expect_parse_error(error).field, Field::Title);
}

#[test]
fn invalid_bytes_are_field_errors() {
    let query = "1\t5\u{e9}\t\n".to_string() + &document_line("1", "aa01", "201", "0");
    let (_, error, _) = parse_all(&query, ErrorPolicy::Strict);
    assert_eq!(expect_parse_error(error).field, Field::Query);

    let url = "1\t5\t\n".to_string() + &document_line("1", "a\u{e9}", "201", "0");
    let (_, error, _) = parse_all(&url, ErrorPolicy::Strict);
    assert_eq!(expect_parse_error(error).field, Field::UrlMd5);
}
