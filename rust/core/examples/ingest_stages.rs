//! Times each stage of reading a Baidu click log on one thread: gzip decompression, splitting
//! the text into lines, parsing the lines into sessions, and the whole reader with `threads=1`.
//! Each stage includes the ones before it, so the differences are the cost of each stage.
//!
//! Run: cargo run --profile quick -p clickjax-core --example ingest_stages -- FILE [ROUNDS]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clickjax_core::baidu::BaiduParser;
use clickjax_core::error::Rejector;
use clickjax_core::input::{decompressed_size, LineReader};
use clickjax_core::session::{Session, SessionSource};
use clickjax_core::{BatchReader, ErrorPolicy, Format, ReaderOptions, Result, Stats, Vocabulary};

type Stage = fn(&Path) -> Result<u64>;

fn decompress(path: &Path) -> Result<u64> {
    decompressed_size(path)
}

fn split_lines(path: &Path) -> Result<u64> {
    let mut lines = LineReader::open(path)?;
    let mut count = 0;
    while lines.advance()? {
        count += 1;
    }
    Ok(count)
}

fn parse_sessions(path: &Path) -> Result<u64> {
    let config = ReaderOptions::default().parser_config(Format::Baidu)?;
    let lines = LineReader::open(path)?;
    let mut parser = BaiduParser::new(lines, Rejector::new(ErrorPolicy::Strict), &config);
    let (mut session, mut stats) = (Session::default(), Stats::default());
    let mut count = 0;
    while parser.next_session(&mut session, &mut stats)? {
        count += 1;
    }
    Ok(count)
}

fn read_batches(path: &Path) -> Result<u64> {
    let options = ReaderOptions {
        threads: 1,
        batch_size: 8192,
        ..ReaderOptions::default()
    };
    let vocabulary = Arc::new(Mutex::new(Vocabulary::new()));
    let reader = BatchReader::new(Format::Baidu, vec![path.to_path_buf()], vocabulary, options)?;
    let mut rows = 0;
    for batch in reader {
        rows += batch?.num_rows() as u64;
    }
    Ok(rows)
}

fn run() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let usage = "usage: ingest_stages FILE [ROUNDS], with FILE a Baidu click log";
    let mut arguments = std::env::args().skip(1);
    let path = PathBuf::from(arguments.next().ok_or(usage)?);
    let rounds: u32 = match arguments.next() {
        Some(text) => text
            .parse()
            .map_err(|_| format!("invalid ROUNDS {text:?}; {usage}"))?,
        None => 3,
    };
    let bytes = decompress(&path)? as f64;
    let stages: [(&str, Stage); 4] = [
        ("decompress", decompress),
        ("+ lines", split_lines),
        ("+ parse (sessions)", parse_sessions),
        ("reader, threads=1 (rows)", read_batches),
    ];
    for (name, stage) in stages {
        let mut best = Duration::MAX;
        let mut count = 0;
        for _ in 0..rounds.max(1) {
            let start = Instant::now();
            count = stage(&path)?;
            best = best.min(start.elapsed());
        }
        let seconds = best.as_secs_f64();
        println!(
            "{name:>26}: {seconds:.3} s, {:.0} MB/s, count {count}",
            bytes / 1e6 / seconds
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ingest_stages failed: {error}");
            ExitCode::FAILURE
        }
    }
}
