//! Sessions from the input TSV of the ClickModels package (`varepsilon/clickmodels`), in its list
//! and its extended (object) variant, detected per line.
//!
//! Each line is one session with 7 TAB-separated fields:
//!
//! ```text
//! id  query  region  intentWeight  urls  layout  clicks
//! ```
//!
//! The id is not used. The query text (any UTF-8) and the region (an integer) together key the
//! query, joined by a TAB, which the query text cannot contain. `intentWeight` is a probability in
//! [0, 1]. In the list variant `urls`, `layout` and `clicks` are JSON lists: URL strings, booleans
//! and click counts per result. In the extended variant they are JSON objects keyed by the
//! 0-based position as a string. Objects may be sparse: a missing layout or click entry means
//! false or 0, and the URL list ends at the first missing position.
//!
//! A click count above 1 is one click, and the extra clicks are counted in `repeated_clicks`.
//! Click-list entries beyond the end of the URL list (the ClickModels sample has 11 for 10 URLs)
//! are counted in `extra_click_entries`, and extended-format keys that are not a position of the
//! URL list in `invalid_position_keys`. Clicks in either place make the session one with a logged
//! click, but reach no result.

use std::io::Write;

use serde_json::{Map, Value};

use crate::error::{Field, FieldError, Rejector, Result};
use crate::fields::{parse_f32, split_fields};
use crate::input::LineReader;
use crate::session::{Session, SessionResult, SessionSource};
use crate::stats::Stats;
use crate::vocabulary::{document_fingerprint, query_fingerprint};

/// Fields of a line.
const FIELDS: usize = 7;

/// Indices of the fields.
mod column {
    pub const QUERY: usize = 1;
    pub const REGION: usize = 2;
    pub const INTENT_WEIGHT: usize = 3;
    pub const URLS: usize = 4;
    pub const LAYOUT: usize = 5;
    pub const CLICKS: usize = 6;
}

/// The two variants of the format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    List,
    Object,
}

impl Variant {
    fn expected(self, what: &'static str) -> String {
        match self {
            Variant::List => format!("a JSON list of {what}, like the URL field"),
            Variant::Object => {
                format!("a JSON object from positions to {what}, like the URL field")
            }
        }
    }
}

fn parse_json(field: Field, text: &[u8], expected: &str) -> Result<Value, FieldError> {
    serde_json::from_slice(text).map_err(|error| {
        FieldError::new(field, text, format!("{expected} (invalid JSON: {error})"))
    })
}

/// Parses a 0-based position key of the extended variant, which must be decimal digits only.
fn position_key(key: &str) -> Option<usize> {
    if key.is_empty() || !key.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    key.parse().ok()
}

/// Parses the URL field into `session.results`, and the URLs into its key texts if `keys` is
/// true, and returns the variant.
fn parse_urls(text: &[u8], session: &mut Session, keys: bool) -> Result<Variant, FieldError> {
    const EXPECTED: &str =
        "a JSON list of URL strings, or a JSON object from positions to URL strings";
    let invalid = || FieldError::new(Field::Urls, text, EXPECTED);
    let push = |session: &mut Session, url: &str| {
        let position = u32::try_from(session.results.len() + 1).unwrap_or(u32::MAX);
        session.results.push(SessionResult {
            document_key: document_fingerprint(url.as_bytes()),
            position,
            click: false,
        });
        if keys {
            session.keys.push_document(&[url.as_bytes()]);
        }
    };

    match parse_json(Field::Urls, text, EXPECTED)? {
        Value::Array(urls) => {
            for url in &urls {
                push(session, url.as_str().ok_or_else(invalid)?);
            }
            Ok(Variant::List)
        }
        Value::Object(urls) => {
            // Every value must be a URL; the list runs from position 0 to the first gap.
            let mut by_position = Vec::new();
            for (key, url) in &urls {
                let url = url.as_str().ok_or_else(invalid)?;
                match position_key(key) {
                    Some(position) => by_position.push((position, url)),
                    None => session.events.invalid_position_keys += 1,
                }
            }
            by_position.sort_unstable_by_key(|&(position, _)| position);
            for &(position, url) in &by_position {
                if position != session.results.len() {
                    session.events.invalid_position_keys += 1;
                    continue;
                }
                push(session, url);
            }
            Ok(Variant::Object)
        }
        _ => Err(invalid()),
    }
}

/// Returns the entries of a layout or click field as (position, value) pairs, checking that the
/// field has the variant of the URL field. The position of a list entry is its index, even past
/// the URL list. Object keys that are not a position of the URL list are counted and get None.
fn entries(
    field: Field,
    text: &[u8],
    variant: Variant,
    what: &'static str,
    session: &mut Session,
) -> Result<Vec<(Option<usize>, Value)>, FieldError> {
    let expected = variant.expected(what);
    match (variant, parse_json(field, text, &expected)?) {
        (Variant::List, Value::Array(values)) => Ok(values
            .into_iter()
            .enumerate()
            .map(|(index, value)| (Some(index), value))
            .collect()),
        (Variant::Object, Value::Object(values)) => Ok(object_entries(values, session)),
        _ => Err(FieldError::new(field, text, expected)),
    }
}

fn object_entries(
    values: Map<String, Value>,
    session: &mut Session,
) -> Vec<(Option<usize>, Value)> {
    let results = session.results.len();
    let mut entries = Vec::with_capacity(values.len());
    for (key, value) in values {
        let position = position_key(&key).filter(|&position| position < results);
        if position.is_none() {
            session.events.invalid_position_keys += 1;
        }
        entries.push((position, value));
    }
    entries
}

fn parse_layout(text: &[u8], variant: Variant, session: &mut Session) -> Result<(), FieldError> {
    for (_, value) in entries(Field::Layout, text, variant, "booleans", session)? {
        if !value.is_boolean() {
            return Err(FieldError::new(
                Field::Layout,
                text,
                variant.expected("booleans"),
            ));
        }
    }
    Ok(())
}

fn parse_clicks(text: &[u8], variant: Variant, session: &mut Session) -> Result<(), FieldError> {
    const WHAT: &str = "click counts (non-negative integers)";
    let entries = entries(Field::Clicks, text, variant, WHAT, session)?;
    let results = session.results.len();
    if variant == Variant::List && entries.len() < results {
        return Err(FieldError::new(
            Field::Clicks,
            text,
            format!("one click count per URL, {results} in all"),
        ));
    }
    for (position, value) in entries {
        let Some(count) = value.as_u64() else {
            return Err(FieldError::new(Field::Clicks, text, variant.expected(WHAT)));
        };
        session.has_logged_click |= count > 0;
        match position.map(|position| session.results.get_mut(position)) {
            Some(Some(result)) => {
                result.click |= count > 0;
                session.events.repeated_clicks += count.saturating_sub(1);
            }
            // A list entry past the URL list.
            Some(None) => session.events.extra_click_entries += 1,
            // An object key already counted as invalid.
            None => {}
        }
    }
    Ok(())
}

/// Parses one line into `session`, with its key texts if `keys` is true; `key` is scratch space
/// for the query key.
fn parse_session(
    line: &[u8],
    session: &mut Session,
    key: &mut Vec<u8>,
    keys: bool,
) -> Result<(), FieldError> {
    let mut fields: [&[u8]; FIELDS] = [&[]; FIELDS];
    let count = split_fields(line, &mut fields);
    if count != FIELDS {
        return Err(FieldError::new(
            Field::Line,
            line,
            format!("{FIELDS} TAB-separated fields (id, query, region, intentWeight, urls, layout, clicks), found {count}"),
        ));
    }

    let query = fields[column::QUERY];
    if std::str::from_utf8(query).is_err() {
        return Err(FieldError::new(Field::Query, query, "query text in UTF-8"));
    }
    let region_text = fields[column::REGION];
    let region: i64 = std::str::from_utf8(region_text)
        .ok()
        .filter(|text| !text.starts_with('+'))
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| FieldError::new(Field::Region, region_text, "an integer region id"))?;
    let weight = fields[column::INTENT_WEIGHT];
    if !parse_f32(weight).is_some_and(|weight| (0.0..=1.0).contains(&weight)) {
        return Err(FieldError::new(
            Field::IntentWeight,
            weight,
            "a probability from 0 to 1",
        ));
    }

    session.clear();
    key.clear();
    key.extend_from_slice(query);
    // `io::Write` for `Vec<u8>` never returns an error.
    let _ = write!(key, "\t{region}");
    session.query_key = query_fingerprint(key);
    if keys {
        session.keys.set_query(key);
    }

    let variant = parse_urls(fields[column::URLS], session, keys)?;
    parse_layout(fields[column::LAYOUT], variant, session)?;
    parse_clicks(fields[column::CLICKS], variant, session)
}

/// Reads ClickModels sessions from one file.
pub struct ClickModelsParser {
    lines: LineReader,
    rejector: Rejector,
    key: Vec<u8>,
    /// Whether sessions carry their key texts.
    keys: bool,
}

impl ClickModelsParser {
    pub fn new(lines: LineReader, rejector: Rejector) -> Self {
        ClickModelsParser {
            lines,
            rejector,
            key: Vec::new(),
            keys: false,
        }
    }

    /// Makes the parser copy the query key (query, TAB, region) and the URLs of each session
    /// into [`Session::keys`] when `keys` is true.
    pub fn with_keys(mut self, keys: bool) -> Self {
        self.keys = keys;
        self
    }
}

impl SessionSource for ClickModelsParser {
    fn next_session(&mut self, session: &mut Session, stats: &mut Stats) -> Result<bool> {
        loop {
            if !self.lines.advance()? {
                return Ok(false);
            }
            stats.lines_read += 1;
            let line = self.lines.line();
            if line.is_empty() {
                continue;
            }
            match parse_session(line, session, &mut self.key, self.keys) {
                Ok(()) => return Ok(true),
                Err(error) => {
                    let field = error.field;
                    self.rejector
                        .reject(error, self.lines.path(), self.lines.lineno())?;
                    stats.count_skipped(field);
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "clickmodels_tests.rs"]
mod tests;
