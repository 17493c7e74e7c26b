//! Sessions from the Yandex Relevance Prediction Challenge click log.
//!
//! Each line is one TAB-separated record, every id a decimal number:
//!
//! ```text
//! SessionID  TimePassed  Q  QueryID  RegionID  URLID_1 ... URLID_n    (a query and its results)
//! SessionID  TimePassed  C  URLID                                     (a click)
//! ```
//!
//! A Q line starts a search session whose results are its URLs at positions 1 to n; n can be
//! below 10. A click has no query reference and belongs to the latest Q line of its SessionID, so
//! a session ends at the next Q line or at a line of another SessionID. The lines of one SessionID
//! must be consecutive, as in the challenge files. A click whose SessionID has no open session
//! (a click before any query) is dropped and counted in `clicks_before_query`. A repeated click on
//! a result counts once, and a click on a URL that the session's Q line does not list is ignored.
//! When a URL is listed twice, its click goes to the first occurrence.
//!
//! The query is keyed by `QUERYID_REGIONID` (the default `query_key="query_region"`, the same
//! text as WSCD query keys) or by `QUERYID` alone, and a document by its URL id, each written as
//! the decimal value of the id.

use std::io::Write;

use crate::error::{defer_error_after_session, Error, Field, FieldError, Rejector, Result};
use crate::fields::parse_u64;
use crate::input::LineReader;
use crate::options::{ParserConfig, QueryKey};
use crate::session::{KeyTexts, Session, SessionResult, SessionSource};
use crate::stats::Stats;
use crate::vocabulary::{document_fingerprint, query_fingerprint};

/// Kind of a line, as far as it could be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LineKind {
    Query,
    Click,
    /// The session id, the time or the record type is invalid.
    Unknown,
}

/// The content of a well-formed line. The URLs of a query are in the parser's `urls`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Record {
    Query { query_key: u64 },
    Click { document_key: u64 },
}

/// One classified line; it keeps no borrow of the line.
struct ParsedLine {
    /// None when the session id is invalid.
    session_id: Option<u64>,
    kind: LineKind,
    record: Result<Record, FieldError>,
}

/// Parses a decimal id field and appends its canonical decimal text to `key`.
fn parse_id(
    field: Field,
    text: Option<&[u8]>,
    line: &[u8],
    key: &mut Vec<u8>,
) -> Result<u64, FieldError> {
    let Some(text) = text else {
        return Err(FieldError::new(
            Field::Line,
            line,
            "SessionID, TimePassed, Q, QueryID, RegionID and at least one URL id (a query), or SessionID, TimePassed, C and a URL id (a click)",
        ));
    };
    let value = parse_u64(text)
        .ok_or_else(|| FieldError::new(field, text, "a non-negative decimal integer"))?;
    // `io::Write` for `Vec<u8>` never returns an error.
    let _ = write!(key, "{value}");
    Ok(value)
}

/// Parses the fields after the record type of a Q line into `urls`, and into `texts` when
/// given, and returns the query key.
fn parse_query<'a>(
    mut fields: impl Iterator<Item = &'a [u8]>,
    line: &[u8],
    query_key: QueryKey,
    key: &mut Vec<u8>,
    urls: &mut Vec<u64>,
    mut texts: Option<&mut KeyTexts>,
) -> Result<Record, FieldError> {
    key.clear();
    parse_id(Field::QueryId, fields.next(), line, key)?;
    let query_end = key.len();
    key.push(b'_');
    parse_id(Field::RegionId, fields.next(), line, key)?;
    if query_key == QueryKey::Query {
        key.truncate(query_end);
    }
    let query_key = query_fingerprint(key);
    if let Some(texts) = texts.as_deref_mut() {
        texts.clear();
        texts.set_query(key);
    }

    urls.clear();
    for url in fields {
        key.clear();
        parse_id(Field::UrlId, Some(url), line, key)?;
        urls.push(document_fingerprint(key));
        if let Some(texts) = texts.as_deref_mut() {
            texts.push_document(&[key]);
        }
    }
    if urls.is_empty() {
        return Err(FieldError::new(
            Field::Line,
            line,
            "at least one URL id after the QueryID and RegionID of a Q line",
        ));
    }
    Ok(Record::Query { query_key })
}

/// Parses the fields after the record type of a C line.
fn parse_click<'a>(
    mut fields: impl Iterator<Item = &'a [u8]>,
    line: &[u8],
    key: &mut Vec<u8>,
) -> Result<Record, FieldError> {
    key.clear();
    parse_id(Field::UrlId, fields.next(), line, key)?;
    if fields.next().is_some() {
        return Err(FieldError::new(
            Field::Line,
            line,
            "4 TAB-separated fields in a C line: SessionID, TimePassed, C, URLID",
        ));
    }
    Ok(Record::Click {
        document_key: document_fingerprint(key),
    })
}

fn parse_line(
    line: &[u8],
    query_key: QueryKey,
    key: &mut Vec<u8>,
    urls: &mut Vec<u64>,
    texts: Option<&mut KeyTexts>,
) -> ParsedLine {
    let mut fields = line.split(|&byte| byte == b'\t');
    let unknown = |session_id, error| ParsedLine {
        session_id,
        kind: LineKind::Unknown,
        record: Err(error),
    };

    let session_text = fields.next().unwrap_or_default();
    let Some(session_id) = parse_u64(session_text) else {
        let error = FieldError::new(Field::SessionId, session_text, "a decimal session id");
        return unknown(None, error);
    };
    let time = parse_id(Field::TimePassed, fields.next(), line, key);
    if let Err(error) = time {
        return unknown(Some(session_id), error);
    }
    match fields.next() {
        Some(b"Q") => ParsedLine {
            session_id: Some(session_id),
            kind: LineKind::Query,
            record: parse_query(fields, line, query_key, key, urls, texts),
        },
        Some(b"C") => ParsedLine {
            session_id: Some(session_id),
            kind: LineKind::Click,
            record: parse_click(fields, line, key),
        },
        Some(other) => {
            let error = FieldError::new(Field::ActionType, other, "Q (a query) or C (a click)");
            unknown(Some(session_id), error)
        }
        None => {
            let error = FieldError::new(
                Field::Line,
                line,
                "SessionID, TimePassed, then Q or C and their fields",
            );
            unknown(Some(session_id), error)
        }
    }
}

/// Parser state within the current session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SessionState {
    None,
    Open,
    /// The current session has a malformed line and will be skipped.
    Malformed(Field),
}

/// Reads Yandex sessions from one file.
pub struct YandexParser {
    lines: LineReader,
    rejector: Rejector,
    query_key: QueryKey,
    building: Session,
    state: SessionState,
    /// Session id of the current session; None when its line had an invalid session id.
    session_id: Option<u64>,
    /// Key text being fingerprinted.
    key: Vec<u8>,
    /// Document fingerprints of the latest Q line.
    urls: Vec<u64>,
    /// Key texts of the latest Q line, filled when the config asks for keys.
    texts: KeyTexts,
    keys: bool,
    /// An error found while a finished session was handed out, raised on the next call.
    pending_error: Option<Error>,
}

impl YandexParser {
    pub fn new(lines: LineReader, rejector: Rejector, config: &ParserConfig) -> Self {
        YandexParser {
            lines,
            rejector,
            query_key: config.query_key,
            building: Session::default(),
            state: SessionState::None,
            session_id: None,
            key: Vec::new(),
            urls: Vec::new(),
            texts: KeyTexts::default(),
            keys: config.keys,
            pending_error: None,
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

    fn open_session(&mut self, session_id: Option<u64>, query_key: u64) {
        self.building.clear();
        self.building.query_key = query_key;
        if self.keys {
            // `clone_from` reuses the session's buffers.
            self.building.keys.clone_from(&self.texts);
        }
        for (index, &document_key) in self.urls.iter().enumerate() {
            self.building.results.push(SessionResult {
                document_key,
                position: u32::try_from(index + 1).unwrap_or(u32::MAX),
                click: false,
            });
        }
        self.session_id = session_id;
        self.state = SessionState::Open;
    }

    fn add_click(&mut self, document_key: u64) {
        let session = &mut self.building;
        session.has_logged_click = true;
        let shown = session
            .results
            .iter_mut()
            .find(|result| result.document_key == document_key);
        match shown {
            Some(result) if result.click => session.events.repeated_clicks += 1,
            Some(result) => result.click = true,
            None => session.events.clicks_not_shown += 1,
        }
    }

    /// Applies one non-blank line. Returns whether a finished session was handed out.
    fn read_line(&mut self, session: &mut Session, stats: &mut Stats) -> Result<bool> {
        let line = self.lines.line();
        let texts = self.keys.then_some(&mut self.texts);
        let parsed = parse_line(line, self.query_key, &mut self.key, &mut self.urls, texts);

        // A line of another session, or of an unknown one, ends the current session.
        let mut finished = false;
        if self.state != SessionState::None
            && (parsed.session_id.is_none() || parsed.session_id != self.session_id)
        {
            finished = self.close_session(session, stats);
        }

        let error = match (parsed.record, parsed.kind) {
            (Ok(Record::Query { query_key }), _) => {
                finished |= self.close_session(session, stats);
                self.open_session(parsed.session_id, query_key);
                return Ok(finished);
            }
            (Ok(Record::Click { document_key }), _) => {
                match self.state {
                    SessionState::None => stats.clicks_before_query += 1,
                    SessionState::Open => self.add_click(document_key),
                    SessionState::Malformed(_) => {}
                }
                return Ok(finished);
            }
            (Err(error), LineKind::Query) => {
                // A malformed query line starts a malformed session.
                finished |= self.close_session(session, stats);
                self.session_id = parsed.session_id;
                self.state = SessionState::Malformed(error.field);
                error
            }
            (Err(error), LineKind::Click | LineKind::Unknown) => {
                // Any other malformed line spoils the session of its id, or is one of its own.
                match self.state {
                    SessionState::None => {
                        self.session_id = parsed.session_id;
                        self.state = SessionState::Malformed(error.field);
                    }
                    SessionState::Open => self.state = SessionState::Malformed(error.field),
                    SessionState::Malformed(_) => {}
                }
                error
            }
        };
        let rejected = self
            .rejector
            .reject(error, self.lines.path(), self.lines.lineno());
        defer_error_after_session(rejected, finished, &mut self.pending_error)
    }
}

impl SessionSource for YandexParser {
    fn next_session(&mut self, session: &mut Session, stats: &mut Stats) -> Result<bool> {
        if let Some(error) = self.pending_error.take() {
            return Err(error);
        }
        loop {
            if !self.lines.advance()? {
                return Ok(self.close_session(session, stats));
            }
            stats.lines_read += 1;
            if self.lines.line().is_empty() {
                continue;
            }
            if self.read_line(session, stats)? {
                return Ok(true);
            }
        }
    }
}

#[cfg(test)]
#[path = "yandex_tests.rs"]
mod tests;
