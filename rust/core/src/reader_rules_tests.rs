//! Tests of the reader options that change rows or columns: the first pass, the minimum
//! counts, extra columns and the formats added after Baidu and WSCD.

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Int32Type, UInt8Type};
use arrow_schema::DataType;

use super::*;
use crate::baidu::tests::document_line;
use crate::test_files::TempFile;

fn read(
    format: Format,
    text: &[u8],
    options: ReaderOptions,
) -> (Vec<RecordBatch>, Option<Error>, Stats) {
    let file = TempFile::new("log", text);
    let vocabulary = Arc::new(Mutex::new(Vocabulary::new()));
    let mut reader =
        BatchReader::new(format, vec![file.path().to_path_buf()], vocabulary, options).unwrap();
    let mut batches = Vec::new();
    for batch in reader.by_ref() {
        match batch {
            Ok(batch) => batches.push(batch),
            Err(error) => return (batches, Some(error), reader.stats().clone()),
        }
    }
    (batches, None, reader.stats().clone())
}

fn list_values<T: arrow_array::ArrowPrimitiveType>(
    batches: &[RecordBatch],
    name: &str,
) -> Vec<T::Native> {
    let mut values = Vec::new();
    for batch in batches {
        let column = batch.column_by_name(name).unwrap().as_fixed_size_list();
        values.extend(column.values().as_primitive::<T>().values().iter().copied());
    }
    values
}

fn row_count(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

fn accounted(stats: &Stats) -> u64 {
    stats.sessions_kept
        + stats.sessions_skipped
        + stats.sessions_without_results
        + stats.sessions_dropped_few_results
        + stats.sessions_dropped_without_clicks
        + stats.sessions_dropped_rare_query
}

const WSCD: &[u8] = b"1_1\t11,12,13 : 11;1_1\t11,12 : 12;2_1\t21 :;3_1\t31,32,33,34,35 : 35;3_1\t31 : 31;3_1\t32,31 :\n";

#[test]
fn positions_none_pads_to_largest_rank() {
    let options = ReaderOptions {
        positions: None,
        ..ReaderOptions::default()
    };
    let (batches, error, stats) = read(Format::Wscd, WSCD, options);
    assert!(error.is_none(), "{error:?}");
    let schema = batches[0].schema();
    let DataType::FixedSizeList(_, size) = schema.field_with_name("mask").unwrap().data_type()
    else {
        panic!("mask is not a list");
    };
    assert_eq!(*size, 5);
    assert_eq!(stats.results_truncated, 0);
    assert_eq!(stats.sessions_read, 6, "the first pass is not counted");
    assert_eq!(stats.lines_read, 1);
}

#[test]
fn positions_none_counts_skipped_ranks() {
    // The missing result takes position 1, so the only row needs 2 slots.
    let text = [
        "1\t5\t\n".to_string(),
        document_line("1", "aa01", "21429", "0"),
        document_line("2", "aa02", "201", "1"),
    ]
    .concat();
    let options = ReaderOptions {
        positions: None,
        ..ReaderOptions::default()
    };
    let (batches, error, stats) = read(Format::Baidu, text.as_bytes(), options);
    assert!(error.is_none(), "{error:?}");
    assert_eq!(list_values::<Int32Type>(&batches, "position"), vec![2, 0]);
    assert_eq!(stats.results_truncated, 0);
}

#[test]
fn min_sessions_per_query_counts_first() {
    let options = ReaderOptions::default()
        .with_min_sessions_per_query(3)
        .unwrap();
    let (batches, error, stats) = read(Format::Wscd, WSCD, options);
    assert!(error.is_none(), "{error:?}");
    assert_eq!(row_count(&batches), 3);
    assert_eq!(stats.sessions_dropped_rare_query, 3);
    assert_eq!(stats.sessions_read, accounted(&stats));
}

#[test]
fn min_sessions_counts_sessions_that_pass_rules() {
    // Query 3_1 has three sessions, but one has no click and another too few results.
    let options = ReaderOptions {
        drop_sessions_without_clicks: true,
        ..ReaderOptions::default()
            .with_min_results(2)
            .unwrap()
            .with_min_sessions_per_query(2)
            .unwrap()
    };
    let (batches, _, stats) = read(Format::Wscd, WSCD, options);
    assert_eq!(row_count(&batches), 2, "the two sessions of 1_1 remain");
    assert_eq!(stats.sessions_dropped_few_results, 2);
    assert_eq!(stats.sessions_dropped_without_clicks, 1);
    assert_eq!(stats.sessions_dropped_rare_query, 1);
    assert_eq!(stats.sessions_read, accounted(&stats));
}

#[test]
fn first_pass_raises_strict_error_before_rows() {
    let options = ReaderOptions {
        positions: None,
        ..ReaderOptions::default()
    };
    let (batches, error, _) = read(Format::Wscd, b"1_1\t11 : 11\n1_1 11 : 11\n", options);
    assert!(batches.is_empty());
    assert!(matches!(error, Some(Error::Parse(_))), "{error:?}");
}

#[test]
fn behaviour_columns_padded_with_missing_values() {
    let mut line = document_line("1", "aa01", "201", "1");
    line = line.replacen("\t-\t1\t", "\t7\t1\t", 1);
    let text = [
        "1\t5\t\n".to_string(),
        line,
        document_line("2", "aa02", "202", "0"),
    ]
    .concat();
    let options = ReaderOptions {
        positions: Some(3),
        ..ReaderOptions::default()
            .with_behaviour(&["multimedia_type", "displayed_time"])
            .unwrap()
    };
    let (batches, error, _) = read(Format::Baidu, text.as_bytes(), options);
    assert!(error.is_none(), "{error:?}");
    let schema = batches[0].schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(&names[8..], &["multimedia_type", "displayed_time"]);

    assert_eq!(
        list_values::<Int32Type>(&batches, "multimedia_type"),
        vec![7, -1, -1]
    );
    let displayed = list_values::<Float32Type>(&batches, "displayed_time");
    assert_eq!(&displayed[..2], &[0.0, 0.0]);
    assert!(displayed[2].is_nan());
}

#[test]
fn annotation_label_column_and_no_clicks() {
    let text = b"7\t101\t201\t301\t3\t0\n7\t101\t202\t302\t0\t0\n8\t102\t203\t303\t4\t9\n";
    let options = ReaderOptions {
        positions: None,
        ..ReaderOptions::default()
    };
    let (batches, error, stats) = read(Format::BaiduAnnotation, text, options);
    assert!(error.is_none(), "{error:?}");
    assert_eq!(
        list_values::<Int32Type>(&batches, "label"),
        vec![3, 0, 4, -1]
    );
    assert_eq!(
        list_values::<UInt8Type>(&batches, "click"),
        vec![0, 0, 0, 0]
    );
    assert_eq!(list_values::<UInt8Type>(&batches, "mask"), vec![1, 1, 1, 0]);
    assert_eq!(stats.sessions_without_clicks, 2);
}

#[test]
fn text_key_joins_click_log_and_annotations() {
    let vocabulary = Arc::new(Mutex::new(Vocabulary::new()));
    let log = TempFile::new(
        "part",
        [
            "1\t5\t\n".to_string(),
            document_line("1", "aa01", "201", "1"),
        ]
        .concat()
        .as_bytes(),
    );
    let options = ReaderOptions::default().with_document_key("text").unwrap();
    let reader = BatchReader::new(
        Format::Baidu,
        vec![log.path().to_path_buf()],
        vocabulary.clone(),
        options,
    )
    .unwrap();
    assert_eq!(reader.count(), 1);
    vocabulary.lock().unwrap().freeze();

    // The document line helper writes the abstract 301\x01302.
    let annotation = TempFile::new("annotation", b"9\t5\t201\t301\x01302\t2\t0\n");
    let reader = BatchReader::new(
        Format::BaiduAnnotation,
        vec![annotation.path().to_path_buf()],
        vocabulary,
        ReaderOptions::default(),
    )
    .unwrap();
    let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
    assert_eq!(list_values::<Int32Type>(&batches, "query_doc_id")[0], 2);
}

#[test]
fn yandex_and_clickmodels_read_end_to_end() {
    let yandex = b"7\t0\tQ\t1\t5\t11\t12\n7\t1\tC\t12\n7\t2\tC\t12\n3\t0\tC\t11\n";
    let (batches, error, stats) = read(Format::Yandex, yandex, ReaderOptions::default());
    assert!(error.is_none(), "{error:?}");
    assert_eq!(list_values::<UInt8Type>(&batches, "click")[..2], [0, 1]);
    assert_eq!(stats.repeated_clicks, 1);
    assert_eq!(stats.clicks_before_query, 1);

    let clickmodels = b"1\tq\t1\t0\t[\"a\", \"b\"]\t[false, false]\t[0, 1, 1]\n";
    let (batches, error, stats) = read(Format::ClickModels, clickmodels, ReaderOptions::default());
    assert!(error.is_none(), "{error:?}");
    assert_eq!(list_values::<UInt8Type>(&batches, "click")[..2], [0, 1]);
    assert_eq!(stats.extra_click_entries, 1);
}
