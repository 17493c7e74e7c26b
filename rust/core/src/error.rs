//! Errors of the click-log readers, kept as data so that callers can react to the file, line and
//! field of a malformed session instead of parsing a message.

use std::borrow::Cow;
use std::fmt;
use std::io;
use std::path::PathBuf;

/// Maximum number of characters of offending input kept in a [`ParseError`].
pub const MAX_TEXT_CHARS: usize = 80;

/// Hint appended to every parse error message.
const SKIP_HINT: &str = "Use on_error=\"skip\" to drop malformed sessions and count them";

/// Every failure of the data layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A malformed line or field in a click log.
    #[error(transparent)]
    Parse(Box<ParseError>),

    /// A gzip file that ends early or fails its integrity checks.
    #[error(
        "corrupt or truncated gzip input {path}: decompression failed after {offset} compressed \
         bytes, after line {lineno} ({cause}). The sessions completed before the damage were \
         returned; use on_error=\"skip\" to count the file and continue with the next one",
        path = path.display()
    )]
    CorruptInput {
        path: PathBuf,
        /// Compressed bytes that the gzip decoder had consumed when it failed.
        offset: u64,
        /// Last complete physical line read before the failure (0 if none).
        lineno: u64,
        cause: String,
    },

    /// An input path that does not exist.
    #[error("file not found: {path}", path = path.display())]
    NotFound { path: PathBuf },

    /// Any other I/O failure while opening or reading an input.
    #[error("failed to read {path}: {source}", path = path.display())]
    Io { path: PathBuf, source: io::Error },

    /// A reader option outside its allowed range or set.
    #[error("invalid {name} {value}: expected {allowed}")]
    InvalidOption {
        name: &'static str,
        value: String,
        allowed: String,
    },

    /// A vocabulary table that already contains the maximum number of int32 ids.
    #[error(
        "the {table} vocabulary is full at {limit} entries, the maximum for int32 ids; freeze the \
         vocabulary or train on query_doc_hash instead"
    )]
    VocabularyFull { table: &'static str, limit: usize },

    /// An Arrow array that could not be assembled; a bug in the batch builder, not in the input.
    #[error("internal error while building an Arrow batch: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
}

/// Result type of the data layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Fields that a parse error can name. Each also names a `skipped_<field>` counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    /// A whole line: wrong field count, or a document line before any query line (Baidu).
    Line,
    /// Baidu field 0, the rank as logged.
    Pos,
    /// Baidu field 1, the URL MD5 that identifies a document.
    UrlMd5,
    /// Baidu field 5, the click flag.
    Click,
    /// WSCD query key before the TAB.
    QueryKey,
    /// WSCD url list before the `:`.
    Urls,
    /// WSCD click list after the `:`.
    Clicks,
}

impl Field {
    /// Every field, in the order of the `skipped_<field>` counters.
    pub const ALL: [Field; 7] = [
        Field::Line,
        Field::Pos,
        Field::UrlMd5,
        Field::Click,
        Field::QueryKey,
        Field::Urls,
        Field::Clicks,
    ];

    /// Name of the field as it appears in error messages and in `ParseError.field`.
    pub fn name(self) -> &'static str {
        match self {
            Field::Line => "line",
            Field::Pos => "pos",
            Field::UrlMd5 => "url_md5",
            Field::Click => "click",
            Field::QueryKey => "query_key",
            Field::Urls => "urls",
            Field::Clicks => "clicks",
        }
    }

    /// Name of the counter of sessions skipped because of this field.
    pub fn skipped_counter(self) -> &'static str {
        match self {
            Field::Line => "skipped_line",
            Field::Pos => "skipped_pos",
            Field::UrlMd5 => "skipped_url_md5",
            Field::Click => "skipped_click",
            Field::QueryKey => "skipped_query_key",
            Field::Urls => "skipped_urls",
            Field::Clicks => "skipped_clicks",
        }
    }

    /// Position of the field in [`Field::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Field {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

/// A malformed field found by a line parser, before the file and line number are known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: Field,
    /// The offending text, truncated to [`MAX_TEXT_CHARS`].
    pub text: String,
    /// Description of the valid content, as a phrase ("0, 1, 0.0 or 1.0").
    pub expected: Cow<'static, str>,
}

impl FieldError {
    /// Creates a field error from the raw bytes of the offending text.
    pub fn new(field: Field, text: &[u8], expected: impl Into<Cow<'static, str>>) -> Self {
        FieldError {
            field,
            text: excerpt(text),
            expected: expected.into(),
        }
    }

    /// Attaches the file and the physical line number.
    pub fn at(self, path: PathBuf, lineno: u64) -> Error {
        Error::Parse(Box::new(ParseError {
            path,
            lineno,
            field: self.field,
            text: self.text,
            expected: self.expected.into_owned(),
        }))
    }
}

/// A malformed session under `on_error="strict"`: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid {field} in {path} at line {lineno}: {text:?}; expected {expected}. {SKIP_HINT}",
    path = path.display()
)]
pub struct ParseError {
    pub path: PathBuf,
    /// Physical 1-based line in the decompressed text, blank lines included.
    pub lineno: u64,
    pub field: Field,
    /// The offending text, truncated to [`MAX_TEXT_CHARS`] characters plus "...".
    pub text: String,
    pub expected: String,
}

/// Decodes at most [`MAX_TEXT_CHARS`] characters of `bytes` for an error message, replacing
/// invalid UTF-8 and marking a cut with "...".
pub fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut chars = text.chars();
    let mut kept: String = chars.by_ref().take(MAX_TEXT_CHARS).collect();
    if chars.next().is_some() {
        kept.push_str("...");
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_cuts_long_text() {
        let long = vec![b'7'; 200];
        let text = excerpt(&long);
        assert_eq!(text.len(), MAX_TEXT_CHARS + 3);
        assert!(text.ends_with("..."));
        assert_eq!(excerpt(b"12"), "12");
    }

    #[test]
    fn parse_error_message_names_everything() {
        let error = FieldError::new(Field::Click, b"2", "0, 1, 0.0 or 1.0")
            .at(PathBuf::from("/logs/part-00000.gz"), 7);
        let message = error.to_string();
        for part in [
            "click",
            "/logs/part-00000.gz",
            "line 7",
            "\"2\"",
            "0, 1, 0.0 or 1.0",
        ] {
            assert!(message.contains(part), "{part} missing from {message}");
        }
        assert!(message.contains("on_error=\"skip\""));
    }

    #[test]
    fn field_indices_follow_all() {
        for (index, field) in Field::ALL.iter().enumerate() {
            assert_eq!(field.index(), index);
            assert_eq!(field.skipped_counter(), format!("skipped_{}", field.name()));
        }
    }
}
