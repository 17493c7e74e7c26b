//! A vocabulary as one Arrow record batch, the form in which Python saves it to Parquet.
//!
//! One row per real id, queries first, then documents, then pairs, each in id order:
//!
//! | column | Arrow type | meaning |
//! |---|---|---|
//! | `kind` | Utf8 | `query`, `document` or `pair` |
//! | `id` | Int32 | dense id, from 2 |
//! | `fingerprint` | UInt64 | xxh3-64 fingerprint of the key |
//! | `count` | Int64 | lookups of the key while the vocabulary was open |
//! | `query_id`, `doc_id` | Int32, null except for pairs | the ids that the pair joins |
//! | `key` | LargeBinary, nullable | key text of a query or document; null for pairs and for ids without a recorded key |
//!
//! The schema metadata stores the frozen flag under [`FROZEN_KEY`], whether the vocabulary
//! records keys under [`KEYS_KEY`], and the layout version under [`FORMAT_VERSION_KEY`].
//!
//! `key` is binary, not UTF-8 text, because it contains the exact bytes that the fingerprint was
//! computed from, and a binary key column of a table may contain any bytes. Version 1 of the layout
//! had no `key` column and no [`KEYS_KEY`]; it still loads, as a vocabulary without keys.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::builder::LargeBinaryBuilder;
use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, UInt64Type};
use arrow_array::{
    Array, ArrayRef, Int32Array, Int64Array, PrimitiveArray, RecordBatch, StringArray, UInt64Array,
};
use arrow_schema::{DataType, Field, Schema};

use super::{Entry, IdTable, KeyStore, PairEnds, Vocabulary, FIRST_REAL_ID, MAX_ENTRIES};
use crate::error::{Error, Result};

/// Schema metadata key of the layout version.
pub const FORMAT_VERSION_KEY: &str = "clickjax.vocabulary.format_version";

/// Schema metadata key of the frozen flag, `"true"` or `"false"`.
pub const FROZEN_KEY: &str = "clickjax.vocabulary.frozen";

/// Schema metadata key of the keys flag, `"true"` when the vocabulary records keys, else
/// `"false"`.
pub const KEYS_KEY: &str = "clickjax.vocabulary.keys";

/// Version of the layout above. A reader also accepts [`PREVIOUS_FORMAT_VERSION`] and rejects
/// any other version.
pub const FORMAT_VERSION: &str = "2";

/// Version of the layout without the `key` column.
pub const PREVIOUS_FORMAT_VERSION: &str = "1";

const KINDS: [&str; 3] = ["query", "document", "pair"];

/// One row: its entry, the ends of a pair row, and the key of a query or document row.
type Row<'a> = (Entry, Option<PairEnds>, Option<&'a [u8]>);

/// Row at index `id - FIRST_REAL_ID`; None until the row is seen.
type Slot<'a> = Option<Row<'a>>;

fn invalid(reason: impl Into<String>) -> Error {
    Error::InvalidVocabulary {
        reason: reason.into(),
    }
}

fn schema(frozen: bool, keys: bool) -> Schema {
    let metadata = HashMap::from([
        (FORMAT_VERSION_KEY.to_string(), FORMAT_VERSION.to_string()),
        (FROZEN_KEY.to_string(), frozen.to_string()),
        (KEYS_KEY.to_string(), keys.to_string()),
    ]);
    Schema::new(vec![
        Field::new("kind", DataType::Utf8, false),
        Field::new("id", DataType::Int32, false),
        Field::new("fingerprint", DataType::UInt64, false),
        Field::new("count", DataType::Int64, false),
        Field::new("query_id", DataType::Int32, true),
        Field::new("doc_id", DataType::Int32, true),
        Field::new("key", DataType::LargeBinary, true),
    ])
    .with_metadata(metadata)
}

/// Parses the `"true"` or `"false"` value of the schema metadata key `name`.
fn flag(value: Option<&String>, name: &str) -> Result<bool> {
    match value.map(String::as_str) {
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        other => Err(invalid(format!(
            "schema metadata {name:?} is {other:?}, expected \"true\" or \"false\""
        ))),
    }
}

impl Vocabulary {
    /// Returns every real id as one record batch in the layout of this module.
    pub fn to_record_batch(&self) -> Result<RecordBatch> {
        let tables = [&self.queries, &self.documents, &self.pairs];
        let rows: usize = tables.iter().map(|table| table.len()).sum();
        let mut kind = Vec::with_capacity(rows);
        let mut id = Vec::with_capacity(rows);
        let mut fingerprint = Vec::with_capacity(rows);
        let mut count = Vec::with_capacity(rows);
        let mut query_id = Vec::with_capacity(rows);
        let mut doc_id = Vec::with_capacity(rows);
        let mut key = LargeBinaryBuilder::with_capacity(rows, self.key_bytes());
        for (name, table) in KINDS.iter().zip(tables) {
            for (index, entry) in table.entries().iter().enumerate() {
                kind.push(*name);
                // A table contains at most MAX_ENTRIES entries, so every id fits in i32.
                id.push(FIRST_REAL_ID + index as i32);
                fingerprint.push(entry.fingerprint);
                count.push(i64::try_from(entry.count).unwrap_or(i64::MAX));
                let ends = (*name == "pair")
                    .then(|| self.pair_ends.get(index))
                    .flatten();
                query_id.push(ends.map(|ends| ends.query_id));
                doc_id.push(ends.map(|ends| ends.doc_id));
                key.append_option(table.key(index));
            }
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(kind)),
            Arc::new(Int32Array::from(id)),
            Arc::new(UInt64Array::from(fingerprint)),
            Arc::new(Int64Array::from(count)),
            Arc::new(Int32Array::from(query_id)),
            Arc::new(Int32Array::from(doc_id)),
            Arc::new(key.finish()),
        ];
        Ok(RecordBatch::try_new(
            Arc::new(schema(self.frozen, self.records_keys())),
            columns,
        )?)
    }

    /// Returns, for every real pair id in order, the pair id and the query and document ids it
    /// joins, as Int32 columns `query_doc_id`, `query_id` and `doc_id`. With `keys`, LargeBinary
    /// columns `query_key` and `doc_key` follow, null where an id has no recorded key.
    pub fn pairs_record_batch(&self, keys: bool) -> Result<RecordBatch> {
        let rows = self.pair_ends.len();
        // At most MAX_ENTRIES pairs, so every id fits in i32.
        let pair_ids: Int32Array = (0..rows)
            .map(|index| FIRST_REAL_ID + index as i32)
            .collect();
        let query_ids: Int32Array = self.pair_ends.iter().map(|ends| ends.query_id).collect();
        let doc_ids: Int32Array = self.pair_ends.iter().map(|ends| ends.doc_id).collect();
        let mut fields = vec![
            Field::new("query_doc_id", DataType::Int32, false),
            Field::new("query_id", DataType::Int32, false),
            Field::new("doc_id", DataType::Int32, false),
        ];
        let mut columns: Vec<ArrayRef> =
            vec![Arc::new(pair_ids), Arc::new(query_ids), Arc::new(doc_ids)];
        if keys {
            let mut query_keys = LargeBinaryBuilder::with_capacity(rows, 0);
            let mut doc_keys = LargeBinaryBuilder::with_capacity(rows, 0);
            for ends in &self.pair_ends {
                query_keys.append_option(self.query_key(ends.query_id));
                doc_keys.append_option(self.document_key(ends.doc_id));
            }
            fields.push(Field::new("query_key", DataType::LargeBinary, true));
            fields.push(Field::new("doc_key", DataType::LargeBinary, true));
            columns.push(Arc::new(query_keys.finish()));
            columns.push(Arc::new(doc_keys.finish()));
        }
        Ok(RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns,
        )?)
    }

    /// Rebuilds a vocabulary from a batch in the layout of [`Self::to_record_batch`], or of
    /// version 1 without keys. Rows may come in any order, but the ids of each kind must run
    /// from 2 without gaps.
    ///
    /// Fails with [`Error::InvalidVocabulary`] naming the column or row that is wrong.
    pub fn from_record_batch(batch: &RecordBatch) -> Result<Self> {
        let metadata = batch.schema_ref().metadata();
        let has_keys = match metadata.get(FORMAT_VERSION_KEY) {
            Some(version) if version == FORMAT_VERSION => true,
            Some(version) if version == PREVIOUS_FORMAT_VERSION => false,
            Some(version) => {
                return Err(invalid(format!(
                    "format version {version:?} is not supported: this clickjax reads versions \
                     {PREVIOUS_FORMAT_VERSION} and {FORMAT_VERSION}; save the vocabulary again \
                     with this version"
                )))
            }
            None => {
                return Err(invalid(format!(
                    "schema metadata has no {FORMAT_VERSION_KEY:?}: not a clickjax vocabulary"
                )))
            }
        };
        let frozen = flag(metadata.get(FROZEN_KEY), FROZEN_KEY)?;
        let records_keys = has_keys && flag(metadata.get(KEYS_KEY), KEYS_KEY)?;

        let kind = column(batch, "kind", &DataType::Utf8)?.as_string::<i32>();
        let id = primitive::<Int32Type>(batch, "id")?;
        let fingerprint = primitive::<UInt64Type>(batch, "fingerprint")?;
        let count = primitive::<Int64Type>(batch, "count")?;
        let query_id = primitive::<Int32Type>(batch, "query_id")?;
        let doc_id = primitive::<Int32Type>(batch, "doc_id")?;
        let key = if has_keys {
            Some(column(batch, "key", &DataType::LargeBinary)?.as_binary::<i64>())
        } else {
            None
        };
        for (name, array) in [
            ("kind", kind as &dyn Array),
            ("id", id),
            ("fingerprint", fingerprint),
            ("count", count),
        ] {
            if array.null_count() > 0 {
                return Err(invalid(format!("column {name} contains nulls")));
            }
        }

        // Entries of each kind by id; a slot stays None until its row is seen.
        let mut slots: [Vec<Slot>; 3] = Default::default();
        let mut counts = [0usize; 3];
        for row in 0..batch.num_rows() {
            let text = kind.value(row);
            let Some(table) = KINDS.iter().position(|name| *name == text) else {
                return Err(invalid(format!(
                    "row {row}: kind {text:?} is not one of query, document, pair"
                )));
            };
            counts[table] += 1;
            if counts[table] > MAX_ENTRIES {
                return Err(invalid(format!(
                    "more than {MAX_ENTRIES} {text} rows, the maximum for int32 ids"
                )));
            }
            let value = i64::from(id.value(row));
            if value < i64::from(FIRST_REAL_ID) {
                return Err(invalid(format!(
                    "row {row}: {text} id {value} is below the first real id {FIRST_REAL_ID}"
                )));
            }
            let raw_count = count.value(row);
            let Ok(entry_count) = u64::try_from(raw_count) else {
                return Err(invalid(format!("row {row}: count {raw_count} is negative")));
            };
            let ends = if table == 2 {
                if query_id.is_null(row) || doc_id.is_null(row) {
                    return Err(invalid(format!(
                        "row {row}: pair id {value} has a null query_id or doc_id"
                    )));
                }
                Some(PairEnds {
                    query_id: query_id.value(row),
                    doc_id: doc_id.value(row),
                })
            } else {
                None
            };
            let key_text =
                key.and_then(|key| (table < 2 && key.is_valid(row)).then(|| key.value(row)));
            let index = (value - i64::from(FIRST_REAL_ID)) as usize;
            let slots = &mut slots[table];
            if index >= slots.len() {
                slots.resize(index + 1, None);
            }
            if slots[index].is_some() {
                return Err(invalid(format!(
                    "row {row}: {text} id {value} appears twice"
                )));
            }
            let entry = Entry {
                fingerprint: fingerprint.value(row),
                count: entry_count,
            };
            slots[index] = Some((entry, ends, key_text));
        }

        let [query_slots, document_slots, pair_slots] = slots;
        let (queries, _) = table_from_slots("query", query_slots, records_keys)?;
        let (documents, _) = table_from_slots("document", document_slots, records_keys)?;
        let (pairs, pair_ends) = table_from_slots("pair", pair_slots, false)?;
        let ends_in_range = |id: i32, table: &IdTable| {
            id >= FIRST_REAL_ID && ((id - FIRST_REAL_ID) as usize) < table.len()
        };
        for (index, ends) in pair_ends.iter().enumerate() {
            if !ends_in_range(ends.query_id, &queries) || !ends_in_range(ends.doc_id, &documents) {
                return Err(invalid(format!(
                    "pair id {} joins query_id {} and doc_id {}, which the vocabulary does not \
                     contain",
                    FIRST_REAL_ID + index as i32,
                    ends.query_id,
                    ends.doc_id
                )));
            }
        }
        Ok(Vocabulary {
            queries,
            documents,
            pairs,
            pair_ends,
            frozen,
        })
    }
}

/// Builds a table from entries indexed by `id - FIRST_REAL_ID`, with a key store when
/// `records_keys` is true, rejecting gaps in the ids and repeated fingerprints.
fn table_from_slots(
    name: &'static str,
    slots: Vec<Slot<'_>>,
    records_keys: bool,
) -> Result<(IdTable, Vec<PairEnds>)> {
    let mut entries = Vec::with_capacity(slots.len());
    let mut ends = Vec::new();
    let mut keys = records_keys.then(KeyStore::default);
    for (index, slot) in slots.into_iter().enumerate() {
        let Some((entry, pair_ends, text)) = slot else {
            return Err(invalid(format!(
                "{name} id {} is missing: the ids of each kind must run from {FIRST_REAL_ID} \
                 without gaps",
                FIRST_REAL_ID + index as i32
            )));
        };
        entries.push(entry);
        ends.extend(pair_ends);
        if let Some(keys) = &mut keys {
            keys.push(text);
        }
    }
    let table = IdTable::from_entries(name, &entries, keys);
    if table.has_repeated_fingerprints() {
        return Err(invalid(format!(
            "two {name} ids share a fingerprint; each key must have one id"
        )));
    }
    Ok((table, ends))
}

fn column<'a>(batch: &'a RecordBatch, name: &str, expected: &DataType) -> Result<&'a ArrayRef> {
    let Some(array) = batch.column_by_name(name) else {
        return Err(invalid(format!(
            "column {name} is missing; expected the columns kind, id, fingerprint, count, \
             query_id, doc_id and (from version 2) key"
        )));
    };
    if array.data_type() != expected {
        return Err(invalid(format!(
            "column {name} has type {}, expected {expected}",
            array.data_type()
        )));
    }
    Ok(array)
}

fn primitive<'a, T: arrow_array::ArrowPrimitiveType>(
    batch: &'a RecordBatch,
    name: &str,
) -> Result<&'a PrimitiveArray<T>> {
    Ok(column(batch, name, &T::DATA_TYPE)?.as_primitive::<T>())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a vocabulary from two sessions: query 100 with documents 7 and 8, then query 200 with
    /// document 8.
    fn sample() -> Vocabulary {
        let mut vocabulary = Vocabulary::new();
        for (query, documents) in [(100u64, &[7u64, 8][..]), (200, &[8][..])] {
            let query_id = vocabulary.query_id(query).unwrap().id;
            for &document in documents {
                let doc_id = vocabulary.document_id(document).unwrap().id;
                let pair = super::super::pair_fingerprint(query, document);
                vocabulary.pair_id(pair, query_id, doc_id).unwrap();
            }
        }
        vocabulary
    }

    #[test]
    fn round_trip_keeps_ids_counts_and_pairs() {
        let mut vocabulary = sample();
        vocabulary.freeze();
        let batch = vocabulary.to_record_batch().unwrap();
        assert_eq!(batch.num_rows(), 2 + 2 + 3);
        let counts = batch
            .column(3)
            .as_primitive::<Int64Type>()
            .values()
            .to_vec();
        // Each query and document 7 was met once, and document 8 once in each session.
        assert_eq!(counts, vec![1, 1, 1, 2, 1, 1, 1]);

        let restored = Vocabulary::from_record_batch(&batch).unwrap();
        assert!(restored.is_frozen());
        assert_eq!(restored.pair_ends(), vocabulary.pair_ends());
        assert_eq!(restored.to_record_batch().unwrap(), batch);
        assert_eq!(
            restored.pair_ends()[2],
            PairEnds {
                query_id: 3,
                doc_id: 3
            }
        );
    }

    /// Builds the sessions of [`sample`] in a vocabulary that records keys: the key of a
    /// fingerprint is its decimal text, except query 200, which has none.
    fn sample_with_keys() -> Vocabulary {
        let mut vocabulary = Vocabulary::with_keys(true);
        for (query, documents) in [(100u64, &[7u64, 8][..]), (200, &[8][..])] {
            let query_key = (query == 100).then(|| query.to_string().into_bytes());
            let query_id = vocabulary
                .query_id_with_key(query, query_key.as_deref())
                .unwrap()
                .id;
            for &document in documents {
                let key = document.to_string();
                let doc_id = vocabulary
                    .document_id_with_key(document, Some(key.as_bytes()))
                    .unwrap()
                    .id;
                let pair = super::super::pair_fingerprint(query, document);
                vocabulary.pair_id(pair, query_id, doc_id).unwrap();
            }
        }
        vocabulary
    }

    #[test]
    fn round_trip_keeps_keys() {
        let vocabulary = sample_with_keys();
        let batch = vocabulary.to_record_batch().unwrap();
        let keys = batch.column_by_name("key").unwrap().as_binary::<i64>();
        let keys: Vec<Option<&[u8]>> = keys.iter().collect();
        assert_eq!(
            keys,
            vec![
                Some(&b"100"[..]),
                None,
                Some(b"7"),
                Some(b"8"),
                None,
                None,
                None
            ]
        );
        assert_eq!(batch.schema().metadata()[KEYS_KEY], "true");

        let restored = Vocabulary::from_record_batch(&batch).unwrap();
        assert!(restored.records_keys());
        assert_eq!(restored.query_key(2), Some(&b"100"[..]));
        assert_eq!(restored.query_key(3), None);
        assert_eq!(restored.document_key(3), Some(&b"8"[..]));
        assert_eq!(restored.to_record_batch().unwrap(), batch);

        let pairs = restored.pairs_record_batch(true).unwrap();
        let query_keys: Vec<Option<&[u8]>> = pairs.column(3).as_binary::<i64>().iter().collect();
        let doc_keys: Vec<Option<&[u8]>> = pairs.column(4).as_binary::<i64>().iter().collect();
        assert_eq!(query_keys, vec![Some(&b"100"[..]), Some(b"100"), None]);
        assert_eq!(doc_keys, vec![Some(&b"7"[..]), Some(b"8"), Some(b"8")]);
        assert_eq!(restored.pairs_record_batch(false).unwrap().num_columns(), 3);

        let without = sample().to_record_batch().unwrap();
        assert_eq!(without.column_by_name("key").unwrap().null_count(), 7);
        assert!(!Vocabulary::from_record_batch(&without)
            .unwrap()
            .records_keys());
    }

    #[test]
    fn version_1_loads_without_keys() {
        let batch = sample_with_keys().to_record_batch().unwrap();
        // Version 1 had neither the key column nor the keys flag.
        let mut schema = batch.schema().as_ref().clone();
        let fields: Vec<Field> = schema.fields()[..6]
            .iter()
            .map(|field| field.as_ref().clone())
            .collect();
        schema.metadata.remove(KEYS_KEY);
        schema
            .metadata
            .insert(FORMAT_VERSION_KEY.to_string(), "1".to_string());
        let old_schema = Schema::new(fields).with_metadata(schema.metadata);
        let old =
            RecordBatch::try_new(Arc::new(old_schema), batch.columns()[..6].to_vec()).unwrap();

        let restored = Vocabulary::from_record_batch(&old).unwrap();
        assert!(!restored.records_keys());
        assert_eq!(restored.query_key(2), None);
        assert_eq!(restored.pair_ends(), sample().pair_ends());
        let saved = restored.to_record_batch().unwrap();
        assert_eq!(
            saved.schema().metadata()[FORMAT_VERSION_KEY],
            FORMAT_VERSION
        );
        assert_eq!(saved.column_by_name("key").unwrap().null_count(), 7);
    }

    #[test]
    fn rows_in_any_order_are_accepted() {
        let batch = sample().to_record_batch().unwrap();
        let reversed: Vec<u32> = (0..batch.num_rows() as u32).rev().collect();
        let indices = arrow_array::UInt32Array::from(reversed);
        let columns = batch
            .columns()
            .iter()
            .map(|column| take_rows(column, &indices))
            .collect();
        let shuffled = RecordBatch::try_new(batch.schema(), columns).unwrap();
        let restored = Vocabulary::from_record_batch(&shuffled).unwrap();
        assert_eq!(restored.to_record_batch().unwrap(), batch);
    }

    /// Reorders the rows of a vocabulary column by `indices`.
    fn take_rows(array: &ArrayRef, indices: &arrow_array::UInt32Array) -> ArrayRef {
        let order: Vec<usize> = indices.values().iter().map(|&i| i as usize).collect();
        match array.data_type() {
            DataType::Utf8 => {
                let values = array.as_string::<i32>();
                Arc::new(
                    order
                        .iter()
                        .map(|&i| Some(values.value(i)))
                        .collect::<StringArray>(),
                )
            }
            DataType::Int32 => {
                let values = array.as_primitive::<Int32Type>();
                Arc::new(
                    order
                        .iter()
                        .map(|&i| (!values.is_null(i)).then(|| values.value(i)))
                        .collect::<Int32Array>(),
                )
            }
            DataType::UInt64 => {
                let values = array.as_primitive::<UInt64Type>();
                Arc::new(
                    order
                        .iter()
                        .map(|&i| values.value(i))
                        .collect::<UInt64Array>(),
                )
            }
            DataType::LargeBinary => {
                let values = array.as_binary::<i64>();
                Arc::new(
                    order
                        .iter()
                        .map(|&i| (!values.is_null(i)).then(|| values.value(i)))
                        .collect::<arrow_array::LargeBinaryArray>(),
                )
            }
            DataType::Int64 => {
                let values = array.as_primitive::<Int64Type>();
                Arc::new(
                    order
                        .iter()
                        .map(|&i| values.value(i))
                        .collect::<Int64Array>(),
                )
            }
            other => panic!("unexpected column type {other}"),
        }
    }

    fn replace_column(batch: &RecordBatch, index: usize, array: ArrayRef) -> RecordBatch {
        let mut columns = batch.columns().to_vec();
        columns[index] = array;
        let mut fields: Vec<Field> = batch
            .schema()
            .fields()
            .iter()
            .map(|field| field.as_ref().clone())
            .collect();
        fields[index] = Field::new(
            fields[index].name(),
            columns[index].data_type().clone(),
            true,
        );
        let schema = Schema::new(fields).with_metadata(batch.schema().metadata().clone());
        RecordBatch::try_new(Arc::new(schema), columns).unwrap()
    }

    fn error_of(batch: &RecordBatch) -> String {
        Vocabulary::from_record_batch(batch)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn invalid_batches_name_the_problem() {
        let batch = sample().to_record_batch().unwrap();

        let gap = replace_column(
            &batch,
            1,
            Arc::new(Int32Array::from(vec![2, 4, 2, 3, 2, 3, 4])),
        );
        assert!(
            error_of(&gap).contains("query id 3 is missing"),
            "{}",
            error_of(&gap)
        );

        let twice = replace_column(
            &batch,
            1,
            Arc::new(Int32Array::from(vec![2, 2, 2, 3, 2, 3, 4])),
        );
        assert!(error_of(&twice).contains("row 1: query id 2 appears twice"));

        let kinds = StringArray::from(vec![
            "query", "query", "url", "document", "pair", "pair", "pair",
        ]);
        let kind = replace_column(&batch, 0, Arc::new(kinds));
        assert!(error_of(&kind).contains("row 2: kind \"url\""));

        let negative = replace_column(
            &batch,
            3,
            Arc::new(Int64Array::from(vec![1, 1, 1, -2, 1, 1, 1])),
        );
        assert!(error_of(&negative).contains("row 3: count -2 is negative"));

        let shared = replace_column(
            &batch,
            2,
            Arc::new(UInt64Array::from(vec![5, 5, 7, 8, 1, 2, 3])),
        );
        assert!(error_of(&shared).contains("two query ids share a fingerprint"));

        let dangling = replace_column(
            &batch,
            4,
            Arc::new(Int32Array::from(vec![
                None,
                None,
                None,
                None,
                Some(2),
                Some(9),
                Some(3),
            ])),
        );
        assert!(error_of(&dangling).contains("pair id 3 joins query_id 9"));

        let wrong_type = replace_column(
            &batch,
            2,
            Arc::new(Int64Array::from(vec![5, 6, 7, 8, 1, 2, 3])),
        );
        assert!(
            error_of(&wrong_type).contains("column fingerprint has type Int64, expected UInt64")
        );

        let old = RecordBatch::try_new(
            Arc::new(
                batch
                    .schema()
                    .as_ref()
                    .clone()
                    .with_metadata(HashMap::from([
                        (FORMAT_VERSION_KEY.to_string(), "0".to_string()),
                        (FROZEN_KEY.to_string(), "false".to_string()),
                    ])),
            ),
            batch.columns().to_vec(),
        )
        .unwrap();
        assert!(error_of(&old).contains("format version \"0\" is not supported"));
    }
}
