//! Batches of sessions read from click-log files: picks the parser for the format, applies the
//! session rules, looks ids up in a shared vocabulary, and yields padded Arrow record batches.
//!
//! Up to `threads` files are read at once on worker threads, and the threads of that budget
//! left over decompress gzip files (see the `pipeline` module). Each worker parses its
//! file, applies the session rules and builds blocks of rows with ids local to the file. The
//! calling thread takes the blocks in file order and then line order, maps each new local id to
//! the shared vocabulary's id as the first row using it is copied into a batch, and copies the
//! rows. So dense ids follow the input order whatever the number of threads.
//!
//! Two options need to see the whole input before the first row: `positions=None` (pad to the
//! largest position of a result, so that no result is truncated) and `min_sessions_per_query`
//! above 1 (count the sessions of each query). With either, the first call to `next` reads every
//! file once without building rows, and the rows come from a second read. That first pass
//! applies the same rules, so both passes see the same sessions. Under `on_error="strict"` a
//! malformed line then fails before any batch is returned.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use arrow_array::RecordBatch;

use crate::batch::BatchBuilder;
use crate::block::{Block, Remap, MAX_LOCAL_IDS};
use crate::error::{Error, Result};
use crate::input::DecompressionThreads;
use crate::pipeline::{ParallelBlocks, ParseSettings, Pass, QueryCounts, Scan};
use crate::session::SessionRules;
use crate::stats::Stats;
use crate::vocabulary::Vocabulary;

pub use crate::error::ErrorPolicy;
pub use crate::options::{Format, ParserConfig, ReaderOptions, MAX_BATCH_SIZE, MAX_POSITIONS};

/// A vocabulary shared between readers and the caller.
pub type SharedVocabulary = Arc<Mutex<Vocabulary>>;

/// An iterator of record batches over click-log files.
pub struct BatchReader {
    format: Format,
    paths: Vec<PathBuf>,
    /// Blocks of rows of the files, started by the first call to `next` after any first pass.
    blocks: Option<ParallelBlocks>,
    options: ReaderOptions,
    config: ParserConfig,
    rules: SessionRules,
    /// Created by [`BatchReader::prepare`], once the number of positions is known.
    builder: Option<BatchBuilder>,
    /// Sessions per query from the first pass, when `min_sessions_per_query` is above 1.
    query_counts: Option<Arc<QueryCounts>>,
    /// Whether the files were read once already, so that skipped sessions are logged only once.
    scanned: bool,
    vocabulary: SharedVocabulary,
    /// The block being copied into batches, the index of its next row, and the vocabulary ids
    /// of its file's local ids.
    block: Box<Block>,
    row: usize,
    remap: Remap,
    /// Local ids per table at which a file worker starts a new numbering.
    max_local_ids: usize,
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
            blocks: None,
            options,
            config,
            rules,
            builder: None,
            query_counts: None,
            scanned: false,
            vocabulary,
            block: Box::default(),
            row: 0,
            remap: Remap::default(),
            max_local_ids: MAX_LOCAL_IDS,
            stats: Stats::default(),
            pending_error: None,
            finished: false,
        })
    }

    /// Sets the local ids per table at which a file worker starts a new numbering, so that tests
    /// reach that limit with small files.
    #[cfg(test)]
    pub(crate) fn with_max_local_ids(mut self, limit: usize) -> Self {
        self.max_local_ids = limit.max(1);
        self
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
            self.query_counts = scan.query_counts.map(Arc::new);
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
        // Counters of the first pass are thrown away; the second pass counts the same events.
        let mut stats = Stats::default();
        // The first pass assigns no ids, so it needs no key texts.
        let mut blocks = self.start_blocks(Pass::Scan { count_queries }, false, false)?;
        loop {
            match blocks.next_block(&mut stats) {
                Ok(Some(_)) => {}
                Ok(None) => break,
                // The second pass logs and counts the damage; the file's other sessions count.
                Err(Error::CorruptInput { .. }) if self.options.on_error == ErrorPolicy::Skip => {}
                Err(error) => return Err(error),
            }
        }
        Ok(blocks.take_scan())
    }

    /// Starts the workers on every file. `quiet` logs skipped sessions at debug level only, and
    /// `keys` makes the parsers copy key texts into the sessions.
    fn start_blocks(&self, pass: Pass, quiet: bool, keys: bool) -> Result<ParallelBlocks> {
        let settings = ParseSettings {
            format: self.format,
            config: ParserConfig {
                keys,
                ..self.config.clone()
            },
            on_error: self.options.on_error,
            quiet,
            decompression: DecompressionThreads::default(),
            rules: self.rules,
            pass,
            lookahead_bytes: self.options.lookahead_bytes,
            max_local_ids: self.max_local_ids,
        };
        ParallelBlocks::start(self.paths.clone(), settings, self.options.threads)
    }

    /// Makes the next block of any remaining file the current one, with key texts if `keys` is
    /// true when the files are started. Returns false when every file is read.
    fn next_block(&mut self, keys: bool) -> Result<bool> {
        if self.blocks.is_none() {
            let pass = Pass::Rows {
                query_counts: self.query_counts.clone(),
                min_sessions_per_query: self.options.min_sessions_per_query,
            };
            self.blocks = Some(self.start_blocks(pass, self.scanned, keys)?);
        }
        let Some(blocks) = &mut self.blocks else {
            return Ok(false);
        };
        loop {
            match blocks.next_block(&mut self.stats) {
                Ok(Some(block)) => {
                    blocks.recycle(std::mem::replace(&mut self.block, block));
                    self.row = 0;
                    if self.block.reset {
                        self.remap.clear();
                    }
                    return Ok(true);
                }
                Ok(None) => return Ok(false),
                // The rest of that file is lost; the next call continues with the next file.
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

    /// Fills the batch builder until it is full, the input ends, or an error occurs.
    fn fill_batch(&mut self) -> Result<()> {
        self.prepare()?;
        let vocabulary = Arc::clone(&self.vocabulary);
        // A poisoned lock only means another thread panicked while holding it; the vocabulary
        // is still consistent because every insert is a single map operation.
        let mut vocabulary = vocabulary.lock().unwrap_or_else(PoisonError::into_inner);
        // Only an open vocabulary that records keys stores the texts of new ids. The files are
        // started once, so a vocabulary frozen later still receives texts, and ignores them.
        let keys = vocabulary.records_keys() && !vocabulary.is_frozen();
        let Some(mut builder) = self.builder.take() else {
            return Ok(());
        };
        let copied = self.copy_rows(&mut builder, &mut vocabulary, keys);
        self.builder = Some(builder);
        copied
    }

    /// Copies rows of the blocks into `builder` until it is full, the input ends, or an error
    /// occurs.
    fn copy_rows(
        &mut self,
        builder: &mut BatchBuilder,
        vocabulary: &mut Vocabulary,
        keys: bool,
    ) -> Result<()> {
        while !builder.is_full() {
            if self.row == self.block.rows() {
                if !self.next_block(keys)? {
                    self.finished = true;
                    break;
                }
                continue;
            }
            self.remap
                .push_row(&self.block, self.row, vocabulary, builder, &mut self.stats)?;
            self.row += 1;
            self.stats.sessions_kept += 1;
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

#[cfg(test)]
#[path = "reader_threads_tests.rs"]
mod threads_tests;

#[cfg(test)]
#[path = "reader_keys_tests.rs"]
mod keys_tests;

#[cfg(test)]
#[path = "reader_blocks_tests.rs"]
mod blocks_tests;
