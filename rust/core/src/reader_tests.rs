//! End-to-end tests of the batch reader: fixtures with their expected tables written out, input
//! kinds, corrupt files, options and the frozen vocabulary.

use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Int32Type, UInt8Type};
use arrow_array::Array;
use arrow_schema::DataType;

use super::*;
use crate::baidu::tests::{document_line, MISSING, PSEUDO};
use crate::error::Field;
use crate::test_files::{gzip, gzip_members, TempFile};
use crate::vocabulary::{
    document_fingerprint, pair_fingerprint, query_doc_hash, query_fingerprint,
};

fn options(positions: usize, batch_size: usize) -> ReaderOptions {
    ReaderOptions {
        positions: Some(positions),
        batch_size,
        ..ReaderOptions::default()
    }
}

fn shared_vocabulary() -> SharedVocabulary {
    Arc::new(Mutex::new(Vocabulary::new()))
}

/// Reads every batch, stopping at the first error.
fn read_all(
    format: Format,
    paths: &[&Path],
    vocabulary: &SharedVocabulary,
    options: ReaderOptions,
) -> (Vec<RecordBatch>, Option<Error>, Stats) {
    let paths = paths.iter().map(|path| path.to_path_buf()).collect();
    let mut reader = BatchReader::new(format, paths, vocabulary.clone(), options).unwrap();
    let mut batches = Vec::new();
    let mut error = None;
    for batch in reader.by_ref() {
        match batch {
            Ok(batch) => batches.push(batch),
            Err(failure) => {
                error = Some(failure);
                break;
            }
        }
    }
    assert!(reader.next().is_none(), "the reader ends after an error");
    (batches, error, reader.stats().clone())
}

/// Values of a column over all batches; list columns are flattened row by row.
fn int_column(batches: &[RecordBatch], name: &str) -> Vec<i32> {
    let mut values = Vec::new();
    for batch in batches {
        let column = batch.column_by_name(name).unwrap();
        match column.data_type() {
            DataType::Int32 => values.extend(column.as_primitive::<Int32Type>().values()),
            _ => values.extend(
                column
                    .as_fixed_size_list()
                    .values()
                    .as_primitive::<Int32Type>()
                    .values(),
            ),
        }
    }
    values
}

fn byte_column(batches: &[RecordBatch], name: &str) -> Vec<u8> {
    let mut values = Vec::new();
    for batch in batches {
        let column = batch.column_by_name(name).unwrap().as_fixed_size_list();
        values.extend(column.values().as_primitive::<UInt8Type>().values());
    }
    values
}

fn rows(batches: &[RecordBatch]) -> Vec<usize> {
    batches.iter().map(RecordBatch::num_rows).collect()
}

fn pair_hash(query: &str, document: &str) -> i32 {
    query_doc_hash(pair_fingerprint(
        query_fingerprint(query.as_bytes()),
        document_fingerprint(document.as_bytes()),
    ))
}

const WSCD_FIXTURE: &[u8] =
    b"42_1\t11,12,13 : 12 , 11 ; 42_1\t11,12,14 :;\n43_2\t12,15 : 15 , 15 , 99\n";

#[test]
fn wscd_fixture_table() {
    let file = TempFile::new("wscd", WSCD_FIXTURE);
    let vocabulary = shared_vocabulary();
    let (batches, error, stats) =
        read_all(Format::Wscd, &[file.path()], &vocabulary, options(3, 2));
    assert!(error.is_none(), "{error:?}");
    assert_eq!(rows(&batches), vec![2, 1]);

    // Queries: 42_1 -> 2, 43_2 -> 3. Documents: 11 -> 2, 12 -> 3, 13 -> 4, 14 -> 5, 15 -> 6.
    // Pairs in order of first appearance: (42_1, 11..14) -> 2..5, (43_2, 12) -> 6, (43_2, 15) -> 7.
    assert_eq!(int_column(&batches, "query_id"), vec![2, 2, 3]);
    assert_eq!(
        int_column(&batches, "doc_id"),
        vec![2, 3, 4, 2, 3, 5, 3, 6, 0]
    );
    assert_eq!(
        int_column(&batches, "query_doc_id"),
        vec![2, 3, 4, 2, 3, 5, 6, 7, 0]
    );
    assert_eq!(
        int_column(&batches, "position"),
        vec![1, 2, 3, 1, 2, 3, 1, 2, 0]
    );
    assert_eq!(
        byte_column(&batches, "click"),
        vec![1, 1, 0, 0, 0, 0, 0, 1, 0]
    );
    assert_eq!(
        byte_column(&batches, "mask"),
        vec![1, 1, 1, 1, 1, 1, 1, 1, 0]
    );
    let expected_hashes = vec![
        pair_hash("42_1", "11"),
        pair_hash("42_1", "12"),
        pair_hash("42_1", "13"),
        pair_hash("42_1", "11"),
        pair_hash("42_1", "12"),
        pair_hash("42_1", "14"),
        pair_hash("43_2", "12"),
        pair_hash("43_2", "15"),
        0,
    ];
    assert_eq!(int_column(&batches, "query_doc_hash"), expected_hashes);
    for batch in &batches {
        let weight = batch
            .column_by_name("weight")
            .unwrap()
            .as_primitive::<Float32Type>();
        assert!(weight.values().iter().all(|&value| value == 1.0));
    }

    assert_eq!(stats.sessions_read, 3);
    assert_eq!(stats.sessions_kept, 3);
    assert_eq!(stats.sessions_without_clicks, 1);
    assert_eq!(stats.repeated_clicks, 1);
    assert_eq!(stats.clicks_not_shown, 1);
    assert_eq!(stats.lines_read, 2);

    let vocabulary = vocabulary.lock().unwrap();
    assert_eq!(vocabulary.query_table_size(), 2 + 2);
    assert_eq!(vocabulary.document_table_size(), 5 + 2);
    assert_eq!(vocabulary.len(), 6);
}

#[test]
fn wscd_truncation_to_positions() {
    // P = 2: URLs 13 and 14 are dropped. The click on 13 is neither kept nor "not shown".
    let file = TempFile::new("wscd", b"42_1\t11,12,13 : 13 ; 42_1\t11,12,14 : 11");
    let vocabulary = shared_vocabulary();
    let (batches, _, stats) = read_all(Format::Wscd, &[file.path()], &vocabulary, options(2, 10));
    assert_eq!(int_column(&batches, "doc_id"), vec![2, 3, 2, 3]);
    assert_eq!(byte_column(&batches, "click"), vec![0, 0, 1, 0]);
    assert_eq!(stats.results_truncated, 2);
    assert_eq!(stats.clicks_not_shown, 0);
    assert_eq!(stats.sessions_without_clicks, 0);
}

fn baidu_fixture() -> String {
    [
        "1001\t101\x01102\t\n".to_string(),
        document_line("1", "aa01", "201", "0"),
        document_line("2", "aa02", MISSING, "0"),
        document_line("3", "aa03", "202", "1"),
        document_line("4", "aa09", PSEUDO, "0"),
        document_line("4", "aa04", "203", "0"),
        document_line("5", "aa05", "204", "1"),
        "\n".to_string(),
        // Same query tokens under another qid: the same query.
        "1002\t101\x01102\t\n".to_string(),
        document_line("1", "aa03", "202", "0"),
        // Only a missing result: no row.
        "1003\t301\t\n".to_string(),
        document_line("1", "aa06", MISSING, "0"),
    ]
    .concat()
}

#[test]
fn baidu_fixture_table() {
    let file = TempFile::new("part-00000", baidu_fixture().as_bytes());
    let vocabulary = shared_vocabulary();
    let (batches, error, stats) =
        read_all(Format::Baidu, &[file.path()], &vocabulary, options(4, 8));
    assert!(error.is_none(), "{error:?}");
    assert_eq!(rows(&batches), vec![2]);

    // Positions count document lines: aa01 = 1, missing = 2, aa03 = 3, the pseudo-result takes
    // none, aa04 = 4, and aa05 = 5 is beyond P = 4.
    assert_eq!(int_column(&batches, "query_id"), vec![2, 2]);
    assert_eq!(int_column(&batches, "doc_id"), vec![2, 3, 4, 0, 3, 0, 0, 0]);
    assert_eq!(
        int_column(&batches, "query_doc_id"),
        vec![2, 3, 4, 0, 3, 0, 0, 0]
    );
    assert_eq!(
        int_column(&batches, "position"),
        vec![1, 3, 4, 0, 1, 0, 0, 0]
    );
    assert_eq!(byte_column(&batches, "click"), vec![0, 1, 0, 0, 0, 0, 0, 0]);
    assert_eq!(byte_column(&batches, "mask"), vec![1, 1, 1, 0, 1, 0, 0, 0]);
    let query = "101\x01102";
    assert_eq!(
        int_column(&batches, "query_doc_hash"),
        vec![
            pair_hash(query, "aa01"),
            pair_hash(query, "aa03"),
            pair_hash(query, "aa04"),
            0,
            pair_hash(query, "aa03"),
            0,
            0,
            0
        ]
    );

    assert_eq!(stats.sessions_read, 3);
    assert_eq!(stats.sessions_kept, 2);
    assert_eq!(stats.sessions_without_results, 1);
    assert_eq!(stats.sessions_without_clicks, 1);
    assert_eq!(stats.missing_results, 2);
    assert_eq!(stats.pseudo_results, 1);
    assert_eq!(stats.results_truncated, 1);
    assert_eq!(stats.lines_read, 12);
}

#[test]
fn input_kinds_give_identical_batches() {
    let text = baidu_fixture().repeat(50);
    let cuts = [17, text.len() / 3, text.len() / 2];
    let inputs = [
        TempFile::new("plain", text.as_bytes()),
        TempFile::new("gzip", &gzip(text.as_bytes())),
        TempFile::new("members", &gzip_members(text.as_bytes(), &cuts)),
    ];
    let mut results = Vec::new();
    for input in &inputs {
        let (batches, error, stats) = read_all(
            Format::Baidu,
            &[input.path()],
            &shared_vocabulary(),
            options(10, 7),
        );
        assert!(error.is_none(), "{error:?}");
        results.push((batches, stats));
    }
    assert_eq!(results[0].1.sessions_kept, 100);
    assert_eq!(results[0], results[1]);
    assert_eq!(results[0], results[2]);
}

#[test]
fn batches_span_files_and_lines() {
    let first = TempFile::new("a", b"1_1\t11 : 11;1_1\t12 :;1_1\t13 : 13\n");
    let second = TempFile::new("b", &gzip(b"2_1\t13,11 : 11\n\n2_1\t14 :"));
    let vocabulary = shared_vocabulary();
    let paths = [first.path(), second.path()];
    let (batches, _, stats) = read_all(Format::Wscd, &paths, &vocabulary, options(2, 2));
    assert_eq!(rows(&batches), vec![2, 2, 1]);
    // Ids continue across files in order of first appearance.
    assert_eq!(int_column(&batches, "query_id"), vec![2, 2, 2, 3, 3]);
    assert_eq!(
        int_column(&batches, "doc_id"),
        vec![2, 0, 3, 0, 4, 0, 4, 2, 5, 0]
    );
    assert_eq!(stats.lines_read, 4);
}

#[test]
fn frozen_vocabulary_counts_oov() {
    let train = TempFile::new("train", b"1_1\t11,12 : 11\n");
    let test = TempFile::new("test", b"1_1\t12,13 : 13;2_1\t11 :\n");
    let vocabulary = shared_vocabulary();
    read_all(Format::Wscd, &[train.path()], &vocabulary, options(3, 10));
    vocabulary.lock().unwrap().freeze();

    let (batches, _, stats) = read_all(Format::Wscd, &[test.path()], &vocabulary, options(3, 10));
    // Query 2_1, document 13, and the pairs (1_1, 13) and (2_1, 11) are unknown.
    assert_eq!(int_column(&batches, "query_id"), vec![2, 1]);
    assert_eq!(int_column(&batches, "doc_id"), vec![3, 1, 0, 2, 0, 0]);
    assert_eq!(int_column(&batches, "query_doc_id"), vec![3, 1, 0, 1, 0, 0]);
    assert_eq!(stats.oov_queries, 1);
    assert_eq!(stats.oov_documents, 1);
    assert_eq!(stats.oov_pairs, 2);
    let vocabulary = vocabulary.lock().unwrap();
    assert_eq!(vocabulary.len(), 2);
    assert_eq!(vocabulary.document_table_size(), 4);
}

#[test]
fn drop_sessions_without_clicks_option() {
    let file = TempFile::new("wscd", WSCD_FIXTURE);
    let options = ReaderOptions {
        drop_sessions_without_clicks: true,
        ..options(3, 10)
    };
    let (batches, _, stats) = read_all(Format::Wscd, &[file.path()], &shared_vocabulary(), options);
    assert_eq!(rows(&batches), vec![2]);
    assert_eq!(stats.sessions_without_clicks, 1);
    assert_eq!(stats.sessions_dropped_without_clicks, 1);
    assert_eq!(stats.sessions_read, 3);
}

/// Builds the text of a WSCD file of `lines` lines with 3 sessions each.
fn wscd_lines(lines: usize) -> String {
    (0..lines)
        .map(|line| format!("{line}_1\t1{line},2{line},3{line} : 2{line};{line}_1\t4{line} :;{line}_2\t1{line} : 1{line}\n"))
        .collect()
}

#[test]
fn truncated_gzip_keeps_complete_sessions() {
    let text = wscd_lines(3000);
    let compressed = gzip(text.as_bytes());
    let cut = compressed.len() * 2 / 3;
    let truncated = TempFile::new("truncated.gz", &compressed[..cut]);
    let complete = TempFile::new("complete", text.as_bytes());

    let (batches, error, stats) = read_all(
        Format::Wscd,
        &[truncated.path()],
        &shared_vocabulary(),
        options(3, 1000),
    );
    let Some(Error::CorruptInput {
        path,
        offset,
        lineno,
        ..
    }) = error
    else {
        panic!("expected CorruptInput, got {error:?}");
    };
    assert_eq!(path, truncated.path());
    assert_eq!(offset, cut as u64);
    // Every session of the complete lines, and nothing of the partial line.
    assert_eq!(stats.lines_read, lineno);
    assert_eq!(stats.sessions_kept, 3 * lineno);
    let kept: usize = rows(&batches).iter().sum();
    assert_eq!(kept as u64, 3 * lineno);

    // The rows equal the first rows of the intact file.
    let (intact, _, _) = read_all(
        Format::Wscd,
        &[complete.path()],
        &shared_vocabulary(),
        options(3, 1000),
    );
    let prefix = 3 * 3 * lineno as usize;
    assert_eq!(
        int_column(&batches, "doc_id"),
        int_column(&intact, "doc_id")[..prefix]
    );
}

#[test]
fn truncated_baidu_drops_session_in_progress() {
    let text = baidu_fixture().repeat(400);
    let compressed = gzip(text.as_bytes());
    let cut = compressed.len() / 2;
    let truncated = TempFile::new("part-00001.gz", &compressed[..cut]);
    let (_, error, stats) = read_all(
        Format::Baidu,
        &[truncated.path()],
        &shared_vocabulary(),
        options(10, 64),
    );
    let Some(Error::CorruptInput { lineno, .. }) = error else {
        panic!("expected CorruptInput, got {error:?}");
    };
    // A session is complete once the next query line is read, so the sessions returned are the
    // query lines among the complete lines, less the one still in progress.
    let query_lines = text
        .lines()
        .take(lineno as usize)
        .filter(|line| line.split('\t').count() == 3)
        .count() as u64;
    assert_eq!(stats.sessions_read, query_lines - 1);
}

#[test]
fn skip_moves_past_corrupt_input() {
    let compressed = gzip(wscd_lines(2000).as_bytes());
    let truncated = TempFile::new("truncated.gz", &compressed[..compressed.len() / 2]);
    let next = TempFile::new("next", b"9_9\t1 : 1\n");
    let options = ReaderOptions {
        on_error: ErrorPolicy::Skip,
        ..options(3, 100)
    };
    let paths = [truncated.path(), next.path()];
    let (batches, error, stats) = read_all(Format::Wscd, &paths, &shared_vocabulary(), options);
    assert!(error.is_none(), "{error:?}");
    assert_eq!(stats.corrupt_inputs, 1);
    let kept: usize = rows(&batches).iter().sum();
    assert_eq!(kept as u64, stats.sessions_kept);
    assert_eq!(stats.sessions_kept, 3 * (stats.lines_read - 1) + 1);
}

#[test]
fn strict_error_after_earlier_rows() {
    let file = TempFile::new(
        "wscd",
        b"1_1\t11 : 11\n\n1_1\t12 : 12;1_1\t13 : ,\n1_1\t14 :",
    );
    let (batches, error, stats) = read_all(
        Format::Wscd,
        &[file.path()],
        &shared_vocabulary(),
        options(2, 10),
    );
    assert_eq!(rows(&batches), vec![2]);
    let Some(Error::Parse(error)) = error else {
        panic!("expected a parse error, got {error:?}");
    };
    assert_eq!((error.field, error.lineno), (Field::Clicks, 3));
    assert_eq!(stats.sessions_kept, 2);
}

#[test]
fn stats_account_for_every_session() {
    let text = [
        baidu_fixture(),
        "2000\t5\t\n".to_string(),
        document_line("1", "aa01", "201", "3"),
    ]
    .concat();
    let file = TempFile::new("part", text.repeat(5).as_bytes());
    let options = ReaderOptions {
        on_error: ErrorPolicy::Skip,
        drop_sessions_without_clicks: true,
        ..options(4, 3)
    };
    let (_, error, stats) = read_all(Format::Baidu, &[file.path()], &shared_vocabulary(), options);
    assert!(error.is_none());
    assert_eq!(stats.sessions_read, 20);
    assert_eq!(stats.sessions_skipped, 5);
    assert_eq!(
        stats.sessions_read,
        stats.sessions_kept
            + stats.sessions_skipped
            + stats.sessions_without_results
            + stats.sessions_dropped_without_clicks
            + stats.sessions_dropped_few_results
            + stats.sessions_dropped_rare_query
    );
}

#[test]
fn columns_have_contract_layout() {
    let file = TempFile::new("wscd", WSCD_FIXTURE);
    let (batches, _, _) = read_all(
        Format::Wscd,
        &[file.path()],
        &shared_vocabulary(),
        options(3, 2),
    );
    let batch = &batches[0];
    assert_eq!(
        batch.schema(),
        crate::batch::batch_schema(3, &crate::batch::BatchLayout::default())
    );
    let names: Vec<String> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let expected = [
        "query_id",
        "doc_id",
        "query_doc_id",
        "query_doc_hash",
        "position",
        "click",
        "mask",
        "weight",
    ];
    assert_eq!(names, expected);
    for column in batch.columns() {
        assert!(column.nulls().is_none());
        let data = column.to_data();
        let values = match column.data_type() {
            DataType::FixedSizeList(_, size) => {
                assert_eq!(*size, 3);
                let child = column.as_fixed_size_list().values().to_data();
                assert!(child.nulls().is_none());
                assert_eq!(child.offset(), 0);
                child.buffers()[0].clone()
            }
            _ => data.buffers()[0].clone(),
        };
        assert_eq!(
            values.as_ptr() as usize % 64,
            0,
            "buffer not 64-byte aligned"
        );
    }
}

#[test]
fn invalid_options_rejected() {
    let cases = [
        (
            ReaderOptions::new(Some(0), 10, "strict", false),
            "positions",
            "0",
        ),
        (
            ReaderOptions::new(Some(1001), 10, "strict", false),
            "positions",
            "1001",
        ),
        (
            ReaderOptions::new(Some(10), 0, "strict", false),
            "batch_size",
            "0",
        ),
        (
            ReaderOptions::new(Some(10), -5, "strict", false),
            "batch_size",
            "-5",
        ),
        (
            ReaderOptions::new(Some(10), 10, "ignore", false),
            "on_error",
            "\"ignore\"",
        ),
    ];
    for (result, expected_name, expected_value) in cases {
        match result {
            Err(Error::InvalidOption {
                name,
                value,
                allowed,
            }) => {
                assert_eq!(name, expected_name);
                assert_eq!(value, expected_value);
                assert!(!allowed.is_empty());
            }
            other => panic!("expected InvalidOption for {expected_name}, got {other:?}"),
        }
    }
    assert!(ReaderOptions::new(Some(1000), 1, "skip", true).is_ok());

    let error = "csv".parse::<Format>().unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid format \"csv\": expected one of \"baidu\", \"baidu-annotation\", \"yandex\", \"wscd\", \"clickmodels\""
    );
}

#[test]
fn missing_path_fails_at_creation() {
    let present = TempFile::new("present", b"");
    let paths = vec![
        present.path().to_path_buf(),
        "/nonexistent/part-00009.gz".into(),
    ];
    let error = BatchReader::new(
        Format::Baidu,
        paths,
        shared_vocabulary(),
        ReaderOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(&error, Error::NotFound { path } if path == Path::new("/nonexistent/part-00009.gz")),
        "{error:?}"
    );
}

#[test]
fn empty_input_yields_no_batch() {
    let file = TempFile::new("empty", b"\n\n");
    let (batches, error, stats) = read_all(
        Format::Wscd,
        &[file.path()],
        &shared_vocabulary(),
        ReaderOptions::default(),
    );
    assert!(batches.is_empty());
    assert!(error.is_none());
    assert_eq!(stats.lines_read, 2);
}
