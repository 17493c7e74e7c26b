//! Batches of sessions read from click-log files: picks the parser for the format, applies the
//! session rules, looks ids up in a shared vocabulary, and yields padded Arrow record batches.
//!
//! Files are read one after another in the given order, so dense ids follow file order and then
//! line order. Parsing produces fingerprints only and ids are assigned as rows enter a batch, so a
//! later version can parse files in worker threads and keep the same ids.
//!
//! Two options need to see the whole input before the first row: `positions=None` (pad to the
//! largest position of a result, so that no result is truncated) and `min_sessions_per_query` above 1 (count the sessions of each query). With
//! either, the first call to `next` reads every file once without building rows, and the rows
//! come from a second read. That first pass applies the same rules, so both passes see the same
//! sessions. Under `on_error="strict"` a malformed line then fails before any batch is returned.

use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasherDefault;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use arrow_array::RecordBatch;

use crate::annotation::AnnotationParser;
use crate::baidu::BaiduParser;
use crate::batch::BatchBuilder;
use crate::clickmodels::ClickModelsParser;
use crate::error::{Error, Rejector, Result};
use crate::input::LineReader;
use crate::session::{Session, SessionRules, SessionSource};
use crate::stats::Stats;
use crate::vocabulary::{FingerprintHasher, Vocabulary};
use crate::wscd::WscdParser;
use crate::yandex::YandexParser;

pub use crate::error::ErrorPolicy;
pub use crate::options::{Format, ParserConfig, ReaderOptions, MAX_BATCH_SIZE, MAX_POSITIONS};

/// A vocabulary shared between readers and the caller.
pub type SharedVocabulary = Arc<Mutex<Vocabulary>>;

/// Sessions per query fingerprint, from the first pass.
type QueryCounts = HashMap<u64, u32, BuildHasherDefault<FingerprintHasher>>;

/// Opens the parser of `format` on one file.
fn open_parser(
    format: Format,
    path: &Path,
    config: &ParserConfig,
    rejector: Rejector,
) -> Result<Box<dyn SessionSource>> {
    let lines = LineReader::open(path)?;
    Ok(match format {
        Format::Baidu => Box::new(BaiduParser::new(lines, rejector, config)),
        Format::BaiduAnnotation => Box::new(AnnotationParser::new(lines, rejector)),
        Format::Yandex => Box::new(YandexParser::new(lines, rejector, config)),
        Format::Wscd => Box::new(WscdParser::new(lines, rejector)),
        Format::ClickModels => Box::new(ClickModelsParser::new(lines, rejector)),
    })
}

/// Measurements of the first pass.
struct Scan {
    /// Largest position of a result in a session that passed the rules. Rows need this many
    /// slots, which can exceed the number of results where the log dropped a result.
    longest: usize,
    /// Sessions per query that passed the rules; None when not counted.
    query_counts: Option<QueryCounts>,
}

/// An iterator of record batches over click-log files.
pub struct BatchReader {
    format: Format,
    paths: Vec<PathBuf>,
    next_path: usize,
    source: Option<Box<dyn SessionSource>>,
    options: ReaderOptions,
    config: ParserConfig,
    rules: SessionRules,
    /// Created by [`BatchReader::prepare`], once the number of positions is known.
    builder: Option<BatchBuilder>,
    /// Sessions per query from the first pass, when `min_sessions_per_query` is above 1.
    query_counts: Option<QueryCounts>,
    /// Whether the files were read once already, so that skipped sessions are logged only once.
    scanned: bool,
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
            .field("options", &self.options)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl BatchReader {
    /// Creates a reader of `paths` in the given order. Every path must exist now, so that a
    /// typo fails before any work; files are opened only when their turn comes.
    ///
    /// Fails with [`Error::InvalidOption`] when an option does not apply to the format.
    pub fn new(
        format: Format,
        paths: Vec<PathBuf>,
        vocabulary: SharedVocabulary,
        options: ReaderOptions,
    ) -> Result<Self> {
        let config = options.parser_config(format)?;
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
        let rules = SessionRules {
            positions: options.positions.unwrap_or(MAX_POSITIONS),
            drop_sessions_without_clicks: options.drop_sessions_without_clicks,
            min_results: options.min_results,
        };
        Ok(BatchReader {
            format,
            paths,
            next_path: 0,
            source: None,
            options,
            config,
            rules,
            builder: None,
            query_counts: None,
            scanned: false,
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

    /// Slots per row: the `positions` option, or the largest position of a kept result once the
    /// first pass is done; None before then.
    pub fn positions(&self) -> Option<usize> {
        match &self.builder {
            Some(_) => Some(self.rules.positions),
            None => self.options.positions,
        }
    }

    /// Reads the files once if an option needs it and creates the batch builder.
    fn prepare(&mut self) -> Result<()> {
        if self.builder.is_some() {
            return Ok(());
        }
        let count_queries = self.options.min_sessions_per_query > 1;
        if self.options.positions.is_none() || count_queries {
            let scan = self.first_pass(count_queries)?;
            self.scanned = true;
            if self.options.positions.is_none() {
                self.rules.positions = scan.longest.max(1);
            }
            self.query_counts = scan.query_counts;
        }
        let layout = self.config.layout(self.format);
        self.builder = Some(BatchBuilder::new(
            self.rules.positions,
            self.options.batch_size,
            &layout,
        ));
        Ok(())
    }

    /// Reads every file once for the first pass, applying the session rules without building
    /// rows, and measures the largest rank and the sessions of each query.
    fn first_pass(&self, count_queries: bool) -> Result<Scan> {
        let mut scan = Scan {
            longest: 0,
            query_counts: count_queries.then(QueryCounts::default),
        };
        // Counters of the first pass are thrown away; the second pass counts the same events.
        let mut stats = Stats::default();
        let mut session = Session::default();
        for path in &self.paths {
            let rejector = Rejector::new(self.options.on_error);
            let mut source = open_parser(self.format, path, &self.config, rejector)?;
            loop {
                match source.next_session(&mut session, &mut stats) {
                    Ok(true) => {}
                    Ok(false) => break,
                    // The second pass logs and counts the damage.
                    Err(Error::CorruptInput { .. })
                        if self.options.on_error == ErrorPolicy::Skip =>
                    {
                        break
                    }
                    Err(error) => return Err(error),
                }
                if !self.rules.apply(&mut session, &mut stats) {
                    continue;
                }
                let last = session.results.last().map_or(0, |result| result.position);
                scan.longest = scan.longest.max(last as usize);
                if let Some(counts) = &mut scan.query_counts {
                    let count = counts.entry(session.query_key).or_insert(0);
                    *count = count.saturating_add(1);
                }
            }
        }
        Ok(scan)
    }

    /// Returns false if the query of a session that passed the rules has too few sessions.
    fn query_is_frequent(&self, query_key: u64) -> bool {
        let Some(counts) = &self.query_counts else {
            return true;
        };
        let count = counts.get(&query_key).copied().unwrap_or(0);
        u64::from(count) >= self.options.min_sessions_per_query
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
                Err(error @ Error::CorruptInput { .. })
                    if self.options.on_error == ErrorPolicy::Skip =>
                {
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
        let rejector = if self.scanned {
            Rejector::quiet(self.options.on_error)
        } else {
            Rejector::new(self.options.on_error)
        };
        open_parser(self.format, path, &self.config, rejector).map(Some)
    }

    /// Fills the batch builder until it is full, the input ends, or an error occurs.
    fn fill_batch(&mut self) -> Result<()> {
        self.prepare()?;
        let vocabulary = Arc::clone(&self.vocabulary);
        // A poisoned lock only means another thread panicked while holding it; the vocabulary
        // is still consistent because every insert is a single map operation.
        let mut vocabulary = vocabulary.lock().unwrap_or_else(PoisonError::into_inner);
        while !self.builder.as_ref().is_some_and(BatchBuilder::is_full) {
            if !self.read_session()? {
                self.finished = true;
                break;
            }
            if !self.rules.apply(&mut self.session, &mut self.stats) {
                continue;
            }
            if !self.query_is_frequent(self.session.query_key) {
                self.stats.sessions_dropped_rare_query += 1;
                continue;
            }
            if let Some(builder) = &mut self.builder {
                builder.push(&self.session, &mut vocabulary, &mut self.stats)?;
                self.stats.sessions_kept += 1;
            }
        }
        Ok(())
    }

    fn has_rows(&self) -> bool {
        self.builder
            .as_ref()
            .is_some_and(|builder| !builder.is_empty())
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
            if !self.has_rows() {
                return Some(Err(error));
            }
            self.pending_error = Some(error);
        }
        match &mut self.builder {
            Some(builder) if !builder.is_empty() => Some(builder.finish()),
            _ => None,
        }
    }
}

#[cfg(test)]
#[path = "reader_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "reader_rules_tests.rs"]
mod rules_tests;
