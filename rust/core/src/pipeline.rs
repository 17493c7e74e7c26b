//! Sessions of several files parsed at once on worker threads and handed out in input order.
//!
//! The reader dispatches one file per worker, at most `threads` files at a time, and gives the
//! rest of the `threads` budget to the gzip files as decompression threads. It receives the
//! sessions of each file through a bounded channel of its own. It drains the channels in file
//! order, so sessions arrive in file order and then line order whatever the number of threads,
//! and memory is bounded by `threads` files times [`CHUNKS_PER_FILE`] chunks of
//! [`SESSIONS_PER_CHUNK`] sessions. Dense ids are assigned by the caller as sessions arrive, so
//! they do not depend on the thread count either.
//!
//! A worker stops a file at its first error and sends the error after the sessions before it,
//! so an error reaches the caller exactly where a sequential read would meet it. Dropping a
//! [`ParallelSessions`] closes every channel and joins the workers.

use std::collections::VecDeque;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};

use crate::annotation::AnnotationParser;
use crate::baidu::BaiduParser;
use crate::clickmodels::ClickModelsParser;
use crate::error::{Error, ErrorPolicy, Rejector, Result};
use crate::input::{DecompressionThreads, LineReader};
use crate::options::{Format, ParserConfig};
use crate::session::{Session, SessionSource};
use crate::stats::Stats;
use crate::wscd::WscdParser;
use crate::yandex::YandexParser;

/// Sessions per message from a worker.
const SESSIONS_PER_CHUNK: usize = 256;

/// Messages a worker may send ahead of the reader for one file.
///
/// NOTE: a worker whose file is not the one being handed out stops after these chunks, about
/// 1,000 sessions. Files much larger than that parse one after another whatever the number of
/// workers, and only a decompression thread (more threads than files) overlaps their work.
const CHUNKS_PER_FILE: usize = 4;

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

/// Settings that every worker needs to parse a file.
pub(crate) struct ParseSettings {
    pub format: Format,
    pub config: ParserConfig,
    pub on_error: ErrorPolicy,
    /// Whether to log every skipped session at debug level, because a first pass logged them.
    pub quiet: bool,
    /// Decompression threads that the files may start, set by [`ParallelSessions::start`].
    pub decompression: DecompressionThreads,
}

/// Message of a worker about one file. Each message carries the counters of the sessions parsed
/// since the previous one.
enum Message {
    Sessions(Vec<Session>, Stats),
    /// The file is done, cleanly or with an error; nothing follows.
    Finished(Result<()>, Stats),
}

/// One file for a worker, and the channel for its sessions.
struct Job {
    path: PathBuf,
    output: SyncSender<Message>,
}

/// A file being read, in the reader's queue.
struct InFlight {
    path: PathBuf,
    messages: Receiver<Message>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Sessions of a list of files, parsed by worker threads and returned in input order.
pub(crate) struct ParallelSessions {
    paths: Vec<PathBuf>,
    next_path: usize,
    /// None once dropped, so that idle workers return.
    jobs: Option<SyncSender<Job>>,
    in_flight: VecDeque<InFlight>,
    /// Files read at once.
    window: usize,
    /// The chunk being handed out, and the index of its next session.
    chunk: Vec<Session>,
    position: usize,
    /// Chunks handed back to the workers for reuse, with their sessions' allocations.
    spare: SyncSender<Vec<Session>>,
    workers: Vec<JoinHandle<()>>,
}

impl ParallelSessions {
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
        let (job_sender, job_receiver) = mpsc::sync_channel::<Job>(window);
        let (spare, spare_receiver) = mpsc::sync_channel(window * (CHUNKS_PER_FILE + 1));
        let job_receiver = Arc::new(Mutex::new(job_receiver));
        let spare_receiver = Arc::new(Mutex::new(spare_receiver));
        let settings = Arc::new(settings);

        let mut sessions = ParallelSessions {
            paths,
            next_path: 0,
            jobs: Some(job_sender),
            in_flight: VecDeque::with_capacity(window),
            window,
            chunk: Vec::new(),
            position: 0,
            spare,
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
                Ok(worker) => sessions.workers.push(worker),
                // Dropping `sessions` joins the workers started so far.
                Err(source) => return Err(Error::ThreadStart(source)),
            }
        }
        Ok(sessions)
    }

    /// Fills `session` with the next session in input order and adds the counters of the
    /// parsing so far to `stats`. Returns false when every file is read.
    ///
    /// An error ends the file it came from; the next call continues with the next file.
    pub(crate) fn next_session(
        &mut self,
        session: &mut Session,
        stats: &mut Stats,
    ) -> Result<bool> {
        loop {
            if let Some(next) = self.chunk.get_mut(self.position) {
                std::mem::swap(session, next);
                self.position += 1;
                return Ok(true);
            }
            if !self.chunk.is_empty() {
                // When the spare queue is full or the workers are gone, the chunk is freed.
                let _ = self.spare.try_send(std::mem::take(&mut self.chunk));
                self.position = 0;
            }
            self.dispatch();
            let Some(front) = self.in_flight.front() else {
                return Ok(false);
            };
            match front.messages.recv() {
                Ok(Message::Sessions(chunk, counts)) => {
                    stats.add(&counts);
                    self.chunk = chunk;
                }
                Ok(Message::Finished(result, counts)) => {
                    stats.add(&counts);
                    self.in_flight.pop_front();
                    result?;
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

    /// Hands files to the workers until `window` files are in flight or none is left.
    fn dispatch(&mut self) {
        let Some(jobs) = &self.jobs else {
            return;
        };
        while self.in_flight.len() < self.window && self.next_path < self.paths.len() {
            let path = self.paths[self.next_path].clone();
            self.next_path += 1;
            let (output, messages) = mpsc::sync_channel(CHUNKS_PER_FILE);
            let job = Job {
                path: path.clone(),
                output,
            };
            // The job queue holds `window` jobs and at most `window` files are in flight, so
            // this never blocks. If the workers are gone, `recv` reports the lost file.
            let _ = jobs.send(job);
            self.in_flight.push_back(InFlight { path, messages });
        }
    }
}

impl Drop for ParallelSessions {
    fn drop(&mut self) {
        // Closing the job queue stops idle workers, and closing the session channels makes a
        // busy worker's next send fail, so every worker returns soon.
        self.jobs = None;
        self.in_flight.clear();
        for worker in self.workers.drain(..) {
            // `work` catches panics of the parsers, so a join error has nothing to report.
            let _ = worker.join();
        }
    }
}

/// Runs one worker: takes files from `jobs` until the queue is closed.
fn work(
    jobs: &Mutex<Receiver<Job>>,
    spare: &Mutex<Receiver<Vec<Session>>>,
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

/// Parses one file and sends its sessions in chunks, then how the file ended.
fn read_file(job: Job, spare: &Mutex<Receiver<Vec<Session>>>, settings: &ParseSettings) {
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
            let _ = job.output.send(Message::Finished(Err(error), stats));
            return;
        }
    };
    loop {
        let mut chunk = lock(spare).try_recv().unwrap_or_default();
        let mut filled = 0;
        let outcome = loop {
            if filled == chunk.len() {
                chunk.push(Session::default());
            }
            match source.next_session(&mut chunk[filled], &mut stats) {
                Ok(true) => {
                    filled += 1;
                    if filled == SESSIONS_PER_CHUNK {
                        break None;
                    }
                }
                Ok(false) => break Some(Ok(())),
                Err(error) => break Some(Err(error)),
            }
        };
        chunk.truncate(filled);
        if filled > 0 {
            let counts = std::mem::take(&mut stats);
            if job.output.send(Message::Sessions(chunk, counts)).is_err() {
                return;
            }
        }
        if let Some(result) = outcome {
            let _ = job.output.send(Message::Finished(result, stats));
            return;
        }
    }
}
