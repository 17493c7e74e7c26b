//! Tests of columnar sessions: key fingerprints by type, validation, and equality with the text
//! readers.

use std::sync::{Arc, Mutex};

use arrow_array::{
    BinaryArray, Float64Array, Int64Array, LargeStringArray, StringArray, UInt8Array,
};

use super::*;
use crate::options::Format;
use crate::reader::BatchReader;
use crate::test_files::TempFile;

#[test]
fn keys_hash_like_text_readers() {
    let strings = StringArray::from(vec!["98435_1", "x"]);
    let fingerprints = fingerprint_keys(&strings, KeyRole::Query, "query").unwrap();
    assert_eq!(
        fingerprints,
        vec![query_fingerprint(b"98435_1"), query_fingerprint(b"x")]
    );

    let large = LargeStringArray::from(vec!["13"]);
    let integers = Int64Array::from(vec![13, -2]);
    let binary = BinaryArray::from(vec![b"13".as_slice()]);
    let expected = document_fingerprint(b"13");
    assert_eq!(
        fingerprint_keys(&large, KeyRole::Document, "d").unwrap(),
        vec![expected]
    );
    assert_eq!(
        fingerprint_keys(&binary, KeyRole::Document, "d").unwrap(),
        vec![expected]
    );
    assert_eq!(
        fingerprint_keys(&integers, KeyRole::Document, "d").unwrap(),
        vec![expected, document_fingerprint(b"-2")]
    );
    assert_eq!(
        fingerprint_keys(&UInt8Array::from(vec![13]), KeyRole::Document, "d").unwrap(),
        vec![expected]
    );
}

#[test]
fn keys_reject_nulls_and_floats() {
    let nulls = StringArray::from(vec![Some("a"), None]);
    let error = fingerprint_keys(&nulls, KeyRole::Query, "query").unwrap_err();
    assert_eq!(error.to_string(), "invalid column query: 1 null values");
    let floats = Float64Array::from(vec![1.0]);
    let error = fingerprint_keys(&floats, KeyRole::Document, "url").unwrap_err();
    assert!(error.to_string().contains("Float64"), "{error}");
}

fn batch(sessions: &ColumnarSessions<'_>, options: &ReaderOptions) -> Result<ColumnarBatches> {
    batch_columnar_sessions(sessions, &mut Vocabulary::new(), options)
}

#[test]
fn invalid_columns_named() {
    let query = [1u64];
    let document = [5u64, 6];
    // (offsets, position, click, column named by the error)
    type Case<'a> = (&'a [i64], &'a [i32], &'a [u8], &'a str);
    let cases: [Case; 5] = [
        (&[0, 1], &[1, 2], &[0, 0], "offsets"),
        (&[1, 2], &[1, 2], &[0, 0], "offsets"),
        (&[0, 2], &[0, 2], &[0, 0], "position"),
        (&[0, 2], &[2, 1], &[0, 0], "position"),
        (&[0, 2], &[1, 2], &[0, 2], "click"),
    ];
    for (offsets, position, click, column) in cases {
        let sessions = ColumnarSessions {
            query: &query,
            offsets,
            document: &document,
            position,
            click,
        };
        match batch(&sessions, &ReaderOptions::default()) {
            Err(Error::InvalidColumn { column: name, .. }) => assert_eq!(name, column),
            other => panic!("expected an invalid {column} column, got {other:?}"),
        }
    }
}

#[test]
fn columns_match_wscd_reader() {
    let text = b"42_1\t11,12,13 : 12 , 11 , 12 ; 42_1\t11,12,14 :;\n43_2\t12,15 : 15 , 99\n";
    let file = TempFile::new("wscd", text);
    let options = ReaderOptions {
        positions: Some(2),
        batch_size: 2,
        ..ReaderOptions::default()
    };
    let vocabulary = Arc::new(Mutex::new(Vocabulary::new()));
    let reader = BatchReader::new(
        Format::Wscd,
        vec![file.path().to_path_buf()],
        vocabulary,
        options.clone(),
    )
    .unwrap();
    let expected: Vec<RecordBatch> = reader.map(Result::unwrap).collect();

    let keys = |role: KeyRole, values: &[&str]| {
        fingerprint_keys(&StringArray::from(values.to_vec()), role, "key").unwrap()
    };
    let query = keys(KeyRole::Query, &["42_1", "42_1", "43_2"]);
    let document = keys(
        KeyRole::Document,
        &["11", "12", "13", "11", "12", "14", "12", "15"],
    );
    let sessions = ColumnarSessions {
        query: &query,
        offsets: &[0, 3, 6, 8],
        document: &document,
        position: &[1, 2, 3, 1, 2, 3, 1, 2],
        click: &[1, 1, 0, 0, 0, 0, 0, 1],
    };
    let columnar = batch(&sessions, &options).unwrap();

    assert_eq!(columnar.batches, expected);
    assert_eq!(columnar.stats.results_truncated, 2);
    assert_eq!(columnar.stats.sessions_kept, 3);
    assert_eq!(columnar.stats.lines_read, 8);
}

#[test]
fn rules_and_first_pass_apply() {
    let query = [1u64, 1, 2];
    let document = [5u64, 6, 5, 7];
    let sessions = ColumnarSessions {
        query: &query,
        offsets: &[0, 1, 3, 4],
        document: &document,
        // The second session skips rank 2, so rows need 3 slots.
        position: &[1, 1, 3, 1],
        click: &[1, 0, 1, 0],
    };
    let options = ReaderOptions {
        positions: None,
        ..ReaderOptions::default()
            .with_min_sessions_per_query(2)
            .unwrap()
    };
    let columnar = batch(&sessions, &options).unwrap();
    assert_eq!(columnar.positions, 3);
    assert_eq!(columnar.stats.sessions_kept, 2);
    assert_eq!(columnar.stats.sessions_dropped_rare_query, 1);
    assert_eq!(columnar.stats.sessions_read, 3);
}
