//! Temporary files and gzip helpers for the unit tests.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use flate2::write::GzEncoder;
use flate2::Compression;

static NEXT_FILE: AtomicU64 = AtomicU64::new(0);

/// A file in the system temporary folder, deleted on drop.
pub struct TempFile {
    path: PathBuf,
}

impl TempFile {
    /// Writes `content` to a new file whose name ends with `name`.
    pub fn new(name: &str, content: &[u8]) -> Self {
        let number = NEXT_FILE.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "clickjax-core-{}-{number}-{name}",
            std::process::id()
        ));
        std::fs::write(&path, content).expect("writing a test file");
        TempFile { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Compresses `text` as one gzip member.
pub fn gzip(text: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(text).expect("compressing in memory");
    encoder.finish().expect("compressing in memory")
}

/// Compresses `text` as several concatenated gzip members, cut at the byte offsets `cuts`.
pub fn gzip_members(text: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut compressed = Vec::new();
    let mut start = 0;
    for &end in cuts.iter().chain(std::iter::once(&text.len())) {
        compressed.extend_from_slice(&gzip(&text[start..end]));
        start = end;
    }
    compressed
}

/// Reads every session of a parser, stopping at the first error.
pub fn collect_sessions(
    parser: &mut dyn crate::session::SessionSource,
) -> (
    Vec<crate::session::Session>,
    Option<crate::error::Error>,
    crate::stats::Stats,
) {
    let mut sessions = Vec::new();
    let mut stats = crate::stats::Stats::default();
    let mut session = crate::session::Session::default();
    loop {
        match parser.next_session(&mut session, &mut stats) {
            Ok(true) => sessions.push(session.clone()),
            Ok(false) => return (sessions, None, stats),
            Err(error) => return (sessions, Some(error), stats),
        }
    }
}

/// Returns the parse error inside `error`, or panics.
pub fn expect_parse_error(error: Option<crate::error::Error>) -> crate::error::ParseError {
    match error {
        Some(crate::error::Error::Parse(error)) => *error,
        other => panic!("expected a parse error, got {other:?}"),
    }
}
