//! Tests of the annotation-file parser on tiny fixtures with invented token ids.

use super::*;
use crate::baidu::{MISSING_TITLE, PSEUDO_TITLE};
use crate::error::{Error, ErrorPolicy};
use crate::test_files::{collect_sessions, expect_parse_error, TempFile};

fn parse(text: &[u8], policy: ErrorPolicy) -> (Vec<Session>, Option<Error>, Stats) {
    let file = TempFile::new("annotation_data_0522.txt", text);
    let lines = LineReader::open(file.path()).unwrap();
    collect_sessions(&mut AnnotationParser::new(lines, Rejector::new(policy)))
}

fn line(
    qid: &str,
    query: &str,
    title: &[u8],
    abstract_tokens: &str,
    label: &str,
    bucket: &str,
) -> Vec<u8> {
    let mut text = format!("{qid}\t{query}\t").into_bytes();
    text.extend_from_slice(title);
    text.extend_from_slice(format!("\t{abstract_tokens}\t{label}\t{bucket}\n").as_bytes());
    text
}

fn document(title: &str, abstract_tokens: &str, position: u32) -> SessionResult {
    SessionResult {
        document_key: text_document_fingerprint(title.as_bytes(), abstract_tokens.as_bytes()),
        position,
        click: false,
    }
}

#[test]
fn fixture_groups_by_query_text() {
    // The format description's example: the queries share qid 7, so the query text splits them.
    let text = b"7\t101\x01102\t201\x01202\t301\x01302\x01303\t3\t0\n\
7\t101\x01102\t205\t305\x01306\t0\t0\n\
7\t111\x01112\x01113\t21429\t21429\t1\t8\n";
    let (sessions, error, stats) = parse(text, ErrorPolicy::Strict);
    assert!(error.is_none(), "{error:?}");
    assert_eq!(sessions.len(), 2);

    assert_eq!(sessions[0].query_key, query_fingerprint(b"101\x01102"));
    assert_eq!(
        sessions[0].results,
        vec![
            document("201\x01202", "301\x01302\x01303", 1),
            document("205", "305\x01306", 2)
        ]
    );
    assert_eq!(sessions[0].ints, vec![3, 0]);
    assert_eq!(sessions[0].session_ints, vec![0]);
    assert_eq!(sessions[1].session_ints, vec![8]);
    assert!(!sessions[0].has_logged_click);

    // The only document of the second query has missing content.
    assert!(sessions[1].results.is_empty());
    assert_eq!(sessions[1].events.missing_results, 1);
    assert_eq!(stats.lines_read, 3);
}

#[test]
fn same_query_under_new_qid_continues_group() {
    let mut text = line("1", "5", b"201", "301", "2", "3");
    text.extend(line("2", "5", b"202", "302", "1", "3"));
    text.extend(line("2", "6", b"202", "302", "4", "3"));
    text.extend(line("3", "5", b"203", "303", "0", "3"));
    let (sessions, _, _) = parse(&text, ErrorPolicy::Strict);
    let sizes: Vec<usize> = sessions.iter().map(|s| s.results.len()).collect();
    assert_eq!(sizes, vec![2, 1, 1]);
    assert_eq!(sessions[0].query_key, sessions[2].query_key);
}

#[test]
fn title_rules_match_click_logs() {
    let mut text = line("1", "5", PSEUDO_TITLE, "301", "2", "3");
    text.extend(line("1", "5", b"201", "301", "2", "3"));
    text.extend(line("1", "5", MISSING_TITLE, "21429", "1", "3"));
    text.extend(line("1", "5", b"202", "302", "4", "3"));
    let (sessions, _, _) = parse(&text, ErrorPolicy::Strict);
    assert_eq!(
        sessions[0].results,
        vec![document("201", "301", 1), document("202", "302", 3)]
    );
    assert_eq!(sessions[0].ints, vec![2, 4]);
    assert_eq!(sessions[0].events.pseudo_results, 1);
    assert_eq!(sessions[0].events.missing_results, 1);
}

#[test]
fn parse_errors_name_field_and_line() {
    let cases: [(Vec<u8>, Field, &str); 7] = [
        (line("1", "5", b"201", "301", "5", "0"), Field::Label, "5"),
        (line("1", "5", b"201", "301", "-1", "0"), Field::Label, "-1"),
        (
            line("1", "5", b"201", "301", "2", "10"),
            Field::FrequencyBucket,
            "10",
        ),
        (
            line("1", "5", b"201", "301", "2", ""),
            Field::FrequencyBucket,
            "",
        ),
        (
            line("1", "5", b"20\xff1", "301", "2", "0"),
            Field::Title,
            "20\u{fffd}1",
        ),
        (
            line("1", "5\x02", b"201", "301", "2", "0"),
            Field::Query,
            "5\x02",
        ),
        (
            b"1\t5\t201\t301\t2\n".to_vec(),
            Field::Line,
            "1\t5\t201\t301\t2",
        ),
    ];
    for (bad, field, text) in cases {
        let mut content = line("1", "4", b"200", "300", "0", "0");
        content.push(b'\n');
        content.extend(bad);
        let (sessions, error, _) = parse(&content, ErrorPolicy::Strict);
        let error = expect_parse_error(error);
        assert_eq!((error.field, error.lineno), (field, 3), "{text:?}");
        assert_eq!(error.text, text);
        // A line with the wrong field count has no known query, so it spoils the query before
        // it; any other malformed line starts a new query after the good one is returned.
        let expected = usize::from(field != Field::Line);
        assert_eq!(sessions.len(), expected, "{text:?}");
    }
}

#[test]
fn skip_drops_whole_query() {
    let mut text = line("1", "5", b"201", "301", "2", "3");
    text.extend(line("1", "5", b"202", "302", "9", "3"));
    text.extend(line("1", "5", b"203", "303", "1", "3"));
    text.extend(b"1\t5\n");
    text.extend(line("2", "6", b"204", "304", "0", "3"));
    text.extend(b"1\t6\n".to_vec());
    text.extend(line("3", "7", b"205", "305", "0", "3"));
    let (sessions, error, stats) = parse(&text, ErrorPolicy::Skip);
    assert!(error.is_none(), "{error:?}");
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].query_key, query_fingerprint(b"7"));
    assert_eq!(stats.sessions_skipped, 2);
    assert_eq!(stats.skipped_by_field.get(Field::Label), 1);
    assert_eq!(stats.skipped_by_field.get(Field::Line), 1);
}
