//! Rows built by the file workers with file-local ids: the batches, ids, vocabulary counts and
//! errors of a sequential read, for any thread count and lookahead budget.

use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::Int32Type;
use arrow_array::Array;

use super::*;
use crate::error::Rejector;
use crate::pipeline::open_parser;
use crate::reader::tests::read_all;
use crate::test_files::{gzip, TempFile};
use crate::vocabulary::{Entry, PairEnds};

/// WSCD text of `sessions` sessions of file `file`. Two sessions in three use queries and URLs
/// shared by every file. The others use keys of this file only, so later files bring keys first
/// seen there.
fn mixed_text(file: usize, sessions: usize) -> Vec<u8> {
    let mut text = String::new();
    for session in 0..sessions {
        let own = session % 3 == 0;
        let query = if own {
            format!("f{file}q{}", session % 40)
        } else {
            format!("{}", (file * 7 + session) % 50)
        };
        let urls: Vec<String> = (0..6)
            .map(|rank| {
                if own && rank % 2 == 0 {
                    format!("f{file}u{}", (session + rank) % 70)
                } else {
                    format!("{}", (session * 3 + rank + file) % 90)
                }
            })
            .collect();
        let click = &urls[session % 6];
        text.push_str(&format!("{query}\t{} : {click};\n", urls.join(",")));
    }
    text.into_bytes()
}

/// Five files of `mixed_text`, gzip and plain alternating.
fn mixed_files(sessions: usize) -> Vec<TempFile> {
    (0..5)
        .map(|file| {
            let text = mixed_text(file, sessions);
            if file % 2 == 0 {
                TempFile::new(&format!("part-{file}.gz"), &gzip(&text))
            } else {
                TempFile::new(&format!("part-{file}"), &text)
            }
        })
        .collect()
}

fn options(threads: usize, lookahead_bytes: usize) -> ReaderOptions {
    ReaderOptions {
        positions: Some(4),
        batch_size: 37,
        threads,
        lookahead_bytes,
        ..ReaderOptions::default()
    }
}

/// Batches of a sequential read without workers or blocks: each file's sessions in turn, each
/// looked up in `vocabulary` as it becomes a row, as `BatchBuilder::push` does.
fn sequential_read(
    paths: &[&Path],
    vocabulary: &mut Vocabulary,
    options: &ReaderOptions,
) -> (Vec<RecordBatch>, Stats) {
    let config = ParserConfig {
        keys: vocabulary.records_keys(),
        ..options.parser_config(Format::Wscd).unwrap()
    };
    let rules = SessionRules {
        positions: options.positions.unwrap(),
        drop_sessions_without_clicks: options.drop_sessions_without_clicks,
        min_results: options.min_results,
    };
    let layout = config.layout(Format::Wscd);
    let mut builder = BatchBuilder::new(rules.positions, options.batch_size, &layout);
    let mut batches = Vec::new();
    let mut stats = Stats::default();
    let mut session = crate::session::Session::default();
    for path in paths {
        let rejector = Rejector::new(options.on_error);
        let threads = DecompressionThreads::default();
        let mut source = open_parser(Format::Wscd, path, &config, rejector, &threads).unwrap();
        while source.next_session(&mut session, &mut stats).unwrap() {
            if !rules.apply(&mut session, &mut stats) {
                continue;
            }
            builder.push(&session, vocabulary, &mut stats).unwrap();
            stats.sessions_kept += 1;
            if builder.is_full() {
                batches.push(builder.finish().unwrap());
            }
        }
    }
    if !builder.is_empty() {
        batches.push(builder.finish().unwrap());
    }
    (batches, stats)
}

/// Fingerprints and counts of every table, and the pair ends, of a vocabulary.
fn tables(vocabulary: &Vocabulary) -> (Vec<Entry>, Vec<Entry>, Vec<Entry>, Vec<PairEnds>) {
    (
        vocabulary.queries.entries(),
        vocabulary.documents.entries(),
        vocabulary.pairs.entries(),
        vocabulary.pair_ends().to_vec(),
    )
}

/// Reads `paths` with a reader into `vocabulary` and returns the batches, error and counters.
fn read_into(
    paths: &[&Path],
    vocabulary: &SharedVocabulary,
    options: ReaderOptions,
) -> (Vec<RecordBatch>, Option<String>, Stats) {
    let (batches, error, stats) = read_all(Format::Wscd, paths, vocabulary, options);
    (batches, error.map(|error| error.to_string()), stats)
}

/// Values of a `[batch, positions]` or `[batch]` int32 column over all batches, row by row.
fn rows_of(batches: &[RecordBatch], name: &str) -> Vec<Vec<i32>> {
    let mut rows = Vec::new();
    for batch in batches {
        let column = batch.column_by_name(name).unwrap();
        if let Some(lists) = column.as_fixed_size_list_opt() {
            for row in 0..lists.len() {
                let values = lists.value(row);
                rows.push(values.as_primitive::<Int32Type>().values().to_vec());
            }
        } else {
            let values = column.as_primitive::<Int32Type>().values();
            rows.extend(values.iter().map(|&value| vec![value]));
        }
    }
    rows
}

/// Two small WSCD files: `a` and `u1`, `u2` first appear in the first, `b` and `u3` in the second.
fn two_small_files() -> [TempFile; 2] {
    [
        TempFile::new("part-0.gz", &gzip(b"a\tu1,u2 : u2;\n")),
        TempFile::new("part-1", b"b\tu3,u1 : u3;\na\tu2,u3 : u3;\n"),
    ]
}

fn small_options(threads: usize) -> ReaderOptions {
    ReaderOptions {
        positions: Some(2),
        batch_size: 2,
        threads,
        ..ReaderOptions::default()
    }
}

#[test]
fn ids_follow_first_appearance_across_files() {
    let files = two_small_files();
    let paths: Vec<&Path> = files.iter().map(TempFile::path).collect();
    for threads in [1, 2, 4] {
        let vocabulary = Arc::new(Mutex::new(Vocabulary::new()));
        let (batches, error, stats) = read_into(&paths, &vocabulary, small_options(threads));
        assert!(error.is_none(), "{error:?}");
        // Batches of two rows span the file boundary.
        let sizes: Vec<usize> = batches.iter().map(RecordBatch::num_rows).collect();
        assert_eq!(sizes, vec![2, 1], "threads={threads}");
        let query_ids = rows_of(&batches, "query_id");
        assert_eq!(
            query_ids,
            vec![vec![2], vec![3], vec![2]],
            "threads={threads}"
        );
        // Documents u1 = 2, u2 = 3, u3 = 4.
        let doc_ids = rows_of(&batches, "doc_id");
        assert_eq!(doc_ids, vec![vec![2, 3], vec![4, 2], vec![3, 4]]);
        // Pairs (a, u1) = 2, (a, u2) = 3, (b, u3) = 4, (b, u1) = 5, (a, u3) = 6.
        let pair_ids = rows_of(&batches, "query_doc_id");
        assert_eq!(pair_ids, vec![vec![2, 3], vec![4, 5], vec![3, 6]]);
        assert_eq!(stats.sessions_kept, 3);

        let vocabulary = vocabulary.lock().unwrap();
        let counts = |entries: Vec<Entry>| entries.iter().map(|entry| entry.count).collect();
        let query_counts: Vec<u64> = counts(vocabulary.queries.entries());
        assert_eq!(query_counts, vec![2, 1]);
        let pair_counts: Vec<u64> = counts(vocabulary.pairs.entries());
        assert_eq!(pair_counts, vec![1, 2, 1, 1, 1]);
        let ends = vocabulary.pair_ends();
        assert_eq!(
            ends[4],
            PairEnds {
                query_id: 2,
                doc_id: 4
            }
        );
    }
}

#[test]
fn frozen_vocabulary_maps_new_keys_to_oov() {
    let files = two_small_files();
    for threads in [1, 2, 4] {
        let vocabulary = Arc::new(Mutex::new(Vocabulary::new()));
        let (_, error, _) = read_into(&[files[0].path()], &vocabulary, small_options(1));
        assert!(error.is_none(), "{error:?}");
        vocabulary.lock().unwrap().freeze();
        let before = tables(&vocabulary.lock().unwrap());

        // The second file first, then the first again.
        let paths = [files[1].path(), files[0].path()];
        let (batches, error, stats) = read_into(&paths, &vocabulary, small_options(threads));
        assert!(error.is_none(), "{error:?}");
        let query_ids = rows_of(&batches, "query_id");
        assert_eq!(
            query_ids,
            vec![vec![1], vec![2], vec![2]],
            "threads={threads}"
        );
        let doc_ids = rows_of(&batches, "doc_id");
        assert_eq!(doc_ids, vec![vec![1, 2], vec![3, 1], vec![2, 3]]);
        let pair_ids = rows_of(&batches, "query_doc_id");
        assert_eq!(pair_ids, vec![vec![1, 1], vec![3, 1], vec![2, 3]]);
        assert_eq!(stats.oov_queries, 1);
        assert_eq!(stats.oov_documents, 2);
        assert_eq!(stats.oov_pairs, 3);
        // A frozen vocabulary neither grows nor counts.
        assert_eq!(tables(&vocabulary.lock().unwrap()), before);
    }
}

#[test]
fn keys_kept_in_first_appearance_order() {
    let files = two_small_files();
    let paths: Vec<&Path> = files.iter().map(TempFile::path).collect();
    for threads in [1, 2, 4] {
        let vocabulary = Arc::new(Mutex::new(Vocabulary::with_keys(true)));
        let (_, error, _) = read_into(&paths, &vocabulary, small_options(threads));
        assert!(error.is_none(), "{error:?}");
        let vocabulary = vocabulary.lock().unwrap();
        assert_eq!(
            vocabulary.query_key(2),
            Some(&b"a"[..]),
            "threads={threads}"
        );
        assert_eq!(vocabulary.query_key(3), Some(&b"b"[..]));
        assert_eq!(vocabulary.document_key(2), Some(&b"u1"[..]));
        assert_eq!(vocabulary.document_key(3), Some(&b"u2"[..]));
        assert_eq!(vocabulary.document_key(4), Some(&b"u3"[..]));
        assert_eq!(vocabulary.document_key(5), None);
    }
}

#[test]
fn many_files_match_sequential_read() {
    let files = mixed_files(3000);
    let paths: Vec<&Path> = files.iter().map(TempFile::path).collect();
    for keys in [false, true] {
        let mut expected_vocabulary = Vocabulary::with_keys(keys);
        let (expected, expected_stats) =
            sequential_read(&paths, &mut expected_vocabulary, &options(1, 0));
        assert_eq!(expected_stats.sessions_kept, 5 * 3000);
        // A lookahead of one byte lets a worker hold a single block ahead of the reader.
        for (threads, lookahead_bytes) in [(1, 1), (2, 1), (2, 64 << 20), (4, 1), (4, 64 << 20)] {
            let vocabulary = Arc::new(Mutex::new(Vocabulary::with_keys(keys)));
            let options = options(threads, lookahead_bytes);
            let (batches, error, stats) = read_into(&paths, &vocabulary, options);
            let case = format!("threads={threads} lookahead={lookahead_bytes} keys={keys}");
            assert!(error.is_none(), "{case}: {error:?}");
            assert!(batches == expected, "{case}: batches differ");
            assert_eq!(stats, expected_stats, "{case}");
            let vocabulary = vocabulary.lock().unwrap();
            assert!(
                tables(&vocabulary) == tables(&expected_vocabulary),
                "{case}"
            );
            for id in 2..expected_vocabulary.document_table_size() as i32 {
                assert_eq!(
                    vocabulary.document_key(id),
                    expected_vocabulary.document_key(id),
                    "{case}: document {id}"
                );
            }
            for id in 2..expected_vocabulary.query_table_size() as i32 {
                assert_eq!(
                    vocabulary.query_key(id),
                    expected_vocabulary.query_key(id),
                    "{case}: query {id}"
                );
            }
        }
    }
}

#[test]
fn restarted_local_numbering_same_output() {
    let files = mixed_files(1500);
    let paths: Vec<&Path> = files.iter().map(TempFile::path).collect();
    let mut expected_vocabulary = Vocabulary::with_keys(true);
    let (expected, expected_stats) =
        sequential_read(&paths, &mut expected_vocabulary, &options(1, 0));
    // A limit of 7 ids restarts the numbering after nearly every block of every file.
    for (threads, limit) in [(1, 7), (2, 7), (2, 100), (4, 1)] {
        let paths_owned = paths.iter().map(|path| path.to_path_buf()).collect();
        let vocabulary = Arc::new(Mutex::new(Vocabulary::with_keys(true)));
        let reader = BatchReader::new(
            Format::Wscd,
            paths_owned,
            Arc::clone(&vocabulary),
            options(threads, 1),
        )
        .unwrap()
        .with_max_local_ids(limit);
        let mut batches = Vec::new();
        let mut reader = reader;
        for batch in reader.by_ref() {
            batches.push(batch.unwrap());
        }
        let case = format!("threads={threads} limit={limit}");
        assert!(batches == expected, "{case}: batches differ");
        assert_eq!(reader.stats(), &expected_stats, "{case}");
        let vocabulary = vocabulary.lock().unwrap();
        assert!(
            tables(&vocabulary) == tables(&expected_vocabulary),
            "{case}"
        );
        let last = expected_vocabulary.document_table_size() as i32 - 1;
        assert_eq!(
            vocabulary.document_key(last),
            expected_vocabulary.document_key(last)
        );
    }
}

#[test]
fn strict_error_after_long_first_file() {
    let mut broken = mixed_text(1, 2);
    broken.extend_from_slice(b"q\n");
    broken.extend_from_slice(&mixed_text(1, 50));
    let files = [
        TempFile::new("part-0.gz", &gzip(&mixed_text(0, 20_000))),
        TempFile::new("part-1.gz", &gzip(&broken)),
    ];
    let paths: Vec<&Path> = files.iter().map(TempFile::path).collect();
    for (threads, lookahead_bytes) in [(1, 64 << 20), (2, 1), (2, 64 << 20), (4, 1)] {
        let vocabulary = Arc::new(Mutex::new(Vocabulary::new()));
        let options = options(threads, lookahead_bytes);
        let (batches, error, stats) = read_into(&paths, &vocabulary, options);
        let case = format!("threads={threads} lookahead={lookahead_bytes}");
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        // Every row of the first file, then the two sessions before the broken line.
        assert_eq!(rows, 20_000 + 2, "{case}");
        assert_eq!(stats.sessions_kept, 20_002, "{case}");
        let error = error.expect("a strict reader fails on the broken line");
        assert!(error.contains("part-1.gz"), "{case}: {error}");
        assert!(error.contains("at line 3"), "{case}: {error}");
    }
}

#[test]
fn dropped_reader_stops_workers_waiting_on_lookahead() {
    let files = mixed_files(20_000);
    let paths: Vec<PathBuf> = files.iter().map(|file| file.path().to_path_buf()).collect();
    // With a lookahead of one byte, the workers of files 2 to 5 wait for the reader.
    for threads in [4, 8] {
        let vocabulary = Arc::new(Mutex::new(Vocabulary::new()));
        let mut reader =
            BatchReader::new(Format::Wscd, paths.clone(), vocabulary, options(threads, 1)).unwrap();
        assert_eq!(reader.next().unwrap().unwrap().num_rows(), 37);
        // Dropping joins every worker; a hang here fails the test run.
        drop(reader);
    }
}

#[test]
fn first_pass_error_stops_other_workers() {
    let mut broken = mixed_text(0, 2);
    broken.extend_from_slice(b"q\n");
    let mut files = vec![TempFile::new("part-0", &broken)];
    for file in 1..4 {
        let text = gzip(&mixed_text(file, 20_000));
        files.push(TempFile::new(&format!("part-{file}.gz"), &text));
    }
    let paths: Vec<&Path> = files.iter().map(TempFile::path).collect();
    for threads in [1, 4] {
        let vocabulary = Arc::new(Mutex::new(Vocabulary::new()));
        let options = ReaderOptions {
            positions: None,
            ..options(threads, 1)
        };
        // The reader drops the workers of files 2 to 4 while they measure their files.
        let (batches, error, _) = read_into(&paths, &vocabulary, options);
        assert!(batches.is_empty(), "threads={threads}");
        let error = error.expect("the first pass fails on the broken line");
        assert!(error.contains("part-0"), "{error}");
        assert!(error.contains("at line 3"), "{error}");
        assert!(vocabulary.lock().unwrap().is_empty());
    }
}
