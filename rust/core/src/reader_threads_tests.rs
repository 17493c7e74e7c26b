//! Reading with worker threads: the same batches for every thread count, errors in input order.

use std::path::Path;

use super::*;
use crate::reader::tests::read_all;
use crate::test_files::{gzip, TempFile};

/// WSCD text of `sessions` sessions whose query and URL ids depend on `file` and the session.
fn wscd_text(file: usize, sessions: usize) -> Vec<u8> {
    let mut text = String::new();
    for session in 0..sessions {
        let query = (file * 7 + session) % 50;
        let urls: Vec<String> = (0..5)
            .map(|rank| format!("{}", (query * 3 + rank + file) % 90))
            .collect();
        let click = &urls[session % 5];
        text.push_str(&format!("{query}_1\t{} : {click};\n", urls.join(",")));
    }
    text.into_bytes()
}

fn read_with_threads(
    paths: &[&Path],
    threads: usize,
    options: ReaderOptions,
) -> (Vec<RecordBatch>, Option<String>, Stats) {
    let vocabulary = Arc::new(Mutex::new(Vocabulary::new()));
    let options = ReaderOptions { threads, ..options };
    let (batches, error, stats) = read_all(Format::Wscd, paths, &vocabulary, options);
    (batches, error.map(|error| error.to_string()), stats)
}

fn small_batches() -> ReaderOptions {
    ReaderOptions {
        batch_size: 37,
        ..ReaderOptions::default()
    }
}

#[test]
fn many_files_same_batches_for_any_threads() {
    // Gzip and plain files alternate; 700 sessions per file span several chunks of sessions.
    let files: Vec<TempFile> = (0..12)
        .map(|file| {
            let text = wscd_text(file, 700);
            if file % 2 == 0 {
                TempFile::new(&format!("part-{file}.gz"), &gzip(&text))
            } else {
                TempFile::new(&format!("part-{file}"), &text)
            }
        })
        .collect();
    let paths: Vec<&Path> = files.iter().map(TempFile::path).collect();
    let (expected, error, expected_stats) = read_with_threads(&paths, 1, small_batches());
    assert!(error.is_none());
    assert_eq!(expected_stats.sessions_kept, 12 * 700);
    for threads in [2, 4, 16] {
        let (batches, error, stats) = read_with_threads(&paths, threads, small_batches());
        assert!(error.is_none());
        assert_eq!(batches, expected, "threads={threads}");
        assert_eq!(stats, expected_stats, "threads={threads}");
    }
}

#[test]
fn two_passes_same_batches_for_any_threads() {
    let files: Vec<TempFile> = (0..5)
        .map(|file| TempFile::new(&format!("part-{file}.gz"), &gzip(&wscd_text(file, 300))))
        .collect();
    let paths: Vec<&Path> = files.iter().map(TempFile::path).collect();
    let options = ReaderOptions {
        positions: None,
        min_sessions_per_query: 40,
        ..small_batches()
    };
    let (expected, _, expected_stats) = read_with_threads(&paths, 1, options.clone());
    assert!(expected_stats.sessions_dropped_rare_query > 0);
    let (batches, _, stats) = read_with_threads(&paths, 3, options);
    assert_eq!(batches, expected);
    assert_eq!(stats, expected_stats);
}

#[test]
fn strict_error_in_third_file_comes_after_earlier_files() {
    let mut texts: Vec<Vec<u8>> = (0..5).map(|file| wscd_text(file, 500)).collect();
    // Line 101 of the third file has no URL list.
    let mut broken = wscd_text(2, 100);
    broken.extend_from_slice(b"7_1\n");
    broken.extend_from_slice(&wscd_text(2, 100));
    texts[2] = broken;
    let files: Vec<TempFile> = texts
        .iter()
        .enumerate()
        .map(|(file, text)| TempFile::new(&format!("part-{file}.gz"), &gzip(text)))
        .collect();
    let paths: Vec<&Path> = files.iter().map(TempFile::path).collect();
    // Ten threads give each of the five files a decompression thread.
    for threads in [1, 4, 10] {
        let (batches, error, stats) = read_with_threads(&paths, threads, small_batches());
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        // Files one and two, then the 100 sessions of file three before the broken line.
        assert_eq!(rows, 500 + 500 + 100, "threads={threads}");
        let error = error.expect("a strict reader fails on the broken line");
        assert!(error.contains("at line 101"), "{error}");
        assert!(error.contains("part-2.gz"), "{error}");
        assert_eq!(stats.sessions_kept, 1100);
    }
}

#[test]
fn corrupt_gzip_skipped_the_same_for_any_threads() {
    let whole = gzip(&wscd_text(1, 2000));
    let files = [
        TempFile::new("part-0.gz", &gzip(&wscd_text(0, 300))),
        TempFile::new("part-1.gz", &whole[..whole.len() / 2]),
        TempFile::new("part-2.gz", &gzip(&wscd_text(2, 300))),
    ];
    let paths: Vec<&Path> = files.iter().map(TempFile::path).collect();
    let options = ReaderOptions {
        on_error: ErrorPolicy::Skip,
        ..small_batches()
    };
    let (expected, error, expected_stats) = read_with_threads(&paths, 1, options.clone());
    assert!(error.is_none());
    assert_eq!(expected_stats.corrupt_inputs, 1);
    assert!(expected_stats.sessions_kept > 600);
    assert!(expected_stats.sessions_kept < 600 + 2000);
    // Three workers decompress inline, and six threads add a decompression thread per file.
    for threads in [3, 6] {
        let (batches, _, stats) = read_with_threads(&paths, threads, options.clone());
        assert_eq!(batches, expected, "threads={threads}");
        assert_eq!(stats, expected_stats, "threads={threads}");
    }
}

#[test]
fn dropped_reader_stops_workers() {
    // Many chunks per file, so the workers are blocked on full channels when the reader drops.
    let files: Vec<TempFile> = (0..4)
        .map(|file| TempFile::new(&format!("part-{file}.gz"), &gzip(&wscd_text(file, 20_000))))
        .collect();
    let paths: Vec<PathBuf> = files.iter().map(|file| file.path().to_path_buf()).collect();
    // Four workers decompress inline, and eight threads add a decompression thread per file.
    for threads in [4, 8] {
        let vocabulary = Arc::new(Mutex::new(Vocabulary::new()));
        let options = ReaderOptions {
            threads,
            ..small_batches()
        };
        let mut reader =
            BatchReader::new(Format::Wscd, paths.clone(), vocabulary, options).unwrap();
        assert_eq!(reader.next().unwrap().unwrap().num_rows(), 37);
        // Dropping joins every worker and decompression thread; a hang here fails the test run.
        drop(reader);
    }
}
