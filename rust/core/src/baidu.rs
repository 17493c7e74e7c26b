//! Sessions from Baidu-ULTR raw training files (`part-NNNNN.gz` or the same file decompressed).
//!
//! The file is a stream of TAB-separated lines. A query line has 3 fields (qid, query tokens,
//! reformulation tokens) and starts a session. Each document line that follows has 32 fields and
//! is one result of that session. Token lists are decimal ids joined by the byte 0x01. A session
//! ends at the next query line or at the end of the file.
//!
//! The query is keyed by its token field as it appears in the file, never by the qid, because
//! qids repeat. A document is keyed by its URL MD5 text, or with `document_key="text"` by its
//! title and abstract token fields (see [`text_document_fingerprint`]). The position of a result
//! counts the session's document lines: a result whose title is the single token `21429` (missing
//! content) is dropped but still takes a position, and a "people also searched for" pseudo-result
//! is dropped without taking one. The behaviour columns selected in the options are parsed from
//! shown results only, and an invalid value is a parse error of that column.

use crate::behaviour::{parse_float_value, parse_int_value, BehaviourColumn, ValueKind};
use crate::error::{defer_error_after_session, Error, Field, FieldError, Rejector, Result};
use crate::fields::{is_ascii_id, is_token_list, parse_u32, split_fields};
use crate::input::LineReader;
use crate::options::{DocumentKey, ParserConfig};
use crate::session::{Session, SessionResult, SessionSource};
use crate::stats::Stats;
use crate::vocabulary::{document_fingerprint, query_fingerprint, text_document_fingerprint};

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
pub(crate) const MISSING_TITLE: &[u8] = b"21429";

/// Title of the "people also searched for" pseudo-result.
pub(crate) const PSEUDO_TITLE: &[u8] = b"3742\x0111492\x0112169\x015061\x0116905";

/// Indices of the document-line fields with a fixed role. Behaviour columns carry their own.
mod column {
    pub const POS: usize = 0;
    pub const URL_MD5: usize = 1;
    pub const TITLE: usize = 2;
    pub const ABSTRACT: usize = 3;
    pub const CLICK: usize = 5;
}

/// Role of a result in its session, decided by its title.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ResultKind {
    /// A real result: it takes a position and becomes a slot.
    Shown,
    /// Missing content: it takes a position but is dropped.
    Missing,
    /// A pseudo-result: dropped without taking a position.
    Pseudo,
}

impl ResultKind {
    pub(crate) fn of_title(title: &[u8]) -> Self {
        match title {
            MISSING_TITLE => ResultKind::Missing,
            PSEUDO_TITLE => ResultKind::Pseudo,
            _ => ResultKind::Shown,
        }
    }
}

/// Checks a token-list field such as the query, title or abstract.
pub(crate) fn check_token_list(field: Field, text: &[u8]) -> Result<(), FieldError> {
    if is_token_list(text) {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            text,
            "decimal token ids joined by the byte 0x01, in printable ASCII",
        ))
    }
}

/// The fields of one document line that the reader uses. The values of the behaviour columns
/// of a shown result are in the parser's scratch vectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct DocumentLine {
    kind: ResultKind,
    document_key: u64,
    click: bool,
}

/// One physical line, classified. It keeps no borrow of the line, so the parser can update
/// its state while matching on it.
enum ParsedLine {
    Blank,
    Query(Result<u64, FieldError>),
    Document(Result<DocumentLine, FieldError>),
    WrongFieldCount(usize),
}

/// Behaviour values of one document line, in the order of the requested columns, and the key
/// text of the line when the config asks for keys.
#[derive(Default)]
struct Values {
    floats: Vec<f32>,
    ints: Vec<i32>,
    /// Query token field of a query line; URL MD5, or title, TAB and abstract, of a result.
    key: Vec<u8>,
}

impl Values {
    fn set_key(&mut self, parts: &[&[u8]]) {
        self.key.clear();
        for (index, part) in parts.iter().enumerate() {
            if index > 0 {
                self.key.push(b'\t');
            }
            self.key.extend_from_slice(part);
        }
    }
}

/// Fields of a document line that the parser reads with `config`: those up to `click` and to
/// the last behaviour column requested. Splitting a line stores no field after them.
fn fields_read(config: &ParserConfig) -> usize {
    let behaviour = config.behaviour.iter().map(|column| column.index + 1);
    behaviour.fold(column::CLICK + 1, usize::max)
}

/// Classifies a line and parses its fields, storing the first `stored` fields of a split.
fn parse_line(
    line: &[u8],
    config: &ParserConfig,
    stored: usize,
    values: &mut Values,
) -> ParsedLine {
    if line.is_empty() {
        return ParsedLine::Blank;
    }
    let mut fields: [&[u8]; DOCUMENT_FIELDS] = [&[]; DOCUMENT_FIELDS];
    match split_fields(line, &mut fields[..stored]) {
        QUERY_FIELDS => {
            if config.keys {
                values.set_key(&[fields[1]]);
            }
            ParsedLine::Query(
                check_token_list(Field::Query, fields[1]).map(|()| query_fingerprint(fields[1])),
            )
        }
        DOCUMENT_FIELDS => ParsedLine::Document(parse_document_line(&fields, config, values)),
        count => ParsedLine::WrongFieldCount(count),
    }
}

/// Parses the fields of a document line. `pos` and `click` are checked on every line; the
/// document key and the behaviour columns only on shown results, since missing and
/// pseudo-results are dropped.
fn parse_document_line(
    fields: &[&[u8]; DOCUMENT_FIELDS],
    config: &ParserConfig,
    values: &mut Values,
) -> Result<DocumentLine, FieldError> {
    let pos = fields[column::POS];
    if !parse_u32(pos).is_some_and(|pos| (1..=MAX_POS).contains(&pos)) {
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

    let kind = ResultKind::of_title(fields[column::TITLE]);
    if kind != ResultKind::Shown {
        return Ok(DocumentLine {
            kind,
            document_key: 0,
            click,
        });
    }
    let document_key = match config.document_key {
        DocumentKey::Url => {
            let url_md5 = fields[column::URL_MD5];
            if !is_ascii_id(url_md5) || url_md5 == b"-" {
                return Err(FieldError::new(
                    Field::UrlMd5,
                    url_md5,
                    "the URL MD5 of the result in printable ASCII, not empty and not \"-\"",
                ));
            }
            if config.keys {
                values.set_key(&[url_md5]);
            }
            document_fingerprint(url_md5)
        }
        DocumentKey::Text => {
            let (title, abstract_tokens) = (fields[column::TITLE], fields[column::ABSTRACT]);
            check_token_list(Field::Title, title)?;
            check_token_list(Field::Abstract, abstract_tokens)?;
            if config.keys {
                values.set_key(&[title, abstract_tokens]);
            }
            text_document_fingerprint(title, abstract_tokens)
        }
    };

    values.floats.clear();
    values.ints.clear();
    for behaviour in config.behaviour.iter() {
        parse_behaviour(behaviour, fields[behaviour.index], values)?;
    }
    Ok(DocumentLine {
        kind,
        document_key,
        click,
    })
}

fn parse_behaviour(
    column: &BehaviourColumn,
    text: &[u8],
    values: &mut Values,
) -> Result<(), FieldError> {
    match column.kind {
        ValueKind::Float32 => match parse_float_value(text) {
            Some(value) => values.floats.push(value),
            None => {
                return Err(FieldError::new(
                    column.field,
                    text,
                    "a decimal number or \"-\" for a missing value",
                ))
            }
        },
        ValueKind::Int32 => match parse_int_value(text) {
            Some(value) => values.ints.push(value),
            None => {
                return Err(FieldError::new(
                    column.field,
                    text,
                    "a non-negative integer or \"-\" for a missing value",
                ))
            }
        },
    }
    Ok(())
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
    rejector: Rejector,
    config: ParserConfig,
    /// Fields stored when a line is split: [`fields_read`] of `config`.
    stored_fields: usize,
    building: Session,
    state: SessionState,
    /// Positions taken so far in the current session.
    rank: u32,
    values: Values,
    /// An error found while a finished session was handed out, raised on the next call.
    pending_error: Option<Error>,
}

impl BaiduParser {
    pub fn new(lines: LineReader, rejector: Rejector, config: &ParserConfig) -> Self {
        BaiduParser {
            lines,
            rejector,
            config: config.clone(),
            stored_fields: fields_read(config),
            building: Session::default(),
            state: SessionState::None,
            rank: 0,
            values: Values::default(),
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

    fn open_session(&mut self, query_key: u64) {
        self.building.clear();
        self.building.query_key = query_key;
        self.rank = 0;
        self.state = SessionState::Open;
    }

    /// Marks the current session malformed under `skip`, or returns the error under `strict`.
    fn reject(&mut self, error: FieldError) -> Result<()> {
        if !matches!(self.state, SessionState::Malformed(_)) {
            self.state = SessionState::Malformed(error.field);
        }
        self.rejector
            .reject(error, self.lines.path(), self.lines.lineno())
    }

    /// Closes the current session and starts a malformed one at a broken query line. Returns
    /// true if the closed session was handed out; a strict error then waits for the next call.
    fn start_malformed_session(
        &mut self,
        error: FieldError,
        session: &mut Session,
        stats: &mut Stats,
    ) -> Result<bool> {
        let finished = self.close_session(session, stats);
        self.open_session(0);
        let rejected = self.reject(error);
        defer_error_after_session(rejected, finished, &mut self.pending_error)
    }

    fn add_result(&mut self, document: DocumentLine) {
        self.building.has_logged_click |= document.click;
        match document.kind {
            ResultKind::Shown => {
                self.rank = self.rank.saturating_add(1);
                self.building.results.push(SessionResult {
                    document_key: document.document_key,
                    position: self.rank,
                    click: document.click,
                });
                if self.config.keys {
                    self.building.keys.push_document(&[&self.values.key]);
                }
                self.building.floats.extend_from_slice(&self.values.floats);
                self.building.ints.extend_from_slice(&self.values.ints);
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

            let line = self.lines.line();
            match parse_line(line, &self.config, self.stored_fields, &mut self.values) {
                ParsedLine::Blank => {}
                ParsedLine::Query(Ok(query_key)) => {
                    let finished = self.close_session(session, stats);
                    self.open_session(query_key);
                    if self.config.keys {
                        self.building.keys.set_query(&self.values.key);
                    }
                    if finished {
                        return Ok(true);
                    }
                }
                ParsedLine::Query(Err(error)) => {
                    // A query line with an invalid query starts a malformed session.
                    if self.start_malformed_session(error, session, stats)? {
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
                    if self.start_malformed_session(error, session, stats)? {
                        return Ok(true);
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
