//! Blocks of rows with file-local ids, built by the file workers and copied into batches by the
//! reader.
//!
//! A worker numbers the queries, documents and pairs of its file from 0 in order of first
//! appearance ([`LocalIds`]) and writes each accepted session as one row of a [`Block`], a struct
//! of arrays. A block lists the fingerprints (and key texts) of the local ids that first appear
//! in it. The reader takes blocks in file order and keeps, per file, a [`Remap`] from local ids to
//! the ids of the shared vocabulary. It looks up each new local id when the first row that uses
//! it is copied, in the order a sequential read would meet it. So the vocabulary assigns the same
//! ids, in the same order, as if every session were looked up on one thread.

use std::collections::hash_map::Entry as MapEntry;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::mem::size_of;

use crate::batch::{BatchBuilder, Row};
use crate::error::Result;
use crate::session::Session;
use crate::stats::Stats;
use crate::vocabulary::{self, FingerprintHasher, Vocabulary, OUT_OF_VOCABULARY_ID};

/// Local ids per table above which a worker starts a new numbering, so that the maps of a worker
/// and of the reader do not grow with the size of a file. Keys seen before the restart get new
/// local ids and are looked up in the shared vocabulary again, which returns their old ids.
/// A full table takes about 34 MiB (an estimate: 2^21 buckets of 17 bytes in std's hash map).
pub(crate) const MAX_LOCAL_IDS: usize = 1 << 20;

type LocalMap = HashMap<u64, u32, BuildHasherDefault<FingerprintHasher>>;

/// File-local ids of the queries, documents and query-document pairs met so far in one file,
/// numbered from 0 in order of first appearance per table.
pub(crate) struct LocalIds {
    queries: LocalMap,
    documents: LocalMap,
    pairs: LocalMap,
    /// Ids per table at which the numbering starts again, normally [`MAX_LOCAL_IDS`].
    limit: usize,
}

impl LocalIds {
    pub(crate) fn new(limit: usize) -> Self {
        LocalIds {
            queries: LocalMap::default(),
            documents: LocalMap::default(),
            pairs: LocalMap::default(),
            limit,
        }
    }

    /// Returns true once a table contains `limit` ids.
    pub(crate) fn is_full(&self) -> bool {
        [&self.queries, &self.documents, &self.pairs]
            .iter()
            .any(|table| table.len() >= self.limit)
    }

    pub(crate) fn clear(&mut self) {
        self.queries.clear();
        self.documents.clear();
        self.pairs.clear();
    }
}

/// Returns the local id of `fingerprint`, and whether it is new.
fn local_id(table: &mut LocalMap, fingerprint: u64) -> (u32, bool) {
    // A table is cleared at its limit (at most MAX_LOCAL_IDS) between blocks, and a block adds
    // fewer than u32::MAX ids, so the count fits in u32.
    let next = table.len() as u32;
    match table.entry(fingerprint) {
        MapEntry::Occupied(occupied) => (*occupied.get(), false),
        MapEntry::Vacant(vacant) => {
            vacant.insert(next);
            (next, true)
        }
    }
}

/// Key texts of new local ids, one optional text each, one after another.
#[derive(Default)]
struct KeyTexts {
    bytes: Vec<u8>,
    /// Start and end of each id's text in `bytes`, or None when the parser recorded none.
    spans: Vec<Option<(usize, usize)>>,
}

impl KeyTexts {
    fn push(&mut self, text: Option<&[u8]>) {
        self.spans.push(text.map(|text| {
            let start = self.bytes.len();
            self.bytes.extend_from_slice(text);
            (start, self.bytes.len())
        }));
    }

    fn get(&self, index: usize) -> Option<&[u8]> {
        let (start, end) = self.spans.get(index).copied().flatten()?;
        Some(&self.bytes[start..end])
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.spans.clear();
    }

    fn heap_bytes(&self) -> usize {
        self.bytes.capacity() + self.spans.capacity() * size_of::<Option<(usize, usize)>>()
    }
}

/// A pair that first appears in a block, with the local ids of its query and document.
#[derive(Clone, Copy)]
struct NewPair {
    fingerprint: u64,
    query: u32,
    document: u32,
}

/// Rows of consecutive accepted sessions of one file, with file-local ids.
#[derive(Default)]
pub(crate) struct Block {
    /// Whether local numbering starts again at 0 with this block: true for the first block of a
    /// file and after a worker's [`LocalIds`] reached its limit.
    pub(crate) reset: bool,
    /// Counters of the parsing and the session rules since the previous block of the file.
    pub(crate) stats: Stats,
    /// Local ids that came before this block, per table; the ids new in it follow in order.
    first_query: usize,
    first_document: usize,
    first_pair: usize,

    /// Per row: the local query id, and the end of its values in each per-result array.
    query: Vec<u32>,
    result_ends: Vec<usize>,
    float_ends: Vec<usize>,
    int_ends: Vec<usize>,
    feature_ends: Vec<usize>,
    session_int_ends: Vec<usize>,

    /// Per result: local document and pair ids, and the values that need no vocabulary.
    documents: Vec<u32>,
    pairs: Vec<u32>,
    query_doc_hash: Vec<i32>,
    position: Vec<i32>,
    click: Vec<u8>,
    /// Values of the optional columns, laid out per row as in [`Session`].
    floats: Vec<f32>,
    ints: Vec<i32>,
    features: Vec<f32>,
    session_ints: Vec<i32>,

    /// Fingerprints of the local ids that first appear in this block, in local id order.
    new_queries: Vec<u64>,
    new_documents: Vec<u64>,
    new_pairs: Vec<NewPair>,
    query_texts: KeyTexts,
    document_texts: KeyTexts,
}

impl Block {
    /// Empties the block for the next rows of a file whose local ids are `local`, keeping its
    /// allocations.
    pub(crate) fn start(&mut self, local: &LocalIds, reset: bool) {
        self.reset = reset;
        self.stats = Stats::default();
        self.first_query = local.queries.len();
        self.first_document = local.documents.len();
        self.first_pair = local.pairs.len();
        for ends in [
            &mut self.result_ends,
            &mut self.float_ends,
            &mut self.int_ends,
            &mut self.feature_ends,
            &mut self.session_int_ends,
        ] {
            ends.clear();
        }
        self.query.clear();
        self.documents.clear();
        self.pairs.clear();
        self.query_doc_hash.clear();
        self.position.clear();
        self.click.clear();
        self.floats.clear();
        self.ints.clear();
        self.features.clear();
        self.session_ints.clear();
        self.new_queries.clear();
        self.new_documents.clear();
        self.new_pairs.clear();
        self.query_texts.clear();
        self.document_texts.clear();
    }

    /// Number of rows.
    pub(crate) fn rows(&self) -> usize {
        self.query.len()
    }

    /// Appends `session`, which passed the session rules, as one row, numbering its new keys in
    /// `local`. The block must have been started with `local`.
    pub(crate) fn push(&mut self, session: &Session, local: &mut LocalIds) {
        let (query, new) = local_id(&mut local.queries, session.query_key);
        if new {
            self.new_queries.push(session.query_key);
            self.query_texts.push(session.keys.query());
        }
        self.query.push(query);

        for (index, result) in session.results.iter().enumerate() {
            let (document, new) = local_id(&mut local.documents, result.document_key);
            if new {
                self.new_documents.push(result.document_key);
                self.document_texts.push(session.keys.document(index));
            }
            let pair_key = vocabulary::pair_fingerprint(session.query_key, result.document_key);
            let (pair, new) = local_id(&mut local.pairs, pair_key);
            if new {
                self.new_pairs.push(NewPair {
                    fingerprint: pair_key,
                    query,
                    document,
                });
            }
            self.documents.push(document);
            self.pairs.push(pair);
            self.query_doc_hash
                .push(vocabulary::query_doc_hash(pair_key));
            // The session rules keep positions of at most MAX_POSITIONS, which fits in i32.
            self.position.push(result.position as i32);
            self.click.push(u8::from(result.click));
        }
        self.result_ends.push(self.documents.len());

        self.floats.extend_from_slice(&session.floats);
        self.float_ends.push(self.floats.len());
        self.ints.extend_from_slice(&session.ints);
        self.int_ends.push(self.ints.len());
        self.features.extend_from_slice(&session.features);
        self.feature_ends.push(self.features.len());
        self.session_ints.extend_from_slice(&session.session_ints);
        self.session_int_ends.push(self.session_ints.len());
    }

    /// Heap memory of the block, in bytes.
    pub(crate) fn heap_bytes(&self) -> usize {
        fn bytes<T>(values: &Vec<T>) -> usize {
            values.capacity() * size_of::<T>()
        }
        bytes(&self.query)
            + bytes(&self.result_ends)
            + bytes(&self.float_ends)
            + bytes(&self.int_ends)
            + bytes(&self.feature_ends)
            + bytes(&self.session_int_ends)
            + bytes(&self.documents)
            + bytes(&self.pairs)
            + bytes(&self.query_doc_hash)
            + bytes(&self.position)
            + bytes(&self.click)
            + bytes(&self.floats)
            + bytes(&self.ints)
            + bytes(&self.features)
            + bytes(&self.session_ints)
            + bytes(&self.new_queries)
            + bytes(&self.new_documents)
            + bytes(&self.new_pairs)
            + self.query_texts.heap_bytes()
            + self.document_texts.heap_bytes()
    }
}

/// Range of row `row` in an array of row ends.
fn row_range(ends: &[usize], row: usize) -> std::ops::Range<usize> {
    let start = row.checked_sub(1).map_or(0, |previous| ends[previous]);
    start..ends[row]
}

/// Ids of the shared vocabulary for the local ids of the file being copied, indexed by local id.
#[derive(Default)]
pub(crate) struct Remap {
    queries: Vec<i32>,
    documents: Vec<i32>,
    pairs: Vec<i32>,
    /// Vocabulary ids of the row being copied.
    doc_id: Vec<i32>,
    query_doc_id: Vec<i32>,
}

impl Remap {
    /// Forgets every local id, for a block whose numbering starts again.
    pub(crate) fn clear(&mut self) {
        self.queries.clear();
        self.documents.clear();
        self.pairs.clear();
    }

    /// Appends row `row` of `block` to `builder` with the ids of `vocabulary`. Local ids that
    /// first appear in this row are looked up, and added unless the vocabulary is frozen, in the
    /// order a sequential read meets them: the query, then each result's document and pair.
    /// Counts the uses of each id while the vocabulary is open, and out-of-vocabulary keys in
    /// `stats`.
    ///
    /// Fails with [`crate::Error::VocabularyFull`] and leaves `builder` unchanged when a table
    /// has no room for a new key.
    pub(crate) fn push_row(
        &mut self,
        block: &Block,
        row: usize,
        vocabulary: &mut Vocabulary,
        builder: &mut BatchBuilder,
        stats: &mut Stats,
    ) -> Result<()> {
        let results = row_range(&block.result_ends, row);
        // The session rules truncated the row to the builder's positions; `min` guards the slices.
        let results = results.start..results.end.min(results.start + builder.positions());

        let query_id = self.query_id(block, block.query[row], vocabulary)?;
        self.doc_id.clear();
        self.query_doc_id.clear();
        for result in results.clone() {
            let doc_id = self.document_id(block, block.documents[result], vocabulary)?;
            let pair_id = self.pair_id(block, block.pairs[result], vocabulary)?;
            self.doc_id.push(doc_id);
            self.query_doc_id.push(pair_id);
        }

        vocabulary.count_query(query_id);
        for (&doc_id, &pair_id) in self.doc_id.iter().zip(&self.query_doc_id) {
            vocabulary.count_document(doc_id);
            vocabulary.count_pair(pair_id);
        }
        let is_oov = |id: &&i32| **id == OUT_OF_VOCABULARY_ID;
        stats.oov_queries += u64::from(query_id == OUT_OF_VOCABULARY_ID);
        stats.oov_documents += self.doc_id.iter().filter(is_oov).count() as u64;
        stats.oov_pairs += self.query_doc_id.iter().filter(is_oov).count() as u64;

        builder.append_row(&Row {
            query_id,
            doc_id: &self.doc_id,
            query_doc_id: &self.query_doc_id,
            query_doc_hash: &block.query_doc_hash[results.clone()],
            position: &block.position[results.clone()],
            click: &block.click[results],
            floats: &block.floats[row_range(&block.float_ends, row)],
            ints: &block.ints[row_range(&block.int_ends, row)],
            features: &block.features[row_range(&block.feature_ends, row)],
            session_ints: &block.session_ints[row_range(&block.session_int_ends, row)],
        });
        Ok(())
    }

    fn query_id(&mut self, block: &Block, local: u32, vocabulary: &mut Vocabulary) -> Result<i32> {
        map_local_id(&mut self.queries, local, block.first_query, |index| {
            let text = block.query_texts.get(index);
            vocabulary.resolve_query(block.new_queries[index], text)
        })
    }

    fn document_id(
        &mut self,
        block: &Block,
        local: u32,
        vocabulary: &mut Vocabulary,
    ) -> Result<i32> {
        map_local_id(&mut self.documents, local, block.first_document, |index| {
            let text = block.document_texts.get(index);
            vocabulary.resolve_document(block.new_documents[index], text)
        })
    }

    fn pair_id(&mut self, block: &Block, local: u32, vocabulary: &mut Vocabulary) -> Result<i32> {
        let (queries, documents) = (&self.queries, &self.documents);
        map_local_id(&mut self.pairs, local, block.first_pair, |index| {
            let pair = block.new_pairs[index];
            // A pair's query and document appear no later than the pair, so both are mapped.
            let query_id = queries[pair.query as usize];
            let doc_id = documents[pair.document as usize];
            vocabulary.resolve_pair(pair.fingerprint, query_id, doc_id)
        })
    }
}

/// Returns the vocabulary id of `local` from `ids`, first mapping every local id up to it with
/// `resolve`, which takes an index into the block's list of new keys (`first` local ids came
/// before the block).
///
/// Local ids are numbered by first appearance, so a row refers at most to the next id not yet
/// mapped, and that id is the next one listed as new in the block.
fn map_local_id(
    ids: &mut Vec<i32>,
    local: u32,
    first: usize,
    mut resolve: impl FnMut(usize) -> Result<i32>,
) -> Result<i32> {
    let local = local as usize;
    while ids.len() <= local {
        let id = resolve(ids.len() - first)?;
        ids.push(id);
    }
    Ok(ids[local])
}
