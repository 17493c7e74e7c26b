//! Relevance labels of the Yandex Relevance Prediction Challenge, for evaluating click models.
//!
//! Each line has 4 TAB-separated decimal fields: `QueryID RegionID URLID Label`. The query is
//! keyed as in the Yandex click log with the same `query_key` (`QUERYID_REGIONID` or `QUERYID`)
//! and the document by its URL id, so the fingerprints match those of the click log. When a
//! query-document pair appears more than once, its highest label is kept. Lines that repeat a
//! pair are counted, and those whose label differs from the one seen before are also counted as
//! conflicting. With `query_key="query"`, pairs from different regions merge, and the region of
//! a pair's first line is kept.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, Int32Array, Int64Array, RecordBatch, UInt64Array};
use arrow_schema::{DataType, Field as ArrowField, Schema};

use crate::error::{ErrorPolicy, Field, FieldError, Rejector, Result};
use crate::fields::{parse_u64, split_fields};
use crate::input::LineReader;
use crate::options::QueryKey;
use crate::vocabulary::{
    document_fingerprint, pair_fingerprint, query_fingerprint, FingerprintHasher, Vocabulary,
};

/// Fields of a line.
const FIELDS: usize = 4;

/// Counters of one label file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelStats {
    /// Physical lines read, blank lines included.
    pub lines_read: u64,
    /// Well-formed label lines.
    pub labels_read: u64,
    /// Malformed lines dropped under `on_error="skip"`.
    pub labels_skipped: u64,
    /// Lines whose pair appeared on an earlier line.
    pub duplicate_pairs: u64,
    /// Lines whose pair appeared on an earlier line with another label.
    pub conflicting_labels: u64,
}

impl LabelStats {
    /// Returns every counter with its name, in a fixed order.
    pub fn entries(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("lines_read", self.lines_read),
            ("labels_read", self.labels_read),
            ("labels_skipped", self.labels_skipped),
            ("duplicate_pairs", self.duplicate_pairs),
            ("conflicting_labels", self.conflicting_labels),
        ]
    }
}

/// One row per query-document pair, in order of first appearance.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RelevanceLabels {
    /// Raw ids as in the file.
    pub query: Vec<i64>,
    pub region: Vec<i64>,
    pub url: Vec<i64>,
    pub query_fingerprint: Vec<u64>,
    pub doc_fingerprint: Vec<u64>,
    /// Highest label of the pair.
    pub label: Vec<i32>,
    pub stats: LabelStats,
}

/// A well-formed label line.
struct LabelLine {
    query: i64,
    region: i64,
    url: i64,
    label: i32,
}

fn parse_id(field: Field, text: &[u8]) -> Result<i64, FieldError> {
    parse_u64(text)
        .and_then(|value| i64::try_from(value).ok())
        .ok_or_else(|| FieldError::new(field, text, "a non-negative decimal integer"))
}

fn parse_label_line(line: &[u8]) -> Result<LabelLine, FieldError> {
    let mut fields: [&[u8]; FIELDS] = [&[]; FIELDS];
    let count = split_fields(line, &mut fields);
    if count != FIELDS {
        return Err(FieldError::new(
            Field::Line,
            line,
            format!(
                "{FIELDS} TAB-separated fields (QueryID, RegionID, URLID, Label), found {count}"
            ),
        ));
    }
    let label = fields[3];
    let (negative, digits) = match label.strip_prefix(b"-") {
        Some(digits) => (true, digits),
        None => (false, label),
    };
    let label = parse_u64(digits)
        .and_then(|value| i32::try_from(value).ok())
        .map(|value| if negative { -value } else { value })
        .ok_or_else(|| FieldError::new(Field::Label, label, "an integer label"))?;
    Ok(LabelLine {
        query: parse_id(Field::QueryId, fields[0])?,
        region: parse_id(Field::RegionId, fields[1])?,
        url: parse_id(Field::UrlId, fields[2])?,
        label,
    })
}

/// Reads a label file. Under `on_error="strict"` the first malformed line is an error; under
/// `"skip"` it is dropped and counted.
pub fn read_relevance_labels(
    path: &Path,
    query_key: QueryKey,
    on_error: ErrorPolicy,
) -> Result<RelevanceLabels> {
    let mut lines = LineReader::open(path)?;
    let mut rejector = Rejector::new(on_error);
    let mut labels = RelevanceLabels::default();
    let mut rows: HashMap<u64, usize, BuildHasherDefault<FingerprintHasher>> = HashMap::default();
    let mut key = Vec::new();

    while lines.advance()? {
        labels.stats.lines_read += 1;
        if lines.line().is_empty() {
            continue;
        }
        let line = match parse_label_line(lines.line()) {
            Ok(line) => line,
            Err(error) => {
                rejector.reject(error, lines.path(), lines.lineno())?;
                labels.stats.labels_skipped += 1;
                continue;
            }
        };
        labels.stats.labels_read += 1;

        // The same key text as the Yandex click reader. `io::Write` for `Vec<u8>` never fails.
        key.clear();
        let _ = match query_key {
            QueryKey::QueryRegion => write!(key, "{}_{}", line.query, line.region),
            QueryKey::Query => write!(key, "{}", line.query),
        };
        let query = query_fingerprint(&key);
        key.clear();
        let _ = write!(key, "{}", line.url);
        let document = document_fingerprint(&key);

        let pair = pair_fingerprint(query, document);
        if let Some(&row) = rows.get(&pair) {
            labels.stats.duplicate_pairs += 1;
            if let Some(label) = labels.label.get_mut(row) {
                if *label != line.label {
                    labels.stats.conflicting_labels += 1;
                }
                *label = (*label).max(line.label);
            }
            continue;
        }
        rows.insert(pair, labels.label.len());
        labels.query.push(line.query);
        labels.region.push(line.region);
        labels.url.push(line.url);
        labels.query_fingerprint.push(query);
        labels.doc_fingerprint.push(document);
        labels.label.push(line.label);
    }
    Ok(labels)
}

impl RelevanceLabels {
    /// Returns the labels as a record batch with the columns `query`, `region`, `url` (int64 raw
    /// ids), `query_fingerprint`, `doc_fingerprint` (uint64) and `label` (int32). With a
    /// vocabulary it adds `query_doc_id` (int32): the pair's dense id, or 1 if the vocabulary
    /// does not hold the pair. The vocabulary is not changed.
    pub fn to_record_batch(&self, vocabulary: Option<&Vocabulary>) -> Result<RecordBatch> {
        let mut fields = vec![
            ArrowField::new("query", DataType::Int64, false),
            ArrowField::new("region", DataType::Int64, false),
            ArrowField::new("url", DataType::Int64, false),
            ArrowField::new("query_fingerprint", DataType::UInt64, false),
            ArrowField::new("doc_fingerprint", DataType::UInt64, false),
            ArrowField::new("label", DataType::Int32, false),
        ];
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(self.query.clone())),
            Arc::new(Int64Array::from(self.region.clone())),
            Arc::new(Int64Array::from(self.url.clone())),
            Arc::new(UInt64Array::from(self.query_fingerprint.clone())),
            Arc::new(UInt64Array::from(self.doc_fingerprint.clone())),
            Arc::new(Int32Array::from(self.label.clone())),
        ];
        if let Some(vocabulary) = vocabulary {
            let ids: Vec<i32> = self
                .query_fingerprint
                .iter()
                .zip(&self.doc_fingerprint)
                .map(|(&query, &document)| {
                    vocabulary.known_pair_id(pair_fingerprint(query, document))
                })
                .collect();
            fields.push(ArrowField::new("query_doc_id", DataType::Int32, false));
            columns.push(Arc::new(Int32Array::from(ids)));
        }
        Ok(RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::test_files::TempFile;

    const LABELS: &[u8] =
        b"1234\t5\t13\t1\n1234\t213\t13\t0\r\n\n1234\t5\t13\t0\n1234\t5\t14\t2\n1234\t5\t14\t3";

    #[test]
    fn max_label_kept_and_conflicts_counted() {
        let file = TempFile::new("labels", LABELS);
        let labels =
            read_relevance_labels(file.path(), QueryKey::QueryRegion, ErrorPolicy::Strict).unwrap();
        assert_eq!(labels.query, vec![1234, 1234, 1234]);
        assert_eq!(labels.region, vec![5, 213, 5]);
        assert_eq!(labels.url, vec![13, 13, 14]);
        assert_eq!(labels.label, vec![1, 0, 3]);
        assert_eq!(labels.query_fingerprint[0], query_fingerprint(b"1234_5"));
        assert_eq!(labels.doc_fingerprint[2], document_fingerprint(b"14"));
        assert_eq!(labels.stats.lines_read, 6);
        assert_eq!(labels.stats.labels_read, 5);
        assert_eq!(labels.stats.duplicate_pairs, 2);
        assert_eq!(labels.stats.conflicting_labels, 2);
    }

    #[test]
    fn query_key_merges_regions() {
        let file = TempFile::new("labels", LABELS);
        let labels =
            read_relevance_labels(file.path(), QueryKey::Query, ErrorPolicy::Strict).unwrap();
        assert_eq!(labels.url, vec![13, 14]);
        assert_eq!(labels.region, vec![5, 5]);
        assert_eq!(labels.label, vec![1, 3]);
        assert_eq!(labels.stats.conflicting_labels, 3);
        assert_eq!(labels.query_fingerprint[0], query_fingerprint(b"1234"));
    }

    #[test]
    fn malformed_lines_strict_or_skipped() {
        let file = TempFile::new(
            "labels",
            b"1\t2\t3\t1\n1\t2\tx\t1\n1\t2\t3\n1\t2\t4\tgood\n",
        );
        match read_relevance_labels(file.path(), QueryKey::QueryRegion, ErrorPolicy::Strict) {
            Err(Error::Parse(error)) => {
                assert_eq!(error.field, Field::UrlId);
                assert_eq!(error.lineno, 2);
            }
            other => panic!("expected a parse error, got {other:?}"),
        }
        let labels =
            read_relevance_labels(file.path(), QueryKey::QueryRegion, ErrorPolicy::Skip).unwrap();
        assert_eq!(labels.label, vec![1]);
        assert_eq!(labels.stats.labels_skipped, 3);
    }

    #[test]
    fn record_batch_looks_up_pairs() {
        let file = TempFile::new("labels", b"7\t1\t11\t1\n7\t1\t12\t0\n");
        let labels =
            read_relevance_labels(file.path(), QueryKey::QueryRegion, ErrorPolicy::Strict).unwrap();
        let mut vocabulary = Vocabulary::new();
        let known = pair_fingerprint(query_fingerprint(b"7_1"), document_fingerprint(b"12"));
        assert_eq!(vocabulary.pair_id(known, 2, 2).unwrap().id, 2);

        let batch = labels.to_record_batch(Some(&vocabulary)).unwrap();
        assert_eq!(batch.num_rows(), 2);
        let ids = batch
            .column_by_name("query_doc_id")
            .unwrap()
            .as_any()
            .downcast_ref::<Int32Array>()
            .unwrap();
        assert_eq!(ids.values().to_vec(), vec![1, 2]);
        assert_eq!(labels.to_record_batch(None).unwrap().num_columns(), 6);
    }
}
