//! Tests of the WSCD session parser on tiny fixtures with invented ids.

use super::*;
use crate::error::{Error, ErrorPolicy, ParseError};
use crate::test_files::{gzip, TempFile};

fn result(url: &str, position: u32, click: bool) -> SessionResult {
    SessionResult {
        document_key: document_fingerprint(url.as_bytes()),
        position,
        click,
    }
}

/// Builds a session with URLs at positions 1..n and the given clicked URLs.
fn session(query_key: &str, urls: &[&str], clicked: &[&str]) -> Session {
    Session {
        query_key: query_fingerprint(query_key.as_bytes()),
        results: urls
            .iter()
            .enumerate()
            .map(|(index, url)| result(url, index as u32 + 1, clicked.contains(url)))
            .collect(),
        has_logged_click: !clicked.is_empty(),
        ..Session::default()
    }
}

fn parse_all(content: &[u8], policy: ErrorPolicy) -> (Vec<Session>, Option<Error>, Stats) {
    let file = TempFile::new("trainSample", content);
    let mut parser = WscdParser::new(
        LineReader::open(file.path()).unwrap(),
        Rejector::new(policy),
    );
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
    // Whitespace varies around every separator. The second session has no click and the third an
    // empty click list with spaces. The text has a blank line, a trailing `;` and no final newline.
    let text =
        b"42_1\t11,12,13 : 12 , 11 ; 42_1\t11,12,14 :;  \n\n43_2\t 21 , 22 :   ;\n44_1\t31,32:32";
    let (sessions, error, stats) = parse_all(text, ErrorPolicy::Strict);
    assert!(error.is_none(), "{error:?}");
    assert_eq!(
        sessions,
        vec![
            session("42_1", &["11", "12", "13"], &["12", "11"]),
            session("42_1", &["11", "12", "14"], &[]),
            session("43_2", &["21", "22"], &[]),
            session("44_1", &["31", "32"], &["32"]),
        ]
    );
    assert_eq!(stats.lines_read, 4);
}

#[test]
fn repeated_and_unshown_clicks_counted() {
    let text = b"1_1\t11,12,11,13 : 13 , 11, 13 ,99,11 , 13";
    let (sessions, _, _) = parse_all(text, ErrorPolicy::Strict);
    let parsed = &sessions[0];
    // URL 11 appears twice: its click goes to position 1 only.
    let clicks: Vec<bool> = parsed.results.iter().map(|result| result.click).collect();
    assert_eq!(clicks, vec![true, false, false, true]);
    assert_eq!(parsed.events.repeated_clicks, 3);
    assert_eq!(parsed.events.clicks_not_shown, 1);
    assert!(parsed.has_logged_click);
}

#[test]
fn only_unshown_clicks_still_logged() {
    let (sessions, _, _) = parse_all(b"1_1\t11,12 : 99", ErrorPolicy::Strict);
    assert!(sessions[0].results.iter().all(|result| !result.click));
    assert!(sessions[0].has_logged_click);
    assert_eq!(sessions[0].events.clicks_not_shown, 1);
}

#[test]
fn gzip_same_as_plain() {
    let text = b"42_1\t11,12 : 12;42_1\t11,13 :\n43_1\t21 : 21\n";
    let (plain, _, _) = parse_all(text, ErrorPolicy::Strict);
    let (compressed, _, _) = parse_all(&gzip(text), ErrorPolicy::Strict);
    assert_eq!(plain.len(), 3);
    assert_eq!(plain, compressed);
}

/// Each case: the bad piece, the field, the offending text. A good line and a blank line come
/// first, so the bad piece is on physical line 3, after a good session on the same line.
#[test]
fn parse_errors_name_field_and_line() {
    let cases: [(&str, Field, &str); 8] = [
        ("42_1 11,12 : 12", Field::QueryKey, "42_1 11,12 : 12"),
        // The trim of the piece removes a blank key with its TAB.
        ("  \t11,12 : 12", Field::QueryKey, "11,12 : 12"),
        ("42_1\t11,12 12", Field::Urls, "11,12 12"),
        ("42_1\t11,,12 : 12", Field::Urls, "11,,12 "),
        ("42_1\t  : 12", Field::Urls, "  "),
        ("42_1\t11,12 : 12,,11", Field::Clicks, " 12,,11"),
        ("42_1\t11,12 : 12,", Field::Clicks, " 12,"),
        ("42_1\t11,12 : 12 : 11", Field::Clicks, " 12 : 11"),
    ];
    for (piece, field, text) in cases {
        let content = format!("1_1\t1,2 : 1\n\n9_9\t5 : 5 ; {piece} ; 9_9\t6 :");
        let (sessions, error, _) = parse_all(content.as_bytes(), ErrorPolicy::Strict);
        let error = expect_parse_error(error);
        assert_eq!(error.field, field, "{piece:?}: {error}");
        assert_eq!(error.lineno, 3, "{piece:?}: {error}");
        assert_eq!(error.text, text, "{piece:?}: {error}");
        // Sessions before the bad one, on earlier lines and on the same line, were returned.
        assert_eq!(sessions.len(), 2, "{piece:?}");
    }
}

#[test]
fn missing_colon_message_names_separator() {
    let (_, error, _) = parse_all(b"42_1\t11,12", ErrorPolicy::Strict);
    let message = Error::Parse(Box::new(expect_parse_error(error))).to_string();
    assert!(message.contains("url,... : click,..."), "{message}");
}

#[test]
fn skip_drops_only_malformed_pieces() {
    let text =
        b"1_1\t11 : 11; 1_1 11 : 11 ; 1_1\t12 :\n2_1\t21,,22 : ;2_1\t21 : 21 : 21;2_1\t22:22";
    let (sessions, error, stats) = parse_all(text, ErrorPolicy::Skip);
    assert!(error.is_none(), "{error:?}");
    assert_eq!(
        sessions,
        vec![
            session("1_1", &["11"], &["11"]),
            session("1_1", &["12"], &[]),
            session("2_1", &["22"], &["22"]),
        ]
    );
    assert_eq!(stats.sessions_skipped, 3);
    assert_eq!(stats.skipped_by_field.get(Field::QueryKey), 1);
    assert_eq!(stats.skipped_by_field.get(Field::Urls), 1);
    assert_eq!(stats.skipped_by_field.get(Field::Clicks), 1);
}

#[test]
fn long_line_spans_many_sessions() {
    // About 4 MB on one line, without a final newline.
    let piece = "7_1\t101,102,103,104,105,106,107,108,109,110 : 103 , 101";
    let count = 70_000;
    let text = vec![piece; count].join(" ; ");
    let (sessions, error, stats) = parse_all(text.as_bytes(), ErrorPolicy::Strict);
    assert!(error.is_none());
    assert_eq!(sessions.len(), count);
    assert_eq!(stats.lines_read, 1);
    assert!(sessions.iter().all(|parsed| parsed == &sessions[0]));
}
