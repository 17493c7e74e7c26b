//! Sessions from Baidu-ULTR raw training files (`part-NNNNN.gz` or the same file decompressed).
//!
//! The file is a stream of TAB-separated lines. A query line has 3 fields (qid, query tokens,
//! reformulation tokens) and starts a session. Each document line that follows has 32 fields and
//! is one result of that session. Token lists are decimal ids joined by the byte 0x01. A session
//! ends at the next query line or at the end of the file.
//!
//! The query is keyed by its token field as it appears in the file, never by the qid, because
//! qids repeat. A document is keyed by its URL MD5 text. The position of a result counts the
//! session's document lines: a result whose title is the single token `21429` (missing content)
//! is dropped but still takes a position, and a "people also searched for" pseudo-result is
//! dropped without taking one.

use memchr::memchr_iter;

use crate::error::{Error, Field, FieldError, Result};
use crate::input::LineReader;
use crate::reader::ErrorPolicy;
use crate::session::{Session, SessionResult, SessionSource};
use crate::stats::Stats;
use crate::vocabulary::{document_fingerprint, query_fingerprint};

/// Fields of a query line.
const QUERY_FIELDS: usize = 3;

/// Fields of a document line.
const DOCUMENT_FIELDS: usize = 32;

/// A malformed line with at most this many fields is taken for a broken query line, and one with
/// more for a broken document line. The official Baidu-ULTR loader draws the same line: 3 fields
/// make a query line and more than 6 a document line.
const MAX_BROKEN_QUERY_FIELDS: usize = 6;

/// Largest raw `pos` accepted. The dataset documents 1 to 30; larger values are kept as a margin.
const MAX_POS: u32 = 1000;

/// Title of a result whose content is missing.
const MISSING_TITLE: &[u8] = b"21429";

/// Title of the "people also searched for" pseudo-result.
const PSEUDO_TITLE: &[u8] = b"3742\x0111492\x0112169\x015061\x0116905";

/// Indices of the document-line fields read so far. The behaviour columns will add theirs here.
mod column {
    pub const POS: usize = 0;
    pub const URL_MD5: usize = 1;
    pub const TITLE: usize = 2;
    pub const CLICK: usize = 5;
}

/// Role of a document line in its session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ResultKind {
    /// A real result: it takes a position and becomes a slot.
    Shown { document_key: u64 },
    /// Missing content: it takes a position but is dropped.
    Missing,
    /// A pseudo-result: dropped without taking a position.
    Pseudo,
}

/// The fields of one document line that the reader uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct DocumentLine {
    kind: ResultKind,
    click: bool,
}

/// One physical line, classified. It keeps no borrow of the line, so the parser can update
/// its state while matching on it.
enum ParsedLine {
    Blank,
    Query { query_key: u64 },
    Document(Result<DocumentLine, FieldError>),
    WrongFieldCount(usize),
}

/// Splits a line on TAB into `fields` and returns the number of fields, which can exceed the
/// length of `fields`.
fn split_fields<'a>(line: &'a [u8], fields: &mut [&'a [u8]; DOCUMENT_FIELDS]) -> usize {
    let mut count = 0;
    let mut start = 0;
    for end in memchr_iter(b'\t', line).chain(std::iter::once(line.len())) {
        if let Some(slot) = fields.get_mut(count) {
            *slot = line.get(start..end).unwrap_or_default();
        }
        start = end + 1;
        count += 1;
    }
    count
}

fn parse_line(line: &[u8]) -> ParsedLine {
    if line.is_empty() {
        return ParsedLine::Blank;
    }
    let mut fields: [&[u8]; DOCUMENT_FIELDS] = [&[]; DOCUMENT_FIELDS];
    match split_fields(line, &mut fields) {
        QUERY_FIELDS => ParsedLine::Query {
            query_key: query_fingerprint(fields[1]),
        },
        DOCUMENT_FIELDS => ParsedLine::Document(parse_document_line(&fields)),
        count => ParsedLine::WrongFieldCount(count),
    }
}

/// Parses the fields of a document line. `pos` and `click` are checked on every line, the URL MD5
/// only on shown results, since missing and pseudo-results are dropped.
fn parse_document_line(fields: &[&[u8]; DOCUMENT_FIELDS]) -> Result<DocumentLine, FieldError> {
    let pos = fields[column::POS];
    if !parse_integer(pos).is_some_and(|pos| (1..=MAX_POS).contains(&pos)) {
        return Err(FieldError::new(
            Field::Pos,
            pos,
            format!("an integer from 1 to {MAX_POS}"),
        ));
    }

    let click = match fields[column::CLICK] {
        b"0" | b"0.0" => false,
        b"1" | b"1.0" => true,
        other => return Err(FieldError::new(Field::Click, other, "0, 1, 0.0 or 1.0")),
    };

    let kind = match fields[column::TITLE] {
        MISSING_TITLE => ResultKind::Missing,
        PSEUDO_TITLE => ResultKind::Pseudo,
        _ => {
            let url_md5 = fields[column::URL_MD5];
            if url_md5.is_empty() || url_md5 == b"-" {
                return Err(FieldError::new(
                    Field::UrlMd5,
                    url_md5,
                    "the URL MD5 of the result, not empty and not \"-\"",
                ));
            }
            ResultKind::Shown {
                document_key: document_fingerprint(url_md5),
            }
        }
    };
    Ok(DocumentLine { kind, click })
}

/// Parses unsigned decimal digits; None if empty, not all digits, or above u32::MAX.
fn parse_integer(text: &[u8]) -> Option<u32> {
    if text.is_empty() {
        return None;
    }
    text.iter().try_fold(0u32, |value, &byte| {
        let digit = char::from(byte).to_digit(10)?;
        value.checked_mul(10)?.checked_add(digit)
    })
}

/// Parser state within the current session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SessionState {
    /// No query line seen yet, or the last session was handed out at the end of the file.
    None,
    /// A well-formed session is being read.
    Open,
    /// The current session is malformed and will be skipped; the field names the first problem.
    Malformed(Field),
}

/// Reads Baidu-ULTR sessions from one file.
pub struct BaiduParser {
    lines: LineReader,
    policy: ErrorPolicy,
    building: Session,
    state: SessionState,
    /// Positions taken so far in the current session.
    rank: u32,
    /// An error found while a finished session was handed out, raised on the next call.
    pending_error: Option<Error>,
    logged_skip: bool,
}

impl BaiduParser {
    pub fn new(lines: LineReader, policy: ErrorPolicy) -> Self {
        BaiduParser {
            lines,
            policy,
            building: Session::default(),
            state: SessionState::None,
            rank: 0,
            pending_error: None,
            logged_skip: false,
        }
    }

    /// Hands the current session to `session` if it is well-formed and counts it if malformed.
    /// Returns whether a session was handed out.
    fn close_session(&mut self, session: &mut Session, stats: &mut Stats) -> bool {
        match std::mem::replace(&mut self.state, SessionState::None) {
            SessionState::None => false,
            SessionState::Malformed(field) => {
                stats.count_skipped(field);
                false
            }
            SessionState::Open => {
                std::mem::swap(session, &mut self.building);
                true
            }
        }
    }

    fn open_session(&mut self, query_key: u64) {
        self.building.clear();
        self.building.query_key = query_key;
        self.rank = 0;
        self.state = SessionState::Open;
    }

    /// Marks the current session malformed under `skip`, or returns the error under `strict`.
    fn reject(&mut self, error: FieldError) -> Result<()> {
        let path = self.lines.path();
        let lineno = self.lines.lineno();
        match self.policy {
            ErrorPolicy::Strict => Err(error.at(path.to_path_buf(), lineno)),
            ErrorPolicy::Skip => {
                if !matches!(self.state, SessionState::Malformed(_)) {
                    self.state = SessionState::Malformed(error.field);
                }
                // The first malformed session of a file is logged; the rest are counted.
                if self.logged_skip {
                    log::debug!(
                        "skipping a malformed session: {}",
                        error.at(path.to_path_buf(), lineno)
                    );
                } else {
                    log::warn!(
                        "skipping a malformed session: {}",
                        error.at(path.to_path_buf(), lineno)
                    );
                    self.logged_skip = true;
                }
                Ok(())
            }
        }
    }

    fn add_result(&mut self, document: DocumentLine) {
        self.building.has_logged_click |= document.click;
        match document.kind {
            ResultKind::Shown { document_key } => {
                self.rank = self.rank.saturating_add(1);
                self.building.results.push(SessionResult {
                    document_key,
                    position: self.rank,
                    click: document.click,
                });
            }
            ResultKind::Missing => {
                self.rank = self.rank.saturating_add(1);
                self.building.events.missing_results += 1;
            }
            ResultKind::Pseudo => self.building.events.pseudo_results += 1,
        }
    }

    fn wrong_field_count(&self, count: usize) -> FieldError {
        FieldError::new(
            Field::Line,
            self.lines.line(),
            format!("3 TAB-separated fields (a query line) or 32 (a document line), found {count}"),
        )
    }
}

impl SessionSource for BaiduParser {
    fn next_session(&mut self, session: &mut Session, stats: &mut Stats) -> Result<bool> {
        if let Some(error) = self.pending_error.take() {
            return Err(error);
        }
        loop {
            if !self.lines.advance()? {
                return Ok(self.close_session(session, stats));
            }
            stats.lines_read += 1;

            match parse_line(self.lines.line()) {
                ParsedLine::Blank => {}
                ParsedLine::Query { query_key } => {
                    let finished = self.close_session(session, stats);
                    self.open_session(query_key);
                    if finished {
                        return Ok(true);
                    }
                }
                ParsedLine::Document(document) => match (self.state, document) {
                    (SessionState::None, _) => {
                        let error = FieldError::new(
                            Field::Line,
                            self.lines.line(),
                            "a query line (3 fields) before the first document line",
                        );
                        // Under skip, the document lines up to the next query line form one
                        // malformed session.
                        self.state = SessionState::Open;
                        self.reject(error)?;
                    }
                    (SessionState::Malformed(_), _) => {}
                    (SessionState::Open, Ok(document)) => self.add_result(document),
                    (SessionState::Open, Err(error)) => self.reject(error)?,
                },
                ParsedLine::WrongFieldCount(count) if count <= MAX_BROKEN_QUERY_FIELDS => {
                    // A broken query line ends the session before it and starts a malformed one.
                    let error = self.wrong_field_count(count);
                    let finished = self.close_session(session, stats);
                    self.state = SessionState::Open;
                    match self.reject(error) {
                        Ok(()) if finished => return Ok(true),
                        Ok(()) => {}
                        Err(error) if finished => {
                            self.pending_error = Some(error);
                            return Ok(true);
                        }
                        Err(error) => return Err(error),
                    }
                }
                ParsedLine::WrongFieldCount(count) => {
                    // A broken document line spoils the session it belongs to.
                    let error = self.wrong_field_count(count);
                    if self.state == SessionState::None {
                        self.state = SessionState::Open;
                    }
                    self.reject(error)?;
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "baidu_tests.rs"]
pub(crate) mod tests;
