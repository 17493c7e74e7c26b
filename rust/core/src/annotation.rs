//! Queries with expert relevance labels from the Baidu-ULTR annotation file
//! (`annotation_data_0522.txt`) and the WSDM Cup test files, which share its layout.
//!
//! Each line is one document with 6 TAB-separated fields: qid, query tokens, title tokens,
//! abstract tokens, label (0 to 4) and search-frequency bucket (0 to 9). The lines of a query are
//! consecutive, and a new query starts where the query token field changes. Qids are not unique,
//! so they are not used. Each query becomes one session whose results are its documents in file
//! order, with no click, an `ints` value per result holding the label, and the frequency bucket
//! as its one `session_ints` value.
//!
//! The file has no URL, so a document is keyed by its text (see
//! [`text_document_fingerprint`]), the key that Baidu click logs read with
//! `document_key="text"` share. The title rules of the click logs apply: a document titled
//! `21429` (missing content) is dropped but takes a position, and a "people also searched for"
//! pseudo-result is dropped without taking one.

use crate::baidu::{check_token_list, ResultKind};
use crate::error::{defer_error_after_session, Error, Field, FieldError, Rejector, Result};
use crate::fields::{parse_u32, split_fields};
use crate::input::LineReader;
use crate::session::{Session, SessionResult, SessionSource};
use crate::stats::Stats;
use crate::vocabulary::{query_fingerprint, text_document_fingerprint};

/// Fields of a line.
const FIELDS: usize = 6;

/// Largest expert label.
const MAX_LABEL: u32 = 4;

/// Largest search-frequency bucket.
const MAX_FREQUENCY_BUCKET: u32 = 9;

/// One document line, checked.
struct DocumentLine {
    kind: ResultKind,
    document_key: u64,
    label: i32,
    frequency_bucket: i32,
}

fn parse_document(fields: &[&[u8]; FIELDS]) -> Result<DocumentLine, FieldError> {
    let [_qid, query, title, abstract_tokens, label, bucket] = *fields;
    check_token_list(Field::Query, query)?;
    check_token_list(Field::Title, title)?;
    check_token_list(Field::Abstract, abstract_tokens)?;
    let label = match parse_u32(label) {
        Some(value) if value <= MAX_LABEL => value as i32,
        _ => {
            return Err(FieldError::new(
                Field::Label,
                label,
                format!("an integer from 0 to {MAX_LABEL}"),
            ))
        }
    };
    let frequency_bucket = match parse_u32(bucket) {
        Some(value) if value <= MAX_FREQUENCY_BUCKET => value as i32,
        _ => {
            return Err(FieldError::new(
                Field::FrequencyBucket,
                bucket,
                format!("an integer from 0 to {MAX_FREQUENCY_BUCKET}"),
            ))
        }
    };
    Ok(DocumentLine {
        kind: ResultKind::of_title(title),
        document_key: text_document_fingerprint(title, abstract_tokens),
        label,
        frequency_bucket,
    })
}

/// Parser state within the current query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GroupState {
    /// No line read yet, or the last query was handed out at the end of the file.
    None,
    Open,
    /// The current query has a malformed line and will be skipped.
    Malformed(Field),
}

/// Reads annotated queries from one file.
pub struct AnnotationParser {
    lines: LineReader,
    rejector: Rejector,
    building: Session,
    state: GroupState,
    /// Query token field of the current query; None for a query started by a line whose field
    /// count is wrong, which the next well-formed line always ends.
    query: Option<Vec<u8>>,
    /// Positions taken so far in the current query.
    rank: u32,
    /// Whether sessions carry their key texts.
    keys: bool,
    /// Key text of the current line's document: title, TAB, abstract.
    document_text: Vec<u8>,
    /// An error found while a finished query was handed out, raised on the next call.
    pending_error: Option<Error>,
}

impl AnnotationParser {
    pub fn new(lines: LineReader, rejector: Rejector) -> Self {
        AnnotationParser {
            lines,
            rejector,
            building: Session::default(),
            state: GroupState::None,
            query: None,
            rank: 0,
            keys: false,
            document_text: Vec::new(),
            pending_error: None,
        }
    }

    /// Makes the parser copy the query tokens and the title and abstract tokens (joined by a
    /// TAB) of each query into [`Session::keys`] when `keys` is true.
    pub fn with_keys(mut self, keys: bool) -> Self {
        self.keys = keys;
        self
    }

    /// Hands the current query to `session` if it is well-formed and counts it if malformed.
    /// Returns whether a session was handed out.
    fn close_group(&mut self, session: &mut Session, stats: &mut Stats) -> bool {
        match std::mem::replace(&mut self.state, GroupState::None) {
            GroupState::None => false,
            GroupState::Malformed(field) => {
                stats.count_skipped(field);
                false
            }
            GroupState::Open => {
                std::mem::swap(session, &mut self.building);
                true
            }
        }
    }

    fn open_group(&mut self, query: Option<&[u8]>) {
        self.building.clear();
        self.building.query_key = query.map_or(0, query_fingerprint);
        self.query = query.map(<[u8]>::to_vec);
        if let (true, Some(query)) = (self.keys, query) {
            self.building.keys.set_query(query);
        }
        self.rank = 0;
        self.state = GroupState::Open;
    }

    fn add_document(&mut self, document: DocumentLine) {
        // The bucket describes the query, so the first line of a query sets it.
        // NOTE: a later line with another bucket is accepted and its bucket ignored.
        if self.building.session_ints.is_empty() {
            self.building.session_ints.push(document.frequency_bucket);
        }
        match document.kind {
            ResultKind::Shown => {
                self.rank = self.rank.saturating_add(1);
                self.building.results.push(SessionResult {
                    document_key: document.document_key,
                    position: self.rank,
                    click: false,
                });
                self.building.ints.push(document.label);
            }
            ResultKind::Missing => {
                self.rank = self.rank.saturating_add(1);
                self.building.events.missing_results += 1;
            }
            ResultKind::Pseudo => self.building.events.pseudo_results += 1,
        }
    }

    /// Reads one non-blank line into the current query, starting a new query where the query
    /// field changes. Returns whether a finished query was handed out to `session`.
    fn read_line(&mut self, session: &mut Session, stats: &mut Stats) -> Result<bool> {
        let line = self.lines.line();
        let mut fields: [&[u8]; FIELDS] = [&[]; FIELDS];
        let count = split_fields(line, &mut fields);

        let (finished, outcome) = if count == FIELDS {
            if self.keys {
                self.document_text.clear();
                self.document_text.extend_from_slice(fields[2]);
                self.document_text.push(b'\t');
                self.document_text.extend_from_slice(fields[3]);
            }
            let query = fields[1];
            let same_query = self.state != GroupState::None && self.query.as_deref() == Some(query);
            let document = parse_document(&fields);
            let mut finished = false;
            if !same_query {
                let query = query.to_vec();
                finished = self.close_group(session, stats);
                self.open_group(Some(&query));
            }
            (finished, document)
        } else {
            // The query of a line with the wrong field count is unknown, so the line spoils the
            // current query, or starts a malformed one of its own.
            let error = FieldError::new(
                Field::Line,
                line,
                format!("{FIELDS} TAB-separated fields (qid, query, title, abstract, label, frequency bucket), found {count}"),
            );
            if self.state == GroupState::None {
                self.open_group(None);
            }
            (false, Err(error))
        };

        match outcome {
            Ok(document) => {
                if self.state == GroupState::Open {
                    if self.keys && document.kind == ResultKind::Shown {
                        self.building.keys.push_document(&[&self.document_text]);
                    }
                    self.add_document(document);
                }
                Ok(finished)
            }
            Err(error) => {
                if !matches!(self.state, GroupState::Malformed(_)) {
                    self.state = GroupState::Malformed(error.field);
                }
                let rejected = self
                    .rejector
                    .reject(error, self.lines.path(), self.lines.lineno());
                defer_error_after_session(rejected, finished, &mut self.pending_error)
            }
        }
    }
}

impl SessionSource for AnnotationParser {
    fn next_session(&mut self, session: &mut Session, stats: &mut Stats) -> Result<bool> {
        if let Some(error) = self.pending_error.take() {
            return Err(error);
        }
        loop {
            if !self.lines.advance()? {
                return Ok(self.close_group(session, stats));
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
#[path = "annotation_tests.rs"]
mod tests;
