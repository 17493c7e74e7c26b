//! Blocks of rows from several files built at once on worker threads and handed out in input
//! order.
//!
//! The reader dispatches one file per worker, at most `threads` files at a time, and gives the
//! rest of the `threads` budget to the gzip files as decompression threads. A worker parses its
//! file, applies the session rules, numbers the keys with file-local ids and sends blocks of rows
//! (see the `block` module) through a channel of the file's own. The reader drains the channels
//! in file order, so rows arrive in file order and then line order whatever the number of
//! threads. A worker whose file is not being read yet keeps working until its unread blocks take
//! up the lookahead budget (`ReaderOptions::lookahead_bytes`). So memory is bounded by `threads`
//! times that budget plus the workers' local id tables, whatever the size of the input.
//!
//! A worker stops a file at its first error and sends the error after the rows before it, so an
//! error reaches the caller exactly where a sequential read would meet it. Dropping a
//! [`ParallelBlocks`] closes every channel and joins the workers.
//!
//! For the first pass of the reader, workers build no rows: each measures its file ([`Scan`])
//! and sends the measurements with the end of the file.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasherDefault;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};

use crate::annotation::AnnotationParser;
use crate::baidu::BaiduParser;
use crate::block::{Block, LocalIds};
use crate::clickmodels::ClickModelsParser;
use crate::error::{Error, ErrorPolicy, Rejector, Result};
use crate::input::{DecompressionThreads, LineReader};
use crate::options::{Format, ParserConfig};
use crate::session::{Session, SessionRules, SessionSource};
use crate::stats::Stats;
use crate::vocabulary::FingerprintHasher;
use crate::wscd::WscdParser;
use crate::yandex::YandexParser;

/// Rows per block sent by a worker.
const ROWS_PER_BLOCK: usize = 512;

/// Sessions between two checks of a first-pass worker for a reader that dropped its file.
const SESSIONS_PER_CHECK: u64 = 4096;

/// Sessions per query fingerprint.
pub(crate) type QueryCounts = HashMap<u64, u32, BuildHasherDefault<FingerprintHasher>>;

/// Measurements of the first pass, over the sessions that passed the rules.
#[derive(Default)]
pub(crate) struct Scan {
    /// Largest position of a result. Rows need this many slots, which can exceed the number of
    /// results where the log dropped a result.
    pub longest: usize,
    /// Sessions per query; None when not counted.
    pub query_counts: Option<QueryCounts>,
}

impl Scan {
    /// Adds the measurements of another file.
    fn merge(&mut self, other: Scan) {
        self.longest = self.longest.max(other.longest);
        if let (Some(counts), Some(other)) = (&mut self.query_counts, other.query_counts) {
            for (query, count) in other {
                let total = counts.entry(query).or_insert(0);
                *total = total.saturating_add(count);
            }
        }
    }
}

/// Opens the parser of `format` on one file, which decompresses on a thread of its own if
/// `decompression` has one free.
pub(crate) fn open_parser(
    format: Format,
    path: &Path,
    config: &ParserConfig,
    rejector: Rejector,
    decompression: &DecompressionThreads,
) -> Result<Box<dyn SessionSource>> {
    let lines = LineReader::open_with(path, decompression)?;
    Ok(match format {
        Format::Baidu => Box::new(BaiduParser::new(lines, rejector, config)),
        Format::BaiduAnnotation => {
            Box::new(AnnotationParser::new(lines, rejector).with_keys(config.keys))
        }
        Format::Yandex => Box::new(YandexParser::new(lines, rejector, config)),
        Format::Wscd => Box::new(WscdParser::new(lines, rejector).with_keys(config.keys)),
        Format::ClickModels => {
            Box::new(ClickModelsParser::new(lines, rejector).with_keys(config.keys))
        }
    })
}

/// Work of the workers on each file.
pub(crate) enum Pass {
    /// The first pass: measure each file, counting the sessions per query if `count_queries`.
    Scan { count_queries: bool },
    /// Rows of the sessions whose query has at least `min_sessions_per_query` sessions in
    /// `query_counts`, or of every accepted session when there are no counts.
    Rows {
        query_counts: Option<Arc<QueryCounts>>,
        min_sessions_per_query: u64,
    },
}

/// Settings that every worker needs to read a file.
pub(crate) struct ParseSettings {
    pub format: Format,
    pub config: ParserConfig,
    pub on_error: ErrorPolicy,
    /// Whether to log every skipped session at debug level, because a first pass logged them.
    pub quiet: bool,
    /// Decompression threads that the files may start, set by [`ParallelBlocks::start`].
    pub decompression: DecompressionThreads,
    pub rules: SessionRules,
    pub pass: Pass,
    /// Bytes of blocks that a worker may send ahead of the reader for one file.
    pub lookahead_bytes: usize,
    /// Local ids per table at which a worker starts a new numbering.
    pub max_local_ids: usize,
}

impl ParseSettings {
    /// Returns false if the session's query has too few sessions to become a row.
    fn query_is_frequent(&self, query_key: u64) -> bool {
        let Pass::Rows {
            query_counts: Some(counts),
            min_sessions_per_query,
        } = &self.pass
        else {
            return true;
        };
        let count = counts.get(&query_key).copied().unwrap_or(0);
        u64::from(count) >= *min_sessions_per_query
    }
}

/// Message of a worker about one file.
enum Message {
    Block(Box<Block>),
    /// The file is done, cleanly or with an error; nothing follows.
    Finished(Box<FileEnd>),
}

/// End of a file: its result, the counters since its last block, and the measurements of a
/// first pass.
struct FileEnd {
    result: Result<()>,
    stats: Stats,
    scan: Option<Scan>,
}

impl Message {
    fn finished(result: Result<()>, stats: Stats, scan: Option<Scan>) -> Self {
        Message::Finished(Box::new(FileEnd {
            result,
            stats,
            scan,
        }))
    }
}

/// Bytes of blocks sent for one file and not yet taken by the reader.
struct Lookahead {
    limit: usize,
    state: Mutex<LookaheadState>,
    changed: Condvar,
}

#[derive(Default)]
struct LookaheadState {
    buffered: usize,
    /// Set when the reader drops the file, so that a waiting worker returns.
    closed: bool,
}

impl Lookahead {
    fn new(limit: usize) -> Self {
        Lookahead {
            limit,
            state: Mutex::new(LookaheadState::default()),
            changed: Condvar::new(),
        }
    }

    /// Waits until `bytes` more fit within the limit, or nothing is buffered, and adds them.
    /// Returns false if the reader dropped the file.
    fn reserve(&self, bytes: usize) -> bool {
        let mut state = lock(&self.state);
        while !state.closed && state.buffered > 0 && state.buffered + bytes > self.limit {
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        state.buffered += bytes;
        !state.closed
    }

    fn release(&self, bytes: usize) {
        let mut state = lock(&self.state);
        state.buffered = state.buffered.saturating_sub(bytes);
        self.changed.notify_all();
    }

    fn close(&self) {
        lock(&self.state).closed = true;
        self.changed.notify_all();
    }

    fn is_closed(&self) -> bool {
        lock(&self.state).closed
    }
}

/// One file for a worker, and the channel for its blocks.
struct Job {
    path: PathBuf,
    output: Sender<Message>,
    lookahead: Arc<Lookahead>,
}

/// A file being read, in the reader's queue.
struct InFlight {
    path: PathBuf,
    messages: Receiver<Message>,
    lookahead: Arc<Lookahead>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Blocks of rows of a list of files, built by worker threads and returned in input order.
pub(crate) struct ParallelBlocks {
    paths: Vec<PathBuf>,
    next_path: usize,
    /// None once dropped, so that idle workers return.
    jobs: Option<SyncSender<Job>>,
    in_flight: VecDeque<InFlight>,
    /// Files read at once.
    window: usize,
    lookahead_bytes: usize,
    /// Blocks handed back to the workers for reuse, with their allocations.
    spare: SyncSender<Box<Block>>,
    /// Measurements of the files finished so far, in a first pass.
    scan: Scan,
    workers: Vec<JoinHandle<()>>,
}

impl ParallelBlocks {
    /// Starts workers on `paths` within a budget of `threads` threads: one worker per file up to
    /// `threads` (at least one), and the rest of the budget as decompression threads of the gzip
    /// files being parsed. A file without a free decompression thread decompresses on its
    /// worker.
    pub(crate) fn start(
        paths: Vec<PathBuf>,
        mut settings: ParseSettings,
        threads: usize,
    ) -> Result<Self> {
        let window = threads.clamp(1, paths.len().max(1));
        settings.decompression = DecompressionThreads::new(threads.saturating_sub(window));
        let count_queries = matches!(
            settings.pass,
            Pass::Scan {
                count_queries: true
            }
        );
        let (job_sender, job_receiver) = mpsc::sync_channel::<Job>(window);
        let (spare, spare_receiver) = mpsc::sync_channel(window * 2);
        let job_receiver = Arc::new(Mutex::new(job_receiver));
        let spare_receiver = Arc::new(Mutex::new(spare_receiver));
        let lookahead_bytes = settings.lookahead_bytes;
        let settings = Arc::new(settings);

        let mut blocks = ParallelBlocks {
            paths,
            next_path: 0,
            jobs: Some(job_sender),
            in_flight: VecDeque::with_capacity(window),
            window,
            lookahead_bytes,
            spare,
            scan: Scan {
                longest: 0,
                query_counts: count_queries.then(QueryCounts::default),
            },
            workers: Vec::with_capacity(window),
        };
        for index in 0..window {
            let jobs = Arc::clone(&job_receiver);
            let spare = Arc::clone(&spare_receiver);
            let settings = Arc::clone(&settings);
            let worker = thread::Builder::new()
                .name(format!("clickjax-reader-{index}"))
                .spawn(move || work(&jobs, &spare, &settings));
            match worker {
                Ok(worker) => blocks.workers.push(worker),
                // Dropping `blocks` joins the workers started so far.
                Err(source) => return Err(Error::ThreadStart(source)),
            }
        }
        Ok(blocks)
    }

    /// Returns the next block in input order, after adding the counters of the parsing so far
    /// to `stats`, or None when every file is read.
    ///
    /// An error ends the file it came from; the next call continues with the next file.
    pub(crate) fn next_block(&mut self, stats: &mut Stats) -> Result<Option<Box<Block>>> {
        loop {
            self.dispatch();
            let Some(front) = self.in_flight.front() else {
                return Ok(None);
            };
            match front.messages.recv() {
                Ok(Message::Block(mut block)) => {
                    front.lookahead.release(block.heap_bytes());
                    stats.add(&std::mem::take(&mut block.stats));
                    return Ok(Some(block));
                }
                Ok(Message::Finished(end)) => {
                    stats.add(&end.stats);
                    if let Some(scan) = end.scan {
                        self.scan.merge(scan);
                    }
                    self.in_flight.pop_front();
                    end.result?;
                }
                Err(mpsc::RecvError) => {
                    let path = self.in_flight.pop_front().map(|file| file.path);
                    return Err(Error::Io {
                        path: path.unwrap_or_default(),
                        source: std::io::Error::other(
                            "the parsing thread stopped before the end of the file",
                        ),
                    });
                }
            }
        }
    }

    /// Hands a block that the reader is done with back to the workers for reuse.
    pub(crate) fn recycle(&self, block: Box<Block>) {
        // When the spare queue is full or the workers are gone, the block is freed.
        let _ = self.spare.try_send(block);
    }

    /// Measurements of the files finished so far, in a first pass.
    pub(crate) fn take_scan(&mut self) -> Scan {
        std::mem::take(&mut self.scan)
    }

    /// Hands files to the workers until `window` files are in flight or none is left.
    fn dispatch(&mut self) {
        let Some(jobs) = &self.jobs else {
            return;
        };
        while self.in_flight.len() < self.window && self.next_path < self.paths.len() {
            let path = self.paths[self.next_path].clone();
            self.next_path += 1;
            let (output, messages) = mpsc::channel();
            let lookahead = Arc::new(Lookahead::new(self.lookahead_bytes));
            let job = Job {
                path: path.clone(),
                output,
                lookahead: Arc::clone(&lookahead),
            };
            // The job queue holds `window` jobs and at most `window` files are in flight, so
            // this never blocks. If the workers are gone, `recv` reports the lost file.
            let _ = jobs.send(job);
            self.in_flight.push_back(InFlight {
                path,
                messages,
                lookahead,
            });
        }
    }
}

impl Drop for ParallelBlocks {
    fn drop(&mut self) {
        // Closing the job queue stops idle workers, and closing the lookahead budgets and the
        // channels makes a busy worker's next wait or send fail, so every worker returns soon.
        self.jobs = None;
        for file in self.in_flight.drain(..) {
            file.lookahead.close();
        }
        for worker in self.workers.drain(..) {
            // `work` catches panics of the parsers, so a join error has nothing to report.
            let _ = worker.join();
        }
    }
}

/// Runs one worker: takes files from `jobs` until the queue is closed.
fn work(
    jobs: &Mutex<Receiver<Job>>,
    spare: &Mutex<Receiver<Box<Block>>>,
    settings: &ParseSettings,
) {
    loop {
        let job = lock(jobs).recv();
        let Ok(job) = job else {
            return;
        };
        // A panic in a parser is a bug, but it must not take the reader down with it: the
        // dropped channel reports to the reader that this file failed.
        let _ = panic::catch_unwind(AssertUnwindSafe(|| read_file(job, spare, settings)));
    }
}

/// Reads one file and sends its blocks, or its measurements in a first pass, then how the file
/// ended.
fn read_file(job: Job, spare: &Mutex<Receiver<Box<Block>>>, settings: &ParseSettings) {
    // A job still queued when the reader was dropped needs no work.
    if job.lookahead.is_closed() {
        return;
    }
    let rejector = if settings.quiet {
        Rejector::quiet(settings.on_error)
    } else {
        Rejector::new(settings.on_error)
    };
    let mut stats = Stats::default();
    let opened = open_parser(
        settings.format,
        &job.path,
        &settings.config,
        rejector,
        &settings.decompression,
    );
    let mut source = match opened {
        Ok(source) => source,
        Err(error) => {
            let _ = job.output.send(Message::finished(Err(error), stats, None));
            return;
        }
    };
    let (result, scan) = match settings.pass {
        Pass::Scan { count_queries } => {
            let mut scan = Scan {
                longest: 0,
                query_counts: count_queries.then(QueryCounts::default),
            };
            let result = scan_file(source.as_mut(), settings, &job, &mut scan, &mut stats);
            (result, Some(scan))
        }
        Pass::Rows { .. } => {
            let sent = send_blocks(source.as_mut(), settings, &job, spare, &mut stats);
            match sent {
                Some(result) => (result, None),
                // The reader dropped the file.
                None => return,
            }
        }
    };
    let _ = job.output.send(Message::finished(result, stats, scan));
}

/// Measures the sessions of a file that pass the rules, up to its end or first error, or until
/// the reader drops the file.
fn scan_file(
    source: &mut dyn SessionSource,
    settings: &ParseSettings,
    job: &Job,
    scan: &mut Scan,
    stats: &mut Stats,
) -> Result<()> {
    let mut session = Session::default();
    let mut sessions: u64 = 0;
    while source.next_session(&mut session, stats)? {
        sessions += 1;
        // Nothing else stops a first pass, which sends no blocks, when the reader is dropped
        // after an error in an earlier file.
        if sessions % SESSIONS_PER_CHECK == 0 && job.lookahead.is_closed() {
            return Ok(());
        }
        if !settings.rules.apply(&mut session, stats) {
            continue;
        }
        let last = session.results.last().map_or(0, |result| result.position);
        scan.longest = scan.longest.max(last as usize);
        if let Some(counts) = &mut scan.query_counts {
            let count = counts.entry(session.query_key).or_insert(0);
            *count = count.saturating_add(1);
        }
    }
    Ok(())
}

/// Sends the rows of a file in blocks, up to its end or first error, and returns how the file
/// ended; None if the reader dropped the file.
fn send_blocks(
    source: &mut dyn SessionSource,
    settings: &ParseSettings,
    job: &Job,
    spare: &Mutex<Receiver<Box<Block>>>,
    stats: &mut Stats,
) -> Option<Result<()>> {
    let mut session = Session::default();
    let mut local = LocalIds::new(settings.max_local_ids);
    let mut reset = true;
    loop {
        let mut block = lock(spare).try_recv().unwrap_or_default();
        block.start(&local, reset);
        let outcome = loop {
            match source.next_session(&mut session, stats) {
                Ok(true) => {}
                Ok(false) => break Some(Ok(())),
                Err(error) => break Some(Err(error)),
            }
            if !settings.rules.apply(&mut session, stats) {
                continue;
            }
            if !settings.query_is_frequent(session.query_key) {
                stats.sessions_dropped_rare_query += 1;
                continue;
            }
            block.push(&session, &mut local);
            if block.rows() == ROWS_PER_BLOCK {
                break None;
            }
        };
        if block.rows() > 0 {
            block.stats = std::mem::take(stats);
            if !job.lookahead.reserve(block.heap_bytes()) {
                return None;
            }
            if job.output.send(Message::Block(block)).is_err() {
                return None;
            }
            // Numbering starts again between blocks, never within one.
            reset = local.is_full();
            if reset {
                local.clear();
            }
        }
        if outcome.is_some() {
            return outcome;
        }
    }
}
