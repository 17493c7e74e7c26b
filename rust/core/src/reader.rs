//! Batches of sessions read from click-log files: picks the parser for the format, applies the
//! session rules, looks ids up in a shared vocabulary, and yields padded Arrow record batches.
//!
//! Files are read one after another in the given order, so dense ids follow file order and then
//! line order. Parsing produces fingerprints only and ids are assigned as rows enter a batch, so a
//! later version can parse files in worker threads and keep the same ids.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;

use crate::baidu::BaiduParser;
use crate::batch::BatchBuilder;
use crate::error::{Error, Result};
use crate::input::LineReader;
use crate::session::{Session, SessionRules, SessionSource};
use crate::stats::Stats;
use crate::vocabulary::Vocabulary;
use crate::wscd::WscdParser;

/// Largest number of positions per row.
pub const MAX_POSITIONS: usize = 1000;

/// Largest number of rows per batch.
pub const MAX_BATCH_SIZE: usize = 1 << 24;

/// A vocabulary shared between readers and the caller.
pub type SharedVocabulary = Arc<Mutex<Vocabulary>>;

/// Log formats that the reader parses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Baidu-ULTR raw training sessions.
    Baidu,
    /// The WSCD sample format of PyClick's examples.
    Wscd,
}

impl Format {
    /// Names accepted by [`Format::from_str`].
    pub const NAMES: [&'static str; 2] = ["baidu", "wscd"];
}

impl FromStr for Format {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        match name {
            "baidu" => Ok(Format::Baidu),
            "wscd" => Ok(Format::Wscd),
            _ => Err(invalid_choice("format", name, &Format::NAMES)),
        }
    }
}

/// Policy for malformed sessions and corrupt gzip files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorPolicy {
    /// Raise the first parse error, and raise on a corrupt gzip file.
    Strict,
    /// Drop malformed sessions and corrupt files, and count them.
    Skip,
}

impl ErrorPolicy {
    /// Names accepted by [`ErrorPolicy::from_str`].
    pub const NAMES: [&'static str; 2] = ["strict", "skip"];
}

impl FromStr for ErrorPolicy {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        match name {
            "strict" => Ok(ErrorPolicy::Strict),
            "skip" => Ok(ErrorPolicy::Skip),
            _ => Err(invalid_choice("on_error", name, &ErrorPolicy::NAMES)),
        }
    }
}

fn invalid_choice(name: &'static str, value: &str, allowed: &[&str]) -> Error {
    let quoted: Vec<String> = allowed.iter().map(|name| format!("{name:?}")).collect();
    Error::InvalidOption {
        name,
        value: format!("{value:?}"),
        allowed: format!("one of {}", quoted.join(", ")),
    }
}

/// Checked options of a [`BatchReader`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReaderOptions {
    /// Slots per row, P.
    pub positions: usize,
    /// Rows per batch; the last batch can be shorter.
    pub batch_size: usize,
    pub on_error: ErrorPolicy,
    pub drop_sessions_without_clicks: bool,
}

impl ReaderOptions {
    /// Checks raw option values as a caller passes them.
    pub fn new(
        positions: i64,
        batch_size: i64,
        on_error: &str,
        drop_sessions_without_clicks: bool,
    ) -> Result<Self> {
        Ok(ReaderOptions {
            positions: checked_count("positions", positions, MAX_POSITIONS)?,
            batch_size: checked_count("batch_size", batch_size, MAX_BATCH_SIZE)?,
            on_error: on_error.parse()?,
            drop_sessions_without_clicks,
        })
    }
}

impl Default for ReaderOptions {
    fn default() -> Self {
        ReaderOptions {
            positions: 10,
            batch_size: 1024,
            on_error: ErrorPolicy::Strict,
            drop_sessions_without_clicks: false,
        }
    }
}

fn checked_count(name: &'static str, value: i64, max: usize) -> Result<usize> {
    match usize::try_from(value) {
        Ok(count) if (1..=max).contains(&count) => Ok(count),
        _ => Err(Error::InvalidOption {
            name,
            value: value.to_string(),
            allowed: format!("an integer from 1 to {max}"),
        }),
    }
}

/// An iterator of record batches over click-log files.
pub struct BatchReader {
    format: Format,
    paths: Vec<PathBuf>,
    next_path: usize,
    source: Option<Box<dyn SessionSource>>,
    on_error: ErrorPolicy,
    rules: SessionRules,
    builder: BatchBuilder,
    vocabulary: SharedVocabulary,
    session: Session,
    stats: Stats,
    /// An error met while rows were waiting, raised after those rows are returned.
    pending_error: Option<Error>,
    finished: bool,
}

impl fmt::Debug for BatchReader {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("BatchReader")
            .field("format", &self.format)
            .field("paths", &self.paths)
            .field("next_path", &self.next_path)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl BatchReader {
    /// Creates a reader of `paths` in the given order. Every path must exist now, so that a
    /// typo fails before any work; files are opened only when their turn comes.
    pub fn new(
        format: Format,
        paths: Vec<PathBuf>,
        vocabulary: SharedVocabulary,
        options: ReaderOptions,
    ) -> Result<Self> {
        for path in &paths {
            if let Err(source) = std::fs::metadata(path) {
                return Err(match source.kind() {
                    std::io::ErrorKind::NotFound => Error::NotFound { path: path.clone() },
                    _ => Error::Io {
                        path: path.clone(),
                        source,
                    },
                });
            }
        }
        Ok(BatchReader {
            format,
            paths,
            next_path: 0,
            source: None,
            on_error: options.on_error,
            rules: SessionRules {
                positions: options.positions,
                drop_sessions_without_clicks: options.drop_sessions_without_clicks,
            },
            builder: BatchBuilder::new(options.positions, options.batch_size),
            vocabulary,
            session: Session::default(),
            stats: Stats::default(),
            pending_error: None,
            finished: false,
        })
    }

    /// Counters so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Schema of every batch.
    pub fn schema(&self) -> SchemaRef {
        self.builder.schema()
    }

    /// Reads the next well-formed session of any remaining file into `self.session`.
    /// Returns false when every file is read.
    fn read_session(&mut self) -> Result<bool> {
        loop {
            let mut source = match self.source.take() {
                Some(source) => source,
                None => match self.open_next_file()? {
                    Some(source) => source,
                    None => return Ok(false),
                },
            };

            match source.next_session(&mut self.session, &mut self.stats) {
                Ok(true) => {
                    self.source = Some(source);
                    return Ok(true);
                }
                // The file is read; the next turn of the loop opens the next one.
                Ok(false) => {}
                Err(error @ Error::CorruptInput { .. }) if self.on_error == ErrorPolicy::Skip => {
                    log::warn!("skipping the rest of a corrupt input: {error}");
                    self.stats.corrupt_inputs += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Opens the next file with the parser of the format; None when no file is left.
    fn open_next_file(&mut self) -> Result<Option<Box<dyn SessionSource>>> {
        let Some(path) = self.paths.get(self.next_path) else {
            return Ok(None);
        };
        self.next_path += 1;
        let lines = LineReader::open(path)?;
        Ok(Some(match self.format {
            Format::Baidu => Box::new(BaiduParser::new(lines, self.on_error)),
            Format::Wscd => Box::new(WscdParser::new(lines, self.on_error)),
        }))
    }

    /// Fills the batch builder until it is full, the input ends, or an error occurs.
    fn fill_batch(&mut self) -> Result<()> {
        let vocabulary = Arc::clone(&self.vocabulary);
        // A poisoned lock only means another thread panicked while holding it; the vocabulary
        // is still consistent because every insert is a single map operation.
        let mut vocabulary = vocabulary.lock().unwrap_or_else(PoisonError::into_inner);
        while !self.builder.is_full() {
            if !self.read_session()? {
                self.finished = true;
                break;
            }
            if self.rules.apply(&mut self.session, &mut self.stats) {
                self.builder
                    .push(&self.session, &mut vocabulary, &mut self.stats)?;
                self.stats.sessions_kept += 1;
            }
        }
        Ok(())
    }
}

impl Iterator for BatchReader {
    type Item = Result<RecordBatch>;

    /// Returns the next batch. After an error, the rows read before it come first, then the
    /// error, then the end of the iteration.
    fn next(&mut self) -> Option<Self::Item> {
        if let Some(error) = self.pending_error.take() {
            return Some(Err(error));
        }
        if self.finished {
            return None;
        }

        if let Err(error) = self.fill_batch() {
            self.finished = true;
            if self.builder.is_empty() {
                return Some(Err(error));
            }
            self.pending_error = Some(error);
        }
        if self.builder.is_empty() {
            return None;
        }
        Some(self.builder.finish())
    }
}

#[cfg(test)]
#[path = "reader_tests.rs"]
mod tests;
