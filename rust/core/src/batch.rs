//! Padded Arrow record batches of sessions, one row per session and P positions per row.
//!
//! Columns, in order (B rows, P positions):
//!
//! | column | Arrow type | shape |
//! |---|---|---|
//! | `query_id` | Int32 | `[batch]` |
//! | `doc_id`, `query_doc_id`, `query_doc_hash`, `position` | FixedSizeList<Int32, P> | `[batch, positions]` |
//! | `click`, `mask` | FixedSizeList<UInt8, P> | `[batch, positions]` |
//! | `weight` | Float32 | `[batch]` |
//! | extra columns (behaviour signals, `label`) | FixedSizeList<Float32 or Int32, P> | `[batch, positions]` |
//! | session columns (`frequency_bucket`) | Int32 | `[batch]` |
//! | `features` | FixedSizeList<FixedSizeList<Float32, F>, P> | `[batch, positions, features]` |
//!
//! The optional columns follow the contract columns in the order of the table, as a
//! [`BatchLayout`] selects them. No array has a validity bitmap, at any level of nesting. Padding
//! slots of the contract columns and of `features` contain 0, and `mask` marks the real results.
//! Padding slots of the extra columns contain their missing value (NaN or -1). Every buffer comes
//! from an Arrow `BufferBuilder`, whose allocations are aligned to at least 64 bytes,
//! so numpy can view a flattened column without a copy and JAX's CPU backend can alias it.

use std::sync::Arc;

use arrow_array::types::{Float32Type, Int32Type, UInt8Type};
use arrow_array::{ArrayRef, ArrowPrimitiveType, FixedSizeListArray, PrimitiveArray, RecordBatch};
use arrow_buffer::{ArrowNativeType, BufferBuilder};
use arrow_schema::{DataType, Field, Schema, SchemaRef};

use crate::behaviour::ValueKind;
use crate::error::Result;
use crate::options::ExtraColumn;
use crate::session::Session;
use crate::stats::Stats;
use crate::vocabulary::{self, Vocabulary, PADDING_ID};

/// Rows reserved for the first batch. Buffers grow past this as rows arrive, so a large
/// `batch_size` costs memory only once it is filled.
const INITIAL_ROWS: usize = 4096;

/// The optional columns of a batch, after the contract columns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchLayout {
    /// `[batch, positions]` columns, in this order.
    pub extra: Vec<ExtraColumn>,
    /// Int32 `[batch]` columns with one value per session, in this order.
    pub session_columns: Vec<&'static str>,
    /// Width F of the float32 `features` column, `[batch, positions, F]`; 0 for no such column.
    pub features: usize,
}

impl BatchLayout {
    /// Creates a layout with `[batch, positions]` extra columns and nothing else.
    pub fn with_extra(extra: Vec<ExtraColumn>) -> Self {
        BatchLayout {
            extra,
            ..BatchLayout::default()
        }
    }
}

/// Name of the dense feature column.
pub const FEATURES_COLUMN: &str = "features";

/// Returns the schema of a batch with `positions` slots per row and the optional columns of
/// `layout` after the contract columns.
pub fn batch_schema(positions: usize, layout: &BatchLayout) -> SchemaRef {
    // `positions` is validated to fit in i32 by the reader options.
    let list = |item: DataType| DataType::FixedSizeList(list_item(item), positions as i32);
    let mut fields = vec![
        Field::new("query_id", DataType::Int32, false),
        Field::new("doc_id", list(DataType::Int32), false),
        Field::new("query_doc_id", list(DataType::Int32), false),
        Field::new("query_doc_hash", list(DataType::Int32), false),
        Field::new("position", list(DataType::Int32), false),
        Field::new("click", list(DataType::UInt8), false),
        Field::new("mask", list(DataType::UInt8), false),
        Field::new("weight", DataType::Float32, false),
    ];
    for column in &layout.extra {
        let item = match column.kind {
            ValueKind::Float32 => DataType::Float32,
            ValueKind::Int32 => DataType::Int32,
        };
        fields.push(Field::new(column.name, list(item), false));
    }
    for name in &layout.session_columns {
        fields.push(Field::new(*name, DataType::Int32, false));
    }
    if layout.features > 0 {
        fields.push(Field::new(
            FEATURES_COLUMN,
            list(features_type(layout.features)),
            false,
        ));
    }
    Arc::new(Schema::new(fields))
}

/// Type of one slot of the `features` column: `width` float32 values.
fn features_type(width: usize) -> DataType {
    // Callers that set a width check it against `columnar::MAX_FEATURES`, so it fits in i32.
    DataType::FixedSizeList(list_item(DataType::Float32), width as i32)
}

/// Values of one extra column, and where its values sit in each result's block of session values.
struct ExtraBuffer {
    kind: ValueKind,
    /// Index among the session's values of the same kind.
    offset: usize,
    floats: BufferBuilder<f32>,
    ints: BufferBuilder<i32>,
}

/// Ids of one row, computed before anything is appended so that a failed lookup leaves the
/// builder unchanged.
#[derive(Default)]
struct RowIds {
    doc_id: Vec<i32>,
    query_doc_id: Vec<i32>,
    query_doc_hash: Vec<i32>,
    position: Vec<i32>,
    click: Vec<u8>,
}

/// One row with its ids looked up: `[positions]` slices of its real results, and its other
/// values laid out as in a [`Session`].
pub(crate) struct Row<'a> {
    pub query_id: i32,
    pub doc_id: &'a [i32],
    pub query_doc_id: &'a [i32],
    pub query_doc_hash: &'a [i32],
    pub position: &'a [i32],
    pub click: &'a [u8],
    pub floats: &'a [f32],
    pub ints: &'a [i32],
    pub features: &'a [f32],
    pub session_ints: &'a [i32],
}

/// Collects sessions into the columns of one record batch.
pub struct BatchBuilder {
    positions: usize,
    batch_size: usize,
    rows: usize,
    schema: SchemaRef,
    row: RowIds,
    query_id: BufferBuilder<i32>,
    doc_id: BufferBuilder<i32>,
    query_doc_id: BufferBuilder<i32>,
    query_doc_hash: BufferBuilder<i32>,
    position: BufferBuilder<i32>,
    click: BufferBuilder<u8>,
    mask: BufferBuilder<u8>,
    weight: BufferBuilder<f32>,
    extra: Vec<ExtraBuffer>,
    session_columns: Vec<BufferBuilder<i32>>,
    /// Values of `features`, `[rows, positions, feature_width]`.
    features: BufferBuilder<f32>,
    feature_width: usize,
    /// Float and int values per result in a session.
    float_width: usize,
    int_width: usize,
}

impl BatchBuilder {
    /// Creates a builder for batches of up to `batch_size` rows of `positions` slots, with the
    /// optional columns of `layout`. A session pushed must hold one value per result for each
    /// extra column, float columns in `floats` and int columns in `ints`, in column order. It
    /// also holds one value per session column in `session_ints`, and `layout.features` values
    /// per result in `features`.
    pub fn new(positions: usize, batch_size: usize, layout: &BatchLayout) -> Self {
        let mut float_width = 0;
        let mut int_width = 0;
        let extra_buffers = layout
            .extra
            .iter()
            .map(|column| {
                let width = match column.kind {
                    ValueKind::Float32 => &mut float_width,
                    ValueKind::Int32 => &mut int_width,
                };
                *width += 1;
                ExtraBuffer {
                    kind: column.kind,
                    offset: *width - 1,
                    floats: BufferBuilder::new(0),
                    ints: BufferBuilder::new(0),
                }
            })
            .collect();
        let mut builder = BatchBuilder {
            positions,
            batch_size,
            rows: 0,
            schema: batch_schema(positions, layout),
            row: RowIds::default(),
            query_id: BufferBuilder::new(0),
            doc_id: BufferBuilder::new(0),
            query_doc_id: BufferBuilder::new(0),
            query_doc_hash: BufferBuilder::new(0),
            position: BufferBuilder::new(0),
            click: BufferBuilder::new(0),
            mask: BufferBuilder::new(0),
            weight: BufferBuilder::new(0),
            extra: extra_buffers,
            session_columns: layout
                .session_columns
                .iter()
                .map(|_| BufferBuilder::new(0))
                .collect(),
            features: BufferBuilder::new(0),
            feature_width: layout.features,
            float_width,
            int_width,
        };
        builder.reserve(batch_size.min(INITIAL_ROWS));
        builder
    }

    /// Reserves room for `rows` rows, so that filling a batch does not copy its buffers.
    fn reserve(&mut self, rows: usize) {
        let slots = rows * self.positions;
        self.query_id.reserve(rows);
        self.doc_id.reserve(slots);
        self.query_doc_id.reserve(slots);
        self.query_doc_hash.reserve(slots);
        self.position.reserve(slots);
        self.click.reserve(slots);
        self.mask.reserve(slots);
        self.weight.reserve(rows);
        for column in &mut self.extra {
            match column.kind {
                ValueKind::Float32 => column.floats.reserve(slots),
                ValueKind::Int32 => column.ints.reserve(slots),
            }
        }
        for column in &mut self.session_columns {
            column.reserve(rows);
        }
        self.features.reserve(slots * self.feature_width);
    }

    /// Schema of the batches this builder produces.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Number of rows collected so far.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Returns true if no row has been collected since the last batch.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Returns true once the batch contains `batch_size` rows.
    pub fn is_full(&self) -> bool {
        self.rows >= self.batch_size
    }

    /// Appends a session as one row, looking up its ids in `vocabulary` and counting
    /// out-of-vocabulary keys. The session must hold at most `positions` results.
    pub fn push(
        &mut self,
        session: &Session,
        vocabulary: &mut Vocabulary,
        stats: &mut Stats,
    ) -> Result<()> {
        let query = vocabulary.query_id_with_key(session.query_key, session.keys.query())?;
        let mut oov_documents = 0;
        let mut oov_pairs = 0;

        let row = &mut self.row;
        row.doc_id.clear();
        row.query_doc_id.clear();
        row.query_doc_hash.clear();
        row.position.clear();
        row.click.clear();
        for (index, result) in session.results.iter().take(self.positions).enumerate() {
            let document = vocabulary
                .document_id_with_key(result.document_key, session.keys.document(index))?;
            let pair_key = vocabulary::pair_fingerprint(session.query_key, result.document_key);
            let pair = vocabulary.pair_id(pair_key, query.id, document.id)?;
            oov_documents += u64::from(document.out_of_vocabulary);
            oov_pairs += u64::from(pair.out_of_vocabulary);

            row.doc_id.push(document.id);
            row.query_doc_id.push(pair.id);
            row.query_doc_hash
                .push(vocabulary::query_doc_hash(pair_key));
            // Positions are at most the number of positions, which fits in i32.
            row.position.push(result.position as i32);
            row.click.push(u8::from(result.click));
        }

        stats.oov_queries += u64::from(query.out_of_vocabulary);
        stats.oov_documents += oov_documents;
        stats.oov_pairs += oov_pairs;

        let ids = std::mem::take(&mut self.row);
        self.append_row(&Row {
            query_id: query.id,
            doc_id: &ids.doc_id,
            query_doc_id: &ids.query_doc_id,
            query_doc_hash: &ids.query_doc_hash,
            position: &ids.position,
            click: &ids.click,
            floats: &session.floats,
            ints: &session.ints,
            features: &session.features,
            session_ints: &session.session_ints,
        });
        self.row = ids;
        Ok(())
    }

    /// Appends one row whose ids are known, padding it to `positions` slots. The result slices
    /// must be equally long and at most `positions` long.
    pub(crate) fn append_row(&mut self, row: &Row<'_>) {
        // Real results first, then padding up to P slots.
        let real = row.doc_id.len();
        let padding = self.positions - real;
        self.query_id.append(row.query_id);
        append_padded(&mut self.doc_id, row.doc_id, padding, PADDING_ID);
        append_padded(
            &mut self.query_doc_id,
            row.query_doc_id,
            padding,
            PADDING_ID,
        );
        append_padded(&mut self.query_doc_hash, row.query_doc_hash, padding, 0);
        append_padded(&mut self.position, row.position, padding, 0);
        append_padded(&mut self.click, row.click, padding, 0);
        self.mask.append_n(real, 1);
        self.mask.append_n(padding, 0);
        self.weight.append(1.0);
        for column in &mut self.extra {
            match column.kind {
                ValueKind::Float32 => {
                    let values = strided(row.floats, self.float_width, column.offset, real);
                    column.floats.extend(values);
                    column.floats.append_n(padding, f32::MISSING);
                }
                ValueKind::Int32 => {
                    let values = strided(row.ints, self.int_width, column.offset, real);
                    column.ints.extend(values);
                    column.ints.append_n(padding, i32::MISSING);
                }
            }
        }
        for (index, column) in self.session_columns.iter_mut().enumerate() {
            column.append(row.session_ints.get(index).copied().unwrap_or(i32::MISSING));
        }
        if self.feature_width > 0 {
            // Like `strided`, a session with too few values gets zeros rather than a shifted row.
            let values = real * self.feature_width;
            let given = row.features.len().min(values);
            self.features.append_slice(&row.features[..given]);
            self.features
                .append_n(values - given + padding * self.feature_width, 0.0);
        }
        self.rows += 1;
    }

    /// Number of slots per row, P.
    pub fn positions(&self) -> usize {
        self.positions
    }

    /// Returns the rows collected so far as a record batch and starts a new one.
    pub fn finish(&mut self) -> Result<RecordBatch> {
        // `positions` is validated to fit in i32 by the reader options.
        let size = self.positions as i32;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(primitive::<Int32Type>(&mut self.query_id)),
            padded::<Int32Type>(&mut self.doc_id, size)?,
            padded::<Int32Type>(&mut self.query_doc_id, size)?,
            padded::<Int32Type>(&mut self.query_doc_hash, size)?,
            padded::<Int32Type>(&mut self.position, size)?,
            padded::<UInt8Type>(&mut self.click, size)?,
            padded::<UInt8Type>(&mut self.mask, size)?,
            Arc::new(primitive::<Float32Type>(&mut self.weight)),
        ];
        let mut columns = columns;
        for column in &mut self.extra {
            columns.push(match column.kind {
                ValueKind::Float32 => padded::<Float32Type>(&mut column.floats, size)?,
                ValueKind::Int32 => padded::<Int32Type>(&mut column.ints, size)?,
            });
        }
        for column in &mut self.session_columns {
            columns.push(Arc::new(primitive::<Int32Type>(column)));
        }
        if self.feature_width > 0 {
            columns.push(padded_features(
                &mut self.features,
                self.feature_width,
                size,
            )?);
        }

        // Finishing leaves the builders empty. The next batch is likely as large as this one.
        let rows = std::mem::take(&mut self.rows);
        self.reserve(rows.max(INITIAL_ROWS).min(self.batch_size));
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

/// Values of column `offset` for the first `results` results, from a row-major block of `width`
/// values per result. A session with fewer values than that yields the missing value for the
/// rest, so a parser that breaks the promise of [`BatchBuilder::new`] cannot misalign a batch.
fn strided<T: Copy + MissingValue>(
    values: &[T],
    width: usize,
    offset: usize,
    results: usize,
) -> impl Iterator<Item = T> + '_ {
    (0..results).map(move |result| {
        values
            .get(result * width + offset)
            .copied()
            .unwrap_or(T::MISSING)
    })
}

/// The value of an extra column where the log has none.
trait MissingValue {
    const MISSING: Self;
}

impl MissingValue for f32 {
    const MISSING: f32 = f32::NAN;
}

impl MissingValue for i32 {
    const MISSING: i32 = -1;
}

/// Item field of every padded column: values are never null.
fn list_item(item: DataType) -> Arc<Field> {
    Arc::new(Field::new("item", item, false))
}

fn append_padded<T: ArrowNativeType>(
    builder: &mut BufferBuilder<T>,
    values: &[T],
    padding: usize,
    pad: T,
) {
    builder.append_slice(values);
    builder.append_n(padding, pad);
}

/// Moves the contents of a buffer builder into an array without a validity bitmap.
fn primitive<T: ArrowPrimitiveType>(builder: &mut BufferBuilder<T::Native>) -> PrimitiveArray<T> {
    PrimitiveArray::<T>::new(builder.finish().into(), None)
}

/// Moves the contents of a buffer builder into a `[batch, positions, features]` list column.
fn padded_features(
    builder: &mut BufferBuilder<f32>,
    width: usize,
    positions: i32,
) -> Result<ArrayRef> {
    // Callers that set a width check it against `columnar::MAX_FEATURES`, so it fits in i32.
    let slots = padded::<Float32Type>(builder, width as i32)?;
    let list =
        FixedSizeListArray::try_new(list_item(features_type(width)), positions, slots, None)?;
    Ok(Arc::new(list))
}

/// Moves the contents of a buffer builder into a `[batch, positions]` list column.
fn padded<T: ArrowPrimitiveType>(
    builder: &mut BufferBuilder<T::Native>,
    positions: i32,
) -> Result<ArrayRef> {
    let values: ArrayRef = Arc::new(primitive::<T>(builder));
    let list = FixedSizeListArray::try_new(list_item(T::DATA_TYPE), positions, values, None)?;
    Ok(Arc::new(list))
}
