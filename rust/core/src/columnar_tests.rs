//! Tests of columnar sessions: key fingerprints by type, validation, and equality with the text
//! readers.

use std::sync::{Arc, Mutex};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Int32Type};
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
    batch_columnar_sessions(
        sessions,
        &BatchLayout::default(),
        &mut Vocabulary::new(),
        options,
    )
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
            ..ColumnarSessions::default()
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
        ..ColumnarSessions::default()
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
        ..ColumnarSessions::default()
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

/// Two sessions of 3 and 1 results with every kind of optional column, truncated to P = 2.
#[test]
fn optional_columns_padded_and_truncated() {
    let layout = BatchLayout {
        extra: vec![
            extra_column("dwelling_time").unwrap(),
            extra_column("label").unwrap(),
            extra_column("multimedia_type").unwrap(),
        ],
        session_columns: vec![session_column("frequency_bucket").unwrap()],
        features: 2,
    };
    let dwelling: &[f32] = &[1.5, 2.5, 3.5, 4.5];
    let label: &[i32] = &[4, 3, 2, 1];
    let media: &[i32] = &[11, 0, 0, 7];
    let bucket: &[i32] = &[9, 0];
    let sessions = ColumnarSessions {
        query: &[1, 2],
        offsets: &[0, 3, 4],
        document: &[5, 6, 7, 8],
        position: &[1, 2, 3, 1],
        click: &[0, 1, 1, 0],
        float_columns: &[dwelling],
        int_columns: &[label, media],
        session_columns: &[bucket],
        features: &[0.1, 0.2, 1.1, 1.2, 2.1, 2.2, 3.1, 3.2],
        keys: None,
    };
    let options = ReaderOptions {
        positions: Some(2),
        ..ReaderOptions::default()
    };
    let columnar =
        batch_columnar_sessions(&sessions, &layout, &mut Vocabulary::new(), &options).unwrap();
    let batch = &columnar.batches[0];
    assert_eq!(columnar.stats.results_truncated, 1);

    let list_values = |name: &str| {
        batch
            .column_by_name(name)
            .unwrap()
            .as_fixed_size_list()
            .values()
            .clone()
    };
    let dwelling = list_values("dwelling_time");
    let dwelling = dwelling.as_primitive::<Float32Type>().values();
    assert_eq!(&dwelling[..3], &[1.5, 2.5, 4.5]);
    assert!(dwelling[3].is_nan());
    let label = list_values("label");
    assert_eq!(
        label.as_primitive::<Int32Type>().values().as_ref(),
        &[4, 3, 1, -1]
    );
    let media = list_values("multimedia_type");
    assert_eq!(
        media.as_primitive::<Int32Type>().values().as_ref(),
        &[11, 0, 7, -1]
    );
    let bucket = batch.column_by_name("frequency_bucket").unwrap();
    assert_eq!(
        bucket.as_primitive::<Int32Type>().values().as_ref(),
        &[9, 0]
    );

    // Features are [batch, positions, features] with zeros in the padding slot.
    let features = batch
        .column_by_name("features")
        .unwrap()
        .as_fixed_size_list();
    assert_eq!(features.value_length(), 2);
    assert!(features.nulls().is_none());
    let slots = features.values().as_fixed_size_list();
    assert_eq!(slots.value_length(), 2);
    assert!(slots.nulls().is_none());
    let values = slots.values().as_primitive::<Float32Type>();
    assert_eq!(
        values.values().as_ref(),
        &[0.1, 0.2, 1.1, 1.2, 3.1, 3.2, 0.0, 0.0]
    );
    assert_eq!(values.values().inner().as_ptr() as usize % 64, 0);
}

#[test]
fn optional_columns_checked_against_layout() {
    let short: &[f32] = &[1.0];
    let layout = BatchLayout::with_extra(vec![extra_column("displayed_time").unwrap()]);
    let sessions = ColumnarSessions {
        query: &[1],
        offsets: &[0, 2],
        document: &[5, 6],
        position: &[1, 2],
        click: &[0, 0],
        float_columns: &[short],
        ..ColumnarSessions::default()
    };
    let error = batch_columnar_sessions(
        &sessions,
        &layout,
        &mut Vocabulary::new(),
        &ReaderOptions::default(),
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid column displayed_time: expected 2 values, one per result, got 1"
    );

    let features = BatchLayout {
        features: 3,
        ..BatchLayout::default()
    };
    let sessions = ColumnarSessions {
        float_columns: &[],
        features: &[1.0, 2.0],
        ..sessions
    };
    let error = batch_columnar_sessions(
        &sessions,
        &features,
        &mut Vocabulary::new(),
        &ReaderOptions::default(),
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid column features: expected 2 x 3 values, got 2"
    );
    assert!(extra_column("click").is_err());
    assert!(session_column("label").is_err());
}

#[test]
fn key_texts_render_like_fingerprints() {
    let integers = Int64Array::from(vec![13, -2]);
    let texts = key_texts(&integers, "document").unwrap();
    let texts: Vec<&[u8]> = texts.iter().map(Option::unwrap).collect();
    assert_eq!(texts, vec![&b"13"[..], b"-2"]);
    let strings = StringArray::from(vec![Some("a"), None]);
    let error = key_texts(&strings, "query").unwrap_err().to_string();
    assert!(
        error.contains("query") && error.contains("1 null values"),
        "{error}"
    );
}

#[test]
fn columnar_keys_reach_vocabulary() {
    let query_texts = key_texts(&StringArray::from(vec!["q1", "q2"]), "query").unwrap();
    let document_texts = key_texts(&Int64Array::from(vec![11, 12, 12]), "document").unwrap();
    let query = [query_fingerprint(b"q1"), query_fingerprint(b"q2")];
    let document = [
        document_fingerprint(b"11"),
        document_fingerprint(b"12"),
        document_fingerprint(b"12"),
    ];
    let sessions = ColumnarSessions {
        query: &query,
        offsets: &[0, 2, 3],
        document: &document,
        position: &[1, 2, 1],
        click: &[1, 0, 0],
        keys: Some((&query_texts, &document_texts)),
        ..ColumnarSessions::default()
    };
    let mut vocabulary = Vocabulary::with_keys(true);
    let layout = BatchLayout::default();
    batch_columnar_sessions(
        &sessions,
        &layout,
        &mut vocabulary,
        &ReaderOptions::default(),
    )
    .unwrap();
    assert_eq!(vocabulary.query_key(2), Some(&b"q1"[..]));
    assert_eq!(vocabulary.query_key(3), Some(&b"q2"[..]));
    assert_eq!(vocabulary.document_key(2), Some(&b"11"[..]));
    assert_eq!(vocabulary.document_key(3), Some(&b"12"[..]));
    assert_eq!(vocabulary.document_table_size(), 4);

    let short = ColumnarSessions {
        keys: Some((&query_texts, &query_texts)),
        ..sessions
    };
    let error =
        batch_columnar_sessions(&short, &layout, &mut vocabulary, &ReaderOptions::default())
            .unwrap_err()
            .to_string();
    assert!(
        error.contains("expected 2 query keys and 3 document keys"),
        "{error}"
    );
}
