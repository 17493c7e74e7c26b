//! Errors of the click-log readers, kept as data so that callers can react to the file, line and
//! field of a malformed session instead of parsing a message.

use std::borrow::Cow;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Maximum number of characters of offending input kept in a [`ParseError`].
pub const MAX_TEXT_CHARS: usize = 80;

/// Hint appended to every parse error message.
const SKIP_HINT: &str = "Use on_error=\"skip\" (--on-error skip on the command line) to drop \
     malformed sessions and count them";

/// Every failure of the data layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A malformed line or field in a click log.
    #[error(transparent)]
    Parse(Box<ParseError>),

    /// A gzip file that ends early or fails its integrity checks.
    #[error(
        "corrupt or truncated gzip input {path}: decompression failed after {offset} compressed \
         bytes, after line {lineno} ({cause}). Use --on-error skip (on_error=\"skip\" in Python) \
         to keep the sessions before the damage, count the file as corrupt and continue with the \
         next one",
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

    /// A reader thread that the operating system could not start.
    #[error("failed to start a reader thread: {0}; lower the threads option")]
    ThreadStart(io::Error),

    /// A reader option outside its allowed range or set.
    #[error("invalid {name} {value}: expected {allowed}")]
    InvalidOption {
        name: &'static str,
        value: String,
        allowed: String,
    },

    /// A column of an in-memory table with a type or values that cannot make sessions.
    #[error("invalid column {column}: {reason}")]
    InvalidColumn { column: String, reason: String },

    /// A saved vocabulary whose columns or values do not describe a valid vocabulary.
    #[error("invalid vocabulary: {reason}")]
    InvalidVocabulary { reason: String },

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

/// Declares [`Field`] with the name of each variant, so that the list of fields, their names and
/// their `skipped_<field>` counters cannot drift apart.
macro_rules! fields {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)+) => {
        /// Fields that a parse error can name. Each also names a `skipped_<field>` counter.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Field {
            $($(#[$doc])* $variant,)+
        }

        impl Field {
            /// Every field, in the order of the `skipped_<field>` counters.
            pub const ALL: [Field; [$($name),+].len()] = [$(Field::$variant),+];

            /// Name of the field as it appears in error messages and in `ParseError.field`.
            pub fn name(self) -> &'static str {
                match self {
                    $(Field::$variant => $name,)+
                }
            }

            /// Name of the counter of sessions skipped because of this field.
            pub fn skipped_counter(self) -> &'static str {
                match self {
                    $(Field::$variant => concat!("skipped_", $name),)+
                }
            }
        }
    };
}

fields! {
    /// A whole line: wrong field count, a document line before any query line (Baidu), or a
    /// line that is not valid in its place.
    Line => "line",
    /// Baidu field 0, the rank as logged.
    Pos => "pos",
    /// Baidu field 1, the URL MD5 that identifies a document.
    UrlMd5 => "url_md5",
    /// Baidu field 5, the click flag.
    Click => "click",
    /// WSCD query key before the TAB.
    QueryKey => "query_key",
    /// WSCD and ClickModels URL list.
    Urls => "urls",
    /// WSCD and ClickModels click list.
    Clicks => "clicks",
    /// Query tokens (Baidu, annotation files) or query text (ClickModels).
    Query => "query",
    /// Title tokens of a Baidu result.
    Title => "title",
    /// Abstract tokens of a Baidu result.
    Abstract => "abstract",
    /// Baidu field 4, the multimedia type.
    MultimediaType => "multimedia_type",
    /// Baidu behaviour field 8.
    Skip => "skip",
    /// Baidu behaviour field 9.
    SerpHeight => "serp_height",
    /// Baidu behaviour field 10.
    DisplayedTime => "displayed_time",
    /// Baidu behaviour field 11.
    DisplayedTimeMiddle => "displayed_time_middle",
    /// Baidu behaviour field 12.
    FirstClick => "first_click",
    /// Baidu behaviour field 13.
    DisplayedCount => "displayed_count",
    /// Baidu behaviour field 14.
    SerpMaxShowHeight => "serp_max_show_height",
    /// Baidu behaviour field 15.
    SlipoffCountAfterClick => "slipoff_count_after_click",
    /// Baidu behaviour field 16.
    DwellingTime => "dwelling_time",
    /// Baidu behaviour field 17.
    DisplayedTimeTop => "displayed_time_top",
    /// Baidu behaviour field 18.
    SerpToTop => "serp_to_top",
    /// Baidu behaviour field 19.
    DisplayedCountTop => "displayed_count_top",
    /// Baidu behaviour field 20.
    DisplayedCountBottom => "displayed_count_bottom",
    /// Baidu behaviour field 21.
    SlipoffCount => "slipoff_count",
    /// Baidu behaviour field 23.
    FinalClick => "final_click",
    /// Baidu behaviour field 24.
    DisplayedTimeBottom => "displayed_time_bottom",
    /// Baidu behaviour field 25.
    ClickCount => "click_count",
    /// Baidu behaviour field 26, the second "Displayed Count" of the dataset README.
    FullDisplayedCount => "full_displayed_count",
    /// Baidu behaviour field 28.
    LastClick => "last_click",
    /// Baidu behaviour field 29.
    ReverseDisplayCount => "reverse_display_count",
    /// Baidu behaviour field 30.
    DisplayedCountMiddle => "displayed_count_middle",
    /// Expert relevance label (annotation files, Yandex relevance labels).
    Label => "label",
    /// Search-frequency bucket of an annotation file.
    FrequencyBucket => "frequency_bucket",
    /// Yandex session id.
    SessionId => "session_id",
    /// Yandex time since the start of the session.
    TimePassed => "time_passed",
    /// Yandex record type, `Q` or `C`.
    ActionType => "action_type",
    /// Yandex query id.
    QueryId => "query_id",
    /// Yandex region id.
    RegionId => "region_id",
    /// Yandex URL id.
    UrlId => "url_id",
    /// ClickModels region.
    Region => "region",
    /// ClickModels probability of a vertical intent, in [0, 1].
    IntentWeight => "intent_weight",
    /// ClickModels presentation types of the results.
    Layout => "layout",
}

impl Field {
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

/// Policy for malformed sessions and corrupt gzip files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorPolicy {
    /// Raise the first parse error, and raise on a corrupt gzip file.
    Strict,
    /// Drop malformed sessions and corrupt files, and count them.
    Skip,
}

impl ErrorPolicy {
    /// Names accepted by [`ErrorPolicy::from_str`].
    pub const NAMES: [&'static str; 2] = ["strict", "skip"];
}

impl FromStr for ErrorPolicy {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        match name {
            "strict" => Ok(ErrorPolicy::Strict),
            "skip" => Ok(ErrorPolicy::Skip),
            _ => Err(invalid_choice("on_error", name, &ErrorPolicy::NAMES)),
        }
    }
}

/// Returns the error for an option value outside a fixed set of names.
pub fn invalid_choice(name: &'static str, value: &str, allowed: &[&str]) -> Error {
    let quoted: Vec<String> = allowed.iter().map(|name| format!("{name:?}")).collect();
    Error::InvalidOption {
        name,
        value: format!("{value:?}"),
        allowed: format!("one of {}", quoted.join(", ")),
    }
}

/// Applies the error policy of one parser to the malformed sessions it finds.
#[derive(Clone, Debug)]
pub struct Rejector {
    policy: ErrorPolicy,
    /// Whether a skipped session was already logged at warning level. Later ones are logged at
    /// debug level, so that a damaged file does not flood the log.
    logged_skip: bool,
}

impl Rejector {
    pub fn new(policy: ErrorPolicy) -> Self {
        Rejector {
            policy,
            logged_skip: false,
        }
    }

    /// Creates a rejector that logs every skipped session at debug level, for a second pass over
    /// files whose problems a first pass has already logged.
    pub fn quiet(policy: ErrorPolicy) -> Self {
        Rejector {
            policy,
            logged_skip: true,
        }
    }

    pub fn policy(&self) -> ErrorPolicy {
        self.policy
    }

    /// Returns the error under `strict`. Under `skip` it logs the error and returns Ok, and the
    /// caller drops the session and counts it.
    pub fn reject(&mut self, error: FieldError, path: &Path, lineno: u64) -> Result<()> {
        let error = error.at(path.to_path_buf(), lineno);
        match self.policy {
            ErrorPolicy::Strict => Err(error),
            ErrorPolicy::Skip => {
                if self.logged_skip {
                    log::debug!("skipping a malformed session: {error}");
                } else {
                    log::warn!("skipping a malformed session: {error}");
                    self.logged_skip = true;
                }
                Ok(())
            }
        }
    }
}

/// Returns whether a session finished, holding back a strict error until that session is handed out.
///
/// A malformed line can close the session before it. That session is good, so the caller returns it
/// first and raises the error, kept in `pending`, on its next call.
pub fn defer_error_after_session(
    rejected: Result<()>,
    finished: bool,
    pending: &mut Option<Error>,
) -> Result<bool> {
    match rejected {
        Ok(()) => Ok(finished),
        Err(error) if finished => {
            *pending = Some(error);
            Ok(true)
        }
        Err(error) => Err(error),
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
