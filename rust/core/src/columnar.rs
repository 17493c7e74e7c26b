//! Sessions given as columns, one entry per result, for tables that are already in memory (a
//! Parquet or CSV file read by pyarrow, a pandas or polars frame).
//!
//! The caller groups the rows by session and orders each session by position, which Arrow and
//! numpy do with vectorised kernels. This module fingerprints key columns with the same functions
//! as the text readers, then applies the same session rules and batch builder, so a table and a
//! text log holding the same sessions give equal batches.

use std::fmt::Display;
use std::io::Write;

use arrow_array::builder::LargeBinaryBuilder;
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use arrow_array::{Array, ArrowPrimitiveType, LargeBinaryArray, RecordBatch};
use arrow_schema::DataType;

use crate::batch::{BatchBuilder, BatchLayout};
use crate::behaviour::{behaviour_column, behaviour_names, ValueKind};
use crate::error::{Error, Result};
use crate::options::{ExtraColumn, ReaderOptions, FREQUENCY_BUCKET_COLUMN, MAX_POSITIONS};
use crate::session::{Session, SessionResult, SessionRules};
use crate::stats::Stats;
use crate::vocabulary::{document_fingerprint, query_fingerprint, FingerprintHasher, Vocabulary};

/// Role of a key column, which picks the fingerprint function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyRole {
    Query,
    Document,
}

impl KeyRole {
    fn fingerprint(self, key: &[u8]) -> u64 {
        match self {
            KeyRole::Query => query_fingerprint(key),
            KeyRole::Document => document_fingerprint(key),
        }
    }
}

fn invalid(column: &str, reason: impl Into<String>) -> Error {
    Error::InvalidColumn {
        column: column.to_string(),
        reason: reason.into(),
    }
}

/// Fingerprints every key of `array`: the UTF-8 bytes of a string, the bytes of a binary value,
/// or the decimal text of an integer. So the integer 13 and the text `13` of a URL id in a log
/// give the same document. Nulls and other types are rejected, naming `column`.
pub fn fingerprint_keys(array: &dyn Array, role: KeyRole, column: &str) -> Result<Vec<u64>> {
    let mut fingerprints = Vec::with_capacity(array.len());
    visit_keys(array, column, &mut |key| {
        fingerprints.push(role.fingerprint(key));
    })?;
    Ok(fingerprints)
}

/// Returns the key text of every row of `array`, the bytes that [`fingerprint_keys`] hashes.
pub fn key_texts(array: &dyn Array, column: &str) -> Result<LargeBinaryArray> {
    let mut texts = LargeBinaryBuilder::with_capacity(array.len(), 0);
    visit_keys(array, column, &mut |key| texts.append_value(key))?;
    Ok(texts.finish())
}

/// Calls `visit` with the key bytes of every row of `array`, in order.
fn visit_keys(array: &dyn Array, column: &str, visit: &mut dyn FnMut(&[u8])) -> Result<()> {
    if array.null_count() > 0 {
        return Err(invalid(
            column,
            format!("{} null values", array.null_count()),
        ));
    }
    let unsupported = || {
        invalid(
            column,
            format!(
                "type {} is not a string, binary or integer type",
                array.data_type()
            ),
        )
    };
    let mut visit_all = |values: &mut dyn Iterator<Item = Option<&[u8]>>| {
        values.for_each(|value| visit(value.unwrap_or_default()));
    };
    match array.data_type() {
        DataType::Utf8 => visit_all(
            &mut array
                .as_string_opt::<i32>()
                .ok_or_else(unsupported)?
                .iter()
                .map(|v| v.map(str::as_bytes)),
        ),
        DataType::LargeUtf8 => visit_all(
            &mut array
                .as_string_opt::<i64>()
                .ok_or_else(unsupported)?
                .iter()
                .map(|v| v.map(str::as_bytes)),
        ),
        DataType::Utf8View => visit_all(
            &mut array
                .as_string_view_opt()
                .ok_or_else(unsupported)?
                .iter()
                .map(|v| v.map(str::as_bytes)),
        ),
        DataType::Binary => {
            visit_all(&mut array.as_binary_opt::<i32>().ok_or_else(unsupported)?.iter())
        }
        DataType::LargeBinary => {
            visit_all(&mut array.as_binary_opt::<i64>().ok_or_else(unsupported)?.iter())
        }
        DataType::BinaryView => {
            visit_all(&mut array.as_binary_view_opt().ok_or_else(unsupported)?.iter())
        }
        DataType::Int8 => visit_decimal::<Int8Type>(array, visit).ok_or_else(unsupported)?,
        DataType::Int16 => visit_decimal::<Int16Type>(array, visit).ok_or_else(unsupported)?,
        DataType::Int32 => visit_decimal::<Int32Type>(array, visit).ok_or_else(unsupported)?,
        DataType::Int64 => visit_decimal::<Int64Type>(array, visit).ok_or_else(unsupported)?,
        DataType::UInt8 => visit_decimal::<UInt8Type>(array, visit).ok_or_else(unsupported)?,
        DataType::UInt16 => visit_decimal::<UInt16Type>(array, visit).ok_or_else(unsupported)?,
        DataType::UInt32 => visit_decimal::<UInt32Type>(array, visit).ok_or_else(unsupported)?,
        DataType::UInt64 => visit_decimal::<UInt64Type>(array, visit).ok_or_else(unsupported)?,
        _ => return Err(unsupported()),
    }
    Ok(())
}

/// Calls `visit` with the decimal text of every integer; None if `array` is not of type `T`.
fn visit_decimal<T: ArrowPrimitiveType>(
    array: &dyn Array,
    visit: &mut dyn FnMut(&[u8]),
) -> Option<()>
where
    T::Native: Display,
{
    let values = array.as_primitive_opt::<T>()?.values();
    let mut text = Vec::new();
    for value in values.iter() {
        text.clear();
        // `io::Write` for `Vec<u8>` never returns an error.
        let _ = write!(text, "{value}");
        visit(&text);
    }
    Some(())
}

/// Largest width F of the `features` column.
pub const MAX_FEATURES: usize = 1 << 20;

/// Resolves the name of a `[batch, positions]` column that a table can add: a Baidu behaviour
/// column (`multimedia_type` is int32, the others float32) or the int32 `label`.
pub fn extra_column(name: &str) -> Result<ExtraColumn> {
    if name == "label" {
        return Ok(ExtraColumn {
            name: "label",
            kind: ValueKind::Int32,
        });
    }
    match behaviour_column(name) {
        Some(column) => Ok(ExtraColumn {
            name: column.name(),
            kind: column.kind,
        }),
        None => Err(invalid(
            name,
            format!(
                "not a column a table can add; expected label or a behaviour column: {}",
                behaviour_names().join(", ")
            ),
        )),
    }
}

/// Resolves the name of an int32 `[batch]` column that a table can add: `frequency_bucket`.
pub fn session_column(name: &str) -> Result<&'static str> {
    if name == FREQUENCY_BUCKET_COLUMN {
        Ok(FREQUENCY_BUCKET_COLUMN)
    } else {
        Err(invalid(
            name,
            format!("not a session column a table can add; expected {FREQUENCY_BUCKET_COLUMN}"),
        ))
    }
}

/// Sessions as flat columns: session `s` owns the results `offsets[s]..offsets[s + 1]`, in the
/// order the user saw them.
///
/// The optional columns match a [`BatchLayout`]: one slice per float extra column and one per
/// int extra column, in the layout's order, and one per session column.
#[derive(Clone, Copy, Debug, Default)]
pub struct ColumnarSessions<'a> {
    /// Query fingerprint per session, `[sessions]`.
    pub query: &'a [u64],
    /// Start of each session's results and the end of the last, `[sessions + 1]`.
    pub offsets: &'a [i64],
    /// Document fingerprint per result, `[results]`.
    pub document: &'a [u64],
    /// Rank per result, 1-based and non-decreasing within a session.
    pub position: &'a [i32],
    /// 1 for a clicked result, 0 otherwise.
    pub click: &'a [u8],
    /// Values of the float32 extra columns, each `[results]`.
    pub float_columns: &'a [&'a [f32]],
    /// Values of the int32 extra columns, each `[results]`.
    pub int_columns: &'a [&'a [i32]],
    /// Values of the session columns, each `[sessions]`.
    pub session_columns: &'a [&'a [i32]],
    /// Dense features, `[results, layout.features]` row-major.
    pub features: &'a [f32],
    /// Key texts of the queries `[sessions]` and documents `[results]` (see [`key_texts`]),
    /// which a vocabulary that records keys stores for new ids; None to store none.
    pub keys: Option<(&'a LargeBinaryArray, &'a LargeBinaryArray)>,
}

/// Batches of columnar sessions, with the counters of the rules and the slots per row.
#[derive(Debug)]
pub struct ColumnarBatches {
    pub batches: Vec<RecordBatch>,
    pub stats: Stats,
    pub positions: usize,
}

impl ColumnarSessions<'_> {
    /// Checks that the optional columns match `layout` in number and length.
    fn validate_layout(&self, layout: &BatchLayout) -> Result<()> {
        let results = self.document.len();
        let floats = layout.extra.iter().filter(|c| c.kind == ValueKind::Float32);
        let ints = layout.extra.iter().filter(|c| c.kind == ValueKind::Int32);
        if floats.clone().count() != self.float_columns.len()
            || ints.clone().count() != self.int_columns.len()
            || layout.session_columns.len() != self.session_columns.len()
        {
            return Err(invalid(
                "extra columns",
                "expected one array per column of the batch layout",
            ));
        }
        let extra = floats
            .zip(self.float_columns.iter().map(|values| values.len()))
            .chain(ints.zip(self.int_columns.iter().map(|values| values.len())));
        for (column, length) in extra {
            if length != results {
                return Err(invalid(
                    column.name,
                    format!("expected {results} values, one per result, got {length}"),
                ));
            }
        }
        for (name, values) in layout.session_columns.iter().zip(self.session_columns) {
            if values.len() != self.query.len() {
                return Err(invalid(
                    name,
                    format!(
                        "expected {} values, one per session, got {}",
                        self.query.len(),
                        values.len()
                    ),
                ));
            }
        }
        if layout.features > MAX_FEATURES {
            return Err(invalid(
                FEATURES,
                format!(
                    "{} features per result is more than the maximum of {MAX_FEATURES}",
                    layout.features
                ),
            ));
        }
        if self.features.len() != results * layout.features {
            return Err(invalid(
                FEATURES,
                format!(
                    "expected {results} x {} values, got {}",
                    layout.features,
                    self.features.len()
                ),
            ));
        }
        Ok(())
    }

    /// Checks the lengths, offsets, positions and clicks, naming the offending column.
    fn validate(&self) -> Result<()> {
        let results = self.document.len();
        if let Some((query_keys, document_keys)) = self.keys {
            if query_keys.len() != self.query.len() || document_keys.len() != results {
                return Err(invalid(
                    "keys",
                    format!(
                        "expected {} query keys and {results} document keys, got {} and {}",
                        self.query.len(),
                        query_keys.len(),
                        document_keys.len()
                    ),
                ));
            }
        }
        if self.offsets.len() != self.query.len() + 1 {
            return Err(invalid("offsets", "expected one more offset than sessions"));
        }
        if self.position.len() != results || self.click.len() != results {
            return Err(invalid(
                "position",
                "expected one position and one click per document",
            ));
        }
        let ordered = self.offsets.windows(2).all(|pair| pair[0] <= pair[1]);
        if self.offsets.first() != Some(&0)
            || self.offsets.last() != Some(&(results as i64))
            || !ordered
        {
            return Err(invalid(
                "offsets",
                format!("expected non-decreasing offsets from 0 to {results}"),
            ));
        }
        if let Some(&bad) = self.position.iter().find(|&&position| position < 1) {
            return Err(invalid(
                "position",
                format!("{bad} is not a rank of 1 or more"),
            ));
        }
        if let Some(&bad) = self.click.iter().find(|&&c| c > 1) {
            return Err(invalid("click", format!("{bad} is not 0 or 1")));
        }
        Ok(())
    }

    /// Fills `session` with session `index` and the values of its optional columns, with
    /// `feature_width` features per result. Returns an error if its positions decrease.
    fn session(&self, index: usize, feature_width: usize, session: &mut Session) -> Result<()> {
        session.clear();
        session.query_key = self.query[index];
        if let Some((query_keys, _)) = self.keys {
            session.keys.set_query(query_keys.value(index));
        }
        let start = self.offsets[index] as usize;
        let end = self.offsets[index + 1] as usize;
        for result in start..end {
            let position = self.position[result] as u32;
            if session
                .results
                .last()
                .is_some_and(|last| last.position > position)
            {
                return Err(invalid(
                    "position",
                    format!(
                        "positions decrease within session {index}; sort each session by position"
                    ),
                ));
            }
            let click = self.click[result] == 1;
            session.has_logged_click |= click;
            session.results.push(SessionResult {
                document_key: self.document[result],
                position,
                click,
            });
            if let Some((_, document_keys)) = self.keys {
                session.keys.push_document(&[document_keys.value(result)]);
            }
            session
                .floats
                .extend(self.float_columns.iter().map(|values| values[result]));
            session
                .ints
                .extend(self.int_columns.iter().map(|values| values[result]));
        }
        session
            .features
            .extend_from_slice(&self.features[start * feature_width..end * feature_width]);
        session
            .session_ints
            .extend(self.session_columns.iter().map(|values| values[index]));
        Ok(())
    }
}

/// Name of the features column in errors.
const FEATURES: &str = crate::batch::FEATURES_COLUMN;

/// Applies the session rules of `options` to columnar sessions and returns padded batches with
/// the optional columns of `layout`. Only `positions` (None pads to the largest rank of a kept
/// result), `batch_size`, `drop_sessions_without_clicks`, `min_results` and
/// `min_sessions_per_query` apply. The counter `lines_read` counts table rows.
pub fn batch_columnar_sessions(
    sessions: &ColumnarSessions<'_>,
    layout: &BatchLayout,
    vocabulary: &mut Vocabulary,
    options: &ReaderOptions,
) -> Result<ColumnarBatches> {
    sessions.validate()?;
    sessions.validate_layout(layout)?;
    let width = layout.features;
    let mut rules = SessionRules {
        positions: options.positions.unwrap_or(MAX_POSITIONS),
        drop_sessions_without_clicks: options.drop_sessions_without_clicks,
        min_results: options.min_results,
    };
    let mut session = Session::default();

    // A first pass, as the file readers make it, finds the largest rank and counts queries.
    let count_queries = options.min_sessions_per_query > 1;
    let mut counts: std::collections::HashMap<
        u64,
        u64,
        std::hash::BuildHasherDefault<FingerprintHasher>,
    > = Default::default();
    if options.positions.is_none() || count_queries {
        let mut longest = 0;
        let mut scratch = Stats::default();
        for index in 0..sessions.query.len() {
            sessions.session(index, width, &mut session)?;
            if rules.apply(&mut session, &mut scratch) {
                longest = longest.max(session.results.last().map_or(0, |r| r.position as usize));
                *counts.entry(session.query_key).or_insert(0) += 1;
            }
        }
        if options.positions.is_none() {
            rules.positions = longest.max(1);
        }
    }

    let mut stats = Stats {
        lines_read: sessions.document.len() as u64,
        ..Stats::default()
    };
    let mut builder = BatchBuilder::new(rules.positions, options.batch_size, layout);
    let mut batches = Vec::new();
    for index in 0..sessions.query.len() {
        sessions.session(index, width, &mut session)?;
        if !rules.apply(&mut session, &mut stats) {
            continue;
        }
        if count_queries
            && counts.get(&session.query_key).copied().unwrap_or(0) < options.min_sessions_per_query
        {
            stats.sessions_dropped_rare_query += 1;
            continue;
        }
        builder.push(&session, vocabulary, &mut stats)?;
        stats.sessions_kept += 1;
        if builder.is_full() {
            batches.push(builder.finish()?);
        }
    }
    if !builder.is_empty() {
        batches.push(builder.finish()?);
    }
    Ok(ColumnarBatches {
        batches,
        stats,
        positions: rules.positions,
    })
}

#[cfg(test)]
#[path = "columnar_tests.rs"]
mod tests;
