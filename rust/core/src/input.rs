//! Physical lines of a click-log file, plain or gzip-compressed.
//!
//! Gzip is detected by its magic bytes `1f 8b`, not by the file name, and every member of a
//! multi-member file is read. Lines are read into one reusable buffer, so a line of several
//! megabytes costs one buffer of that size, and a missing final newline is accepted. A gzip file
//! that ends early or fails its checksum surfaces as [`Error::CorruptInput`] with the compressed
//! byte offset and the last complete line, and the partial line at the damage is never returned.
//!
//! A gzip file is decompressed on the parsing thread, unless the reader grants it a
//! decompression thread of its own (see [`DecompressionThreads`]). That thread hands chunks of
//! text to the parsing thread through a bounded channel, so that parsing and decompression
//! overlap and at most four chunks of 256 KiB wait at a time.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use flate2::bufread::MultiGzDecoder;
use memchr::memchr;

use crate::error::{Error, Result};

/// The two magic bytes that open every gzip member.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Read buffer for the compressed or plain file.
const FILE_BUFFER_BYTES: usize = 256 * 1024;

/// Decompressed bytes per chunk handed from the decompression thread to the parsing thread.
const CHUNK_BYTES: usize = 256 * 1024;

/// Chunks that the decompression thread may finish before the parser takes them.
const CHUNKS_IN_FLIGHT: usize = 4;

/// A buffered reader that counts the bytes its consumer has consumed, so that the compressed
/// offset of a gzip failure is known.
struct ConsumedBytes<R> {
    inner: R,
    consumed: u64,
}

impl<R: BufRead> Read for ConsumedBytes<R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buffer)?;
        self.consumed += read as u64;
        Ok(read)
    }
}

impl<R: BufRead> BufRead for ConsumedBytes<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amount: usize) {
        self.consumed += amount as u64;
        self.inner.consume(amount);
    }
}

type GzipDecoder = MultiGzDecoder<ConsumedBytes<BufReader<File>>>;

/// Decompression threads that the files of one reader may start, shared by its workers, so
/// that parsing and decompression threads together stay within the reader's thread budget.
#[derive(Clone, Debug, Default)]
pub(crate) struct DecompressionThreads {
    free: Arc<AtomicUsize>,
}

impl DecompressionThreads {
    /// Allows `count` decompression threads at a time.
    pub(crate) fn new(count: usize) -> Self {
        DecompressionThreads {
            free: Arc::new(AtomicUsize::new(count)),
        }
    }

    /// Takes one thread of the budget, or returns None when every one is in use.
    fn take(&self) -> Option<ThreadPermit> {
        self.free
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |free| {
                free.checked_sub(1)
            })
            .ok()
            .map(|_| ThreadPermit {
                free: Arc::clone(&self.free),
            })
    }
}

/// One decompression thread of a [`DecompressionThreads`] budget, returned to it on drop.
#[derive(Debug)]
struct ThreadPermit {
    free: Arc<AtomicUsize>,
}

impl Drop for ThreadPermit {
    fn drop(&mut self) {
        self.free.fetch_add(1, Ordering::AcqRel);
    }
}

/// A message from the decompression thread to the parsing thread.
enum Chunk {
    /// Decompressed text: the first `length` bytes of the buffer.
    Text { buffer: Vec<u8>, length: usize },
    /// Decompression failed after `offset` compressed bytes; nothing follows.
    Failed { source: io::Error, offset: u64 },
    /// The end of the file; nothing follows.
    End,
}

/// Fills chunks with decompressed text and sends them until the file ends, decompression
/// fails, or the receiver is dropped.
fn decompress(mut decoder: GzipDecoder, chunks: SyncSender<Chunk>, spare: Receiver<Vec<u8>>) {
    loop {
        // Reused buffers keep their length, so only a new buffer is zeroed.
        let mut buffer = spare.try_recv().unwrap_or_else(|_| vec![0; CHUNK_BYTES]);
        let mut length = 0;
        let mut failure = None;
        while length < buffer.len() {
            match decoder.read(&mut buffer[length..]) {
                Ok(0) => break,
                Ok(read) => length += read,
                Err(source) if source.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    failure = Some(source);
                    break;
                }
            }
        }
        let at_end = length < buffer.len();
        if length > 0 && chunks.send(Chunk::Text { buffer, length }).is_err() {
            return;
        }
        let last = match failure {
            Some(source) => Chunk::Failed {
                source,
                offset: decoder.get_ref().consumed,
            },
            None if at_end => Chunk::End,
            None => continue,
        };
        // The receiver may be gone already; either way this thread is done.
        let _ = chunks.send(last);
        return;
    }
}

/// The decompressed text of a gzip file, read from a decompression thread.
struct ThreadedGzip {
    /// None once dropped, so that a blocked sender wakes up before the thread is joined.
    chunks: Option<Receiver<Chunk>>,
    /// Buffers handed back to the decompression thread for reuse.
    spare: SyncSender<Vec<u8>>,
    buffer: Vec<u8>,
    length: usize,
    position: usize,
    /// Compressed offset of the decompression failure, once one was received.
    failure_offset: Option<u64>,
    finished: bool,
    thread: Option<JoinHandle<()>>,
    /// Returned to the budget after `Drop::drop` joins the thread, because fields drop after it.
    _permit: ThreadPermit,
}

impl ThreadedGzip {
    fn start(decoder: GzipDecoder, permit: ThreadPermit) -> io::Result<Self> {
        let (chunk_sender, chunks) = mpsc::sync_channel(CHUNKS_IN_FLIGHT);
        let (spare, spare_receiver) = mpsc::sync_channel(CHUNKS_IN_FLIGHT + 1);
        let thread = thread::Builder::new()
            .name("clickjax-gzip".to_string())
            .spawn(move || decompress(decoder, chunk_sender, spare_receiver))?;
        Ok(ThreadedGzip {
            chunks: Some(chunks),
            spare,
            buffer: Vec::new(),
            length: 0,
            position: 0,
            failure_offset: None,
            finished: false,
            thread: Some(thread),
            _permit: permit,
        })
    }
}

impl Read for ThreadedGzip {
    fn read(&mut self, output: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let count = available.len().min(output.len());
        output[..count].copy_from_slice(&available[..count]);
        self.consume(count);
        Ok(count)
    }
}

impl BufRead for ThreadedGzip {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.position >= self.length && !self.finished {
            let received = match &self.chunks {
                Some(chunks) => chunks.recv(),
                None => Err(mpsc::RecvError),
            };
            match received {
                Ok(Chunk::Text { buffer, length }) => {
                    let used = std::mem::replace(&mut self.buffer, buffer);
                    if !used.is_empty() {
                        // When the spare queue is full or closed, the buffer is freed instead.
                        let _ = self.spare.try_send(used);
                    }
                    self.length = length;
                    self.position = 0;
                }
                Ok(Chunk::Failed { source, offset }) => {
                    self.finished = true;
                    self.failure_offset = Some(offset);
                    return Err(source);
                }
                Ok(Chunk::End) => self.finished = true,
                Err(mpsc::RecvError) => {
                    self.finished = true;
                    return Err(io::Error::other(
                        "the gzip decompression thread stopped before the end of the file",
                    ));
                }
            }
        }
        if self.position >= self.length {
            return Ok(&[]);
        }
        Ok(&self.buffer[self.position..self.length])
    }

    fn consume(&mut self, amount: usize) {
        self.position = (self.position + amount).min(self.length);
    }
}

impl Drop for ThreadedGzip {
    fn drop(&mut self) {
        self.chunks = None;
        if let Some(thread) = self.thread.take() {
            // The thread returns once its next send fails; a panic there has nothing to report.
            let _ = thread.join();
        }
    }
}

/// The decompressed text of one file.
enum Text {
    Plain(BufReader<File>),
    /// Gzip decompressed on the thread that reads the lines.
    Gzip(Box<BufReader<GzipDecoder>>),
    /// Gzip decompressed on a thread of its own.
    ThreadedGzip(Box<ThreadedGzip>),
}

/// Decompresses a gzip file on the calling thread and returns the number of decompressed bytes.
/// The benchmarks use it as the speed limit of parsing a file.
pub fn decompressed_size(path: &Path) -> Result<u64> {
    let io_error = |source: io::Error| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => Error::NotFound {
            path: path.to_path_buf(),
        },
        _ => io_error(source),
    })?;
    let buffered = BufReader::with_capacity(FILE_BUFFER_BYTES, file);
    let mut decoder = MultiGzDecoder::new(ConsumedBytes {
        inner: buffered,
        consumed: 0,
    });
    let mut buffer = vec![0; CHUNK_BYTES];
    let mut total = 0u64;
    loop {
        match decoder.read(&mut buffer) {
            Ok(0) => return Ok(total),
            Ok(read) => total += read as u64,
            Err(source) if source.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(Error::CorruptInput {
                    path: path.to_path_buf(),
                    offset: decoder.get_ref().consumed,
                    lineno: 0,
                    cause: source.to_string(),
                })
            }
        }
    }
}

/// Appends the bytes up to and including the next LF to `line`, like [`BufRead::read_until`],
/// and returns their count. It finds the LF with the `memchr` crate, which is faster than the
/// search of the standard library on lines of about a hundred bytes.
fn read_line(reader: &mut impl BufRead, line: &mut Vec<u8>) -> io::Result<usize> {
    let mut read = 0;
    loop {
        let available = match reader.fill_buf() {
            Ok(available) => available,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        let (used, done) = match memchr(b'\n', available) {
            Some(end) => (end + 1, true),
            None => (available.len(), available.is_empty()),
        };
        line.extend_from_slice(&available[..used]);
        reader.consume(used);
        read += used;
        if done {
            return Ok(read);
        }
    }
}

/// Reads the physical lines of one input file and counts them.
pub struct LineReader {
    path: PathBuf,
    text: Text,
    line: Vec<u8>,
    lineno: u64,
    finished: bool,
}

impl LineReader {
    /// Opens `path` and detects gzip from its first two bytes. A gzip file is decompressed on
    /// the calling thread.
    ///
    /// A missing file is [`Error::NotFound`]; any other failure is [`Error::Io`].
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, &DecompressionThreads::default())
    }

    /// Opens `path` like [`LineReader::open`], and decompresses a gzip file on a thread of its
    /// own if `threads` has one free.
    pub(crate) fn open_with(path: &Path, threads: &DecompressionThreads) -> Result<Self> {
        let io_error = |source: io::Error| match source.kind() {
            io::ErrorKind::NotFound => Error::NotFound {
                path: path.to_path_buf(),
            },
            _ => Error::Io {
                path: path.to_path_buf(),
                source,
            },
        };

        let file = File::open(path).map_err(io_error)?;
        let mut buffered = BufReader::with_capacity(FILE_BUFFER_BYTES, file);
        let is_gzip = buffered
            .fill_buf()
            .map_err(io_error)?
            .starts_with(&GZIP_MAGIC);

        let text = if is_gzip {
            let counted = ConsumedBytes {
                inner: buffered,
                consumed: 0,
            };
            let decoder = MultiGzDecoder::new(counted);
            match threads.take() {
                Some(permit) => Text::ThreadedGzip(Box::new(
                    ThreadedGzip::start(decoder, permit).map_err(io_error)?,
                )),
                None => Text::Gzip(Box::new(BufReader::with_capacity(CHUNK_BYTES, decoder))),
            }
        } else {
            Text::Plain(buffered)
        };

        Ok(LineReader {
            path: path.to_path_buf(),
            text,
            line: Vec::new(),
            lineno: 0,
            finished: false,
        })
    }

    /// Reads the next physical line into [`LineReader::line`] and returns false at the end of the
    /// file. The line excludes its LF and a CR just before it.
    pub fn advance(&mut self) -> Result<bool> {
        if self.finished {
            return Ok(false);
        }
        self.line.clear();
        let read = match &mut self.text {
            Text::Plain(reader) => read_line(reader, &mut self.line),
            Text::Gzip(reader) => read_line(reader, &mut self.line),
            Text::ThreadedGzip(reader) => read_line(reader, &mut self.line),
        };

        match read {
            Ok(0) => {
                self.finished = true;
                Ok(false)
            }
            Ok(_) => {
                if self.line.last() == Some(&b'\n') {
                    self.line.pop();
                }
                if self.line.last() == Some(&b'\r') {
                    self.line.pop();
                }
                self.lineno += 1;
                Ok(true)
            }
            Err(source) => {
                // The bytes of the partial line at the damage are discarded with the line buffer.
                self.finished = true;
                self.line.clear();
                Err(self.read_error(source))
            }
        }
    }

    /// The current line, without its line ending.
    pub fn line(&self) -> &[u8] {
        &self.line
    }

    /// Physical 1-based number of the current line; 0 before the first line.
    pub fn lineno(&self) -> u64 {
        self.lineno
    }

    /// Path of the file being read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read_error(&self, source: io::Error) -> Error {
        // flate2 reports a truncated stream as UnexpectedEof and a corrupt stream, header or
        // checksum as InvalidInput or InvalidData.
        let decoding_failure = matches!(
            source.kind(),
            io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData
        );
        let offset = match &self.text {
            Text::Gzip(reader) => Some(reader.get_ref().get_ref().consumed),
            Text::ThreadedGzip(reader) => Some(reader.failure_offset.unwrap_or(0)),
            Text::Plain(_) => None,
        };
        match offset {
            Some(offset) if decoding_failure => Error::CorruptInput {
                path: self.path.clone(),
                offset,
                lineno: self.lineno,
                cause: source.to_string(),
            },
            _ => Error::Io {
                path: self.path.clone(),
                source,
            },
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::test_files::{gzip, gzip_members, TempFile};

    fn read_lines_with(path: &Path, threads: usize) -> Result<Vec<(u64, Vec<u8>)>> {
        let mut reader = LineReader::open_with(path, &DecompressionThreads::new(threads))?;
        let mut lines = Vec::new();
        while reader.advance()? {
            lines.push((reader.lineno(), reader.line().to_vec()));
        }
        Ok(lines)
    }

    /// Reads the lines with inline decompression, checking that a decompression thread reads
    /// the same lines or fails with the same error.
    fn read_all_lines(path: &Path) -> Result<Vec<(u64, Vec<u8>)>> {
        let inline = read_lines_with(path, 0);
        let threaded = read_lines_with(path, 1);
        assert_eq!(format!("{inline:?}"), format!("{threaded:?}"));
        inline
    }

    const TEXT: &[u8] = b"first\r\n\nthird line\nlast without newline";

    fn expected_lines() -> Vec<(u64, Vec<u8>)> {
        vec![
            (1, b"first".to_vec()),
            (2, b"".to_vec()),
            (3, b"third line".to_vec()),
            (4, b"last without newline".to_vec()),
        ]
    }

    #[test]
    fn plain_lines_numbered_physically() {
        let file = TempFile::new("plain", TEXT);
        assert_eq!(read_all_lines(file.path()).unwrap(), expected_lines());
    }

    #[test]
    fn gzip_detected_by_magic_bytes() {
        // The name ends in .txt, but the content is gzip.
        let file = TempFile::new("compressed.txt", &gzip(TEXT));
        assert_eq!(read_all_lines(file.path()).unwrap(), expected_lines());
    }

    #[test]
    fn multi_member_gzip_reads_every_member() {
        // The members split the text inside a line, as `cat a.gz b.gz` can.
        let file = TempFile::new("members.gz", &gzip_members(TEXT, &[3, 12, 20]));
        assert_eq!(read_all_lines(file.path()).unwrap(), expected_lines());
    }

    #[test]
    fn long_line_read_whole() {
        let mut text = vec![b'x'; 3 * 1024 * 1024];
        text.extend_from_slice(b"\nshort");
        let file = TempFile::new("long.gz", &gzip(&text));
        let lines = read_all_lines(file.path()).unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].1.len(), 3 * 1024 * 1024);
        assert_eq!(lines[1].1, b"short");
    }

    #[test]
    fn empty_file_has_no_lines() {
        let file = TempFile::new("empty", b"");
        assert!(read_all_lines(file.path()).unwrap().is_empty());
    }

    #[test]
    fn truncated_gzip_reports_offset_and_line() {
        let text: Vec<u8> = (0..2000)
            .flat_map(|i| format!("line {i}\n").into_bytes())
            .collect();
        let compressed = gzip(&text);
        let cut = compressed.len() / 2;
        let file = TempFile::new("truncated.gz", &compressed[..cut]);
        for threads in [0, 1] {
            check_truncated_read(file.path(), threads, cut as u64);
        }
    }

    fn check_truncated_read(path: &Path, threads: usize, cut: u64) {
        let mut reader = LineReader::open_with(path, &DecompressionThreads::new(threads)).unwrap();
        let mut lines = Vec::new();
        let error = loop {
            match reader.advance() {
                Ok(true) => lines.push(reader.line().to_vec()),
                Ok(false) => panic!("a truncated file must not end cleanly"),
                Err(error) => break error,
            }
        };

        // Every line returned is complete and in order.
        assert!(!lines.is_empty());
        for (i, line) in lines.iter().enumerate() {
            assert_eq!(line, format!("line {i}").as_bytes());
        }
        match error {
            Error::CorruptInput {
                path: reported,
                offset,
                lineno,
                ..
            } => {
                assert_eq!(reported, path);
                assert_eq!(offset, cut);
                assert_eq!(lineno, lines.len() as u64);
            }
            other => panic!("expected CorruptInput, got {other:?}"),
        }
        // The reader stays finished after the error.
        assert!(!reader.advance().unwrap());
    }

    #[test]
    fn corrupt_checksum_is_corrupt_input() {
        let mut compressed = gzip(b"one\ntwo\n");
        let crc_start = compressed.len() - 8;
        compressed[crc_start] ^= 0xff;
        let file = TempFile::new("badcrc.gz", &compressed);
        let error = read_all_lines(file.path()).unwrap_err();
        assert!(matches!(error, Error::CorruptInput { .. }), "{error:?}");
    }

    #[test]
    fn missing_file_is_not_found() {
        let path = Path::new("/nonexistent/clickjax/part-00000.gz");
        match LineReader::open(path) {
            Err(Error::NotFound { path: reported }) => assert_eq!(reported, path),
            Err(other) => panic!("expected NotFound, got {other:?}"),
            Ok(_) => panic!("expected NotFound, got a reader"),
        }
    }
}
