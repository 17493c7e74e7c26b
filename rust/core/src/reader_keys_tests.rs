//! Key texts that a reader stores in a vocabulary that records keys, for every text format.

use std::path::Path;

use super::*;
use crate::baidu::tests::{document_line, MISSING};
use crate::reader::tests::read_all;
use crate::test_files::{gzip, TempFile};

/// Reads `paths` into a new vocabulary that records keys and returns it.
fn keyed_vocabulary(format: Format, paths: &[&Path], options: ReaderOptions) -> Vocabulary {
    let vocabulary = Arc::new(Mutex::new(Vocabulary::with_keys(true)));
    let (_, error, _) = read_all(format, paths, &vocabulary, options);
    assert!(error.is_none(), "{error:?}");
    let vocabulary = vocabulary.lock().unwrap().clone();
    vocabulary
}

/// Key texts of every real query and document id, in id order.
fn keys(vocabulary: &Vocabulary) -> (Vec<String>, Vec<String>) {
    let text = |key: Option<&[u8]>| String::from_utf8(key.expect("a key").to_vec()).unwrap();
    let queries = (2..vocabulary.query_table_size() as i32)
        .map(|id| text(vocabulary.query_key(id)))
        .collect();
    let documents = (2..vocabulary.document_table_size() as i32)
        .map(|id| text(vocabulary.document_key(id)))
        .collect();
    (queries, documents)
}

fn baidu_log() -> Vec<u8> {
    let mut text = String::from("1\t11\x0112\t-\n");
    text += &document_line("1", "md5a", "201\x01202", "1");
    text += &document_line("2", "md5b", MISSING, "0");
    text += &document_line("3", "md5c", "203", "0");
    text += "2\t13\t-\n";
    text += &document_line("1", "md5c", "203", "1");
    gzip(text.as_bytes())
}

#[test]
fn baidu_keys_are_tokens_and_md5() {
    let file = TempFile::new("keys.gz", &baidu_log());
    let vocabulary = keyed_vocabulary(Format::Baidu, &[file.path()], ReaderOptions::default());
    let (queries, documents) = keys(&vocabulary);
    assert_eq!(queries, vec!["11\u{1}12", "13"]);
    // The missing result md5b takes a position but gets no id.
    assert_eq!(documents, vec!["md5a", "md5c"]);
}

#[test]
fn baidu_text_keys_join_title_and_abstract() {
    let file = TempFile::new("keys.gz", &baidu_log());
    let options = ReaderOptions::default().with_document_key("text").unwrap();
    let vocabulary = keyed_vocabulary(Format::Baidu, &[file.path()], options);
    let (_, documents) = keys(&vocabulary);
    // `document_line` gives every result the abstract 301 0x01 302.
    assert_eq!(
        documents,
        vec!["201\u{1}202\t301\u{1}302", "203\t301\u{1}302"]
    );
}

#[test]
fn yandex_keys_follow_query_key() {
    let log = b"7\t0\tQ\t10\t3\t51\t52\n7\t5\tC\t52\n8\t0\tQ\t11\t3\t52\n";
    let file = TempFile::new("keys.txt", log);
    let vocabulary = keyed_vocabulary(Format::Yandex, &[file.path()], ReaderOptions::default());
    assert_eq!(
        keys(&vocabulary),
        (
            vec!["10_3".to_string(), "11_3".to_string()],
            vec!["51".to_string(), "52".to_string()]
        )
    );
    let options = ReaderOptions::default().with_query_key("query").unwrap();
    let by_query = keyed_vocabulary(Format::Yandex, &[file.path()], options);
    assert_eq!(keys(&by_query).0, vec!["10", "11"]);
}

#[test]
fn wscd_keys_and_truncation() {
    let file = TempFile::new("keys.txt", b"98_1\tu1,u2,u3 : u2;\n99_1\tu3 : ;\n");
    let options = ReaderOptions {
        positions: Some(2),
        ..ReaderOptions::default()
    };
    let vocabulary = keyed_vocabulary(Format::Wscd, &[file.path()], options);
    // u3 at position 3 of the first session is cut, so u3 first appears in the second.
    assert_eq!(
        keys(&vocabulary),
        (
            vec!["98_1".to_string(), "99_1".to_string()],
            vec!["u1".to_string(), "u2".to_string(), "u3".to_string()]
        )
    );
}

#[test]
fn clickmodels_keys_join_query_and_region() {
    let log = "1\tcats\t0\t1.0\t[\"a.com\", \"b.org\"]\t[false, false]\t[1, 0]\n";
    let file = TempFile::new("keys.tsv", log.as_bytes());
    let vocabulary = keyed_vocabulary(
        Format::ClickModels,
        &[file.path()],
        ReaderOptions::default(),
    );
    assert_eq!(
        keys(&vocabulary),
        (
            vec!["cats\t0".to_string()],
            vec!["a.com".to_string(), "b.org".to_string()]
        )
    );
}

#[test]
fn annotation_keys_are_text() {
    let log = "5\t11\x0112\t201\t301\t3\t2\n5\t11\x0112\t202\t302\t0\t2\n";
    let file = TempFile::new("keys.txt", log.as_bytes());
    let vocabulary = keyed_vocabulary(
        Format::BaiduAnnotation,
        &[file.path()],
        ReaderOptions::default(),
    );
    assert_eq!(
        keys(&vocabulary),
        (
            vec!["11\u{1}12".to_string()],
            vec!["201\t301".to_string(), "202\t302".to_string()]
        )
    );
}

#[test]
fn frozen_or_plain_vocabulary_gets_no_keys() {
    let file = TempFile::new("keys.txt", b"98_1\tu1 : u1;\n");
    let plain = Arc::new(Mutex::new(Vocabulary::new()));
    read_all(
        Format::Wscd,
        &[file.path()],
        &plain,
        ReaderOptions::default(),
    );
    assert_eq!(plain.lock().unwrap().query_key(2), None);
    assert_eq!(plain.lock().unwrap().query_table_size(), 3);
}
