//! Dense int32 ids for queries, documents and query-document pairs, keyed by 64-bit fingerprints.
//!
//! Id conventions, the same for every table: 0 is padding, 1 is out of vocabulary, and real ids
//! start at 2 in order of first appearance. An open vocabulary adds every new key. A frozen one
//! maps unknown keys to 1, which is how validation and test data reuse the training ids.
//!
//! Fingerprints are xxh3-64 hashes, stable across runs, platforms and files. Queries and documents
//! hash their key bytes with different seeds, so a query and a document with the same text do not
//! share a fingerprint. A pair hashes the 16 little-endian bytes of its query and document
//! fingerprints, and its top 31 bits give `query_doc_hash`, which needs no vocabulary.
//!
//! A vocabulary created with [`Vocabulary::with_keys`] also stores, for each query and document
//! id it assigns, the key text that the fingerprint was computed from, so that ids can be shown
//! as they appear in the log. Pairs store no key: their query and document ids lead to them.

use std::collections::hash_map::Entry as MapEntry;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed, Xxh3};

use crate::error::{Error, Result};
use keys::KeyStore;

/// Id of padding slots.
pub const PADDING_ID: i32 = 0;

/// Id of keys that a frozen vocabulary does not hold.
pub const OUT_OF_VOCABULARY_ID: i32 = 1;

/// First id given to a real key.
pub const FIRST_REAL_ID: i32 = 2;

/// Maximum number of real keys per table, so that every id fits in an int32.
pub const MAX_ENTRIES: usize = (i32::MAX - 1) as usize;

/// Seed of query fingerprints: the bytes of "query" padded with zeros, read little-endian.
const QUERY_SEED: u64 = u64::from_le_bytes(*b"query\0\0\0");

/// Seed of document fingerprints: the bytes of "document", read little-endian.
const DOCUMENT_SEED: u64 = u64::from_le_bytes(*b"document");

/// Fingerprint of a query key (Baidu: the query token field; WSCD: the query key text).
pub fn query_fingerprint(key: &[u8]) -> u64 {
    xxh3_64_with_seed(key, QUERY_SEED)
}

/// Fingerprint of a document key (Baidu: the URL MD5 text; WSCD: the URL id text).
pub fn document_fingerprint(key: &[u8]) -> u64 {
    xxh3_64_with_seed(key, DOCUMENT_SEED)
}

/// Fingerprint of a document keyed by its text: [`document_fingerprint`] of the title token
/// field, a 0x00 byte and the abstract token field, as the bytes appear in the file. Baidu click
/// logs read with `document_key="text"` and annotation files share these keys.
pub fn text_document_fingerprint(title: &[u8], abstract_tokens: &[u8]) -> u64 {
    let mut hasher = Xxh3::with_seed(DOCUMENT_SEED);
    hasher.update(title);
    hasher.update(&[0]);
    hasher.update(abstract_tokens);
    hasher.digest()
}

/// Fingerprint of a query-document pair.
pub fn pair_fingerprint(query: u64, document: u64) -> u64 {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&query.to_le_bytes());
    bytes[8..].copy_from_slice(&document.to_le_bytes());
    xxh3_64(&bytes)
}

/// Non-negative 31-bit hash of a pair fingerprint: its top 31 bits.
pub fn query_doc_hash(pair: u64) -> i32 {
    // A 64-bit value shifted right by 33 has at most 31 significant bits, so it fits in i32.
    (pair >> 33) as i32
}

/// Hasher for keys that are already uniformly distributed fingerprints: it passes them through.
#[derive(Default)]
pub(crate) struct FingerprintHasher {
    state: u64,
}

impl Hasher for FingerprintHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Only reached for keys other than u64; fold the bytes in so that it stays correct.
        for &byte in bytes {
            self.state = self.state.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.state = value;
    }

    fn finish(&self) -> u64 {
        self.state
    }
}

type FingerprintMap = HashMap<u64, i32, BuildHasherDefault<FingerprintHasher>>;

/// Fingerprint of a real id and how often a lookup met it while the vocabulary was open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) fingerprint: u64,
    pub(crate) count: u64,
}

/// One table of dense ids.
#[derive(Debug, Clone)]
pub(crate) struct IdTable {
    name: &'static str,
    ids: FingerprintMap,
    /// The fingerprint of each real id, at index `id - FIRST_REAL_ID`.
    fingerprints: Vec<u64>,
    /// How often a lookup met each real id while the vocabulary was open, at the same index.
    counts: Vec<u64>,
    /// The key text of each real id, when the table records keys.
    keys: Option<KeyStore>,
    max_entries: usize,
}

/// Result of looking a key up in a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lookup {
    pub id: i32,
    pub out_of_vocabulary: bool,
}

impl IdTable {
    fn new(name: &'static str, keys: bool) -> Self {
        IdTable {
            name,
            ids: FingerprintMap::default(),
            fingerprints: Vec::new(),
            counts: Vec::new(),
            keys: keys.then(KeyStore::default),
            max_entries: MAX_ENTRIES,
        }
    }

    /// Creates a table whose real ids are the entries in order, from [`FIRST_REAL_ID`], with
    /// `keys` (one per entry) or no key store. The caller checks that there are not too many
    /// entries, and that the fingerprints are distinct with [`IdTable::has_repeated_fingerprints`].
    pub(crate) fn from_entries(
        name: &'static str,
        entries: &[Entry],
        keys: Option<KeyStore>,
    ) -> Self {
        let mut ids = FingerprintMap::with_capacity_and_hasher(entries.len(), Default::default());
        for (index, entry) in entries.iter().enumerate() {
            // The caller keeps `entries` within MAX_ENTRIES, so the id fits in i32.
            let id = FIRST_REAL_ID + index as i32;
            ids.insert(entry.fingerprint, id);
        }
        IdTable {
            name,
            ids,
            fingerprints: entries.iter().map(|entry| entry.fingerprint).collect(),
            counts: entries.iter().map(|entry| entry.count).collect(),
            keys,
            max_entries: MAX_ENTRIES,
        }
    }

    /// Key text of the real id at `index` (`id - FIRST_REAL_ID`); None when the table records
    /// no keys or the id has none.
    pub(crate) fn key(&self, index: usize) -> Option<&[u8]> {
        self.keys.as_ref()?.get(index)
    }

    pub(crate) fn records_keys(&self) -> bool {
        self.keys.is_some()
    }

    /// Returns the entry of each real id, in id order.
    pub(crate) fn entries(&self) -> Vec<Entry> {
        self.fingerprints
            .iter()
            .zip(&self.counts)
            .map(|(&fingerprint, &count)| Entry { fingerprint, count })
            .collect()
    }

    /// Number of real ids.
    pub(crate) fn len(&self) -> usize {
        self.fingerprints.len()
    }

    /// Returns true if two ids share a fingerprint, which only [`IdTable::from_entries`] allows.
    pub(crate) fn has_repeated_fingerprints(&self) -> bool {
        self.ids.len() < self.fingerprints.len()
    }

    /// Looks `key` up, adding it unless `frozen`, and counts the lookup while open. A new id
    /// stores `text` as its key text when the table records keys.
    fn lookup(&mut self, key: u64, text: Option<&[u8]>, frozen: bool) -> Result<Lookup> {
        let id = self.resolve(key, text, frozen)?;
        if !frozen {
            self.count(id);
        }
        Ok(Lookup {
            id,
            out_of_vocabulary: id == OUT_OF_VOCABULARY_ID,
        })
    }

    /// Returns the id of `key` without counting the lookup: the known id, a new id (count 0)
    /// unless `frozen`, or [`OUT_OF_VOCABULARY_ID`] when frozen. A new id stores `text` as its
    /// key text when the table records keys.
    fn resolve(&mut self, key: u64, text: Option<&[u8]>, frozen: bool) -> Result<i32> {
        if frozen {
            return Ok(self.ids.get(&key).copied().unwrap_or(OUT_OF_VOCABULARY_ID));
        }
        let count = self.fingerprints.len();
        match self.ids.entry(key) {
            MapEntry::Occupied(occupied) => Ok(*occupied.get()),
            MapEntry::Vacant(vacant) => {
                if count >= self.max_entries {
                    return Err(Error::VocabularyFull {
                        table: self.name,
                        limit: self.max_entries,
                    });
                }
                // `count` < max_entries <= i32::MAX - 1, so the new id is at most i32::MAX.
                let id = FIRST_REAL_ID + count as i32;
                vacant.insert(id);
                self.fingerprints.push(key);
                self.counts.push(0);
                if let Some(keys) = &mut self.keys {
                    keys.push(text);
                }
                Ok(id)
            }
        }
    }

    /// Adds one lookup to the count of `id`; padding and out-of-vocabulary ids have no count.
    fn count(&mut self, id: i32) {
        if let Some(count) = usize::try_from(id - FIRST_REAL_ID)
            .ok()
            .and_then(|index| self.counts.get_mut(index))
        {
            *count = count.saturating_add(1);
        }
    }

    fn table_size(&self) -> usize {
        self.fingerprints.len() + FIRST_REAL_ID as usize
    }

    /// Returns a table of the entries seen at least `min_count` times that `keep` accepts (by
    /// index), numbered by `order`, and the new id of each old index (None if left out).
    fn reindexed(
        &self,
        order: IdOrder,
        min_count: u64,
        keep: impl Fn(usize) -> bool,
    ) -> (IdTable, Vec<Option<i32>>) {
        let entries = self.entries();
        let mut kept: Vec<usize> = (0..entries.len())
            .filter(|&index| entries[index].count >= min_count && keep(index))
            .collect();
        if order == IdOrder::Frequency {
            // A stable sort keeps first appearance among equal counts, so the order is unique.
            kept.sort_by(|&left, &right| entries[right].count.cmp(&entries[left].count));
        }
        let mut new_ids = vec![None; entries.len()];
        for (new_index, &old_index) in kept.iter().enumerate() {
            // No more entries than before, so the id fits in i32.
            new_ids[old_index] = Some(FIRST_REAL_ID + new_index as i32);
        }
        let entries: Vec<Entry> = kept.iter().map(|&index| entries[index]).collect();
        let keys = self.keys.as_ref().map(|keys| keys.select(&kept));
        (IdTable::from_entries(self.name, &entries, keys), new_ids)
    }
}

/// Order in which [`Vocabulary::reindexed`] numbers the entries it keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdOrder {
    /// By first appearance, as readers assign ids.
    Appearance,
    /// By descending count; ties keep the order of first appearance.
    Frequency,
}

impl std::str::FromStr for IdOrder {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "appearance" => Ok(IdOrder::Appearance),
            "frequency" => Ok(IdOrder::Frequency),
            _ => Err(Error::InvalidOption {
                name: "order",
                value: format!("{text:?}"),
                allowed: "\"frequency\" or \"appearance\"".to_string(),
            }),
        }
    }
}

/// Dense ids of queries, documents and query-document pairs.
#[derive(Debug, Clone)]
pub struct Vocabulary {
    pub(crate) queries: IdTable,
    pub(crate) documents: IdTable,
    pub(crate) pairs: IdTable,
    /// Query id and document id of each real pair id, at index `id - FIRST_REAL_ID`.
    pub(crate) pair_ends: Vec<PairEnds>,
    pub(crate) frozen: bool,
}

/// The dense query and document ids that a pair id joins.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PairEnds {
    pub query_id: i32,
    pub doc_id: i32,
}

impl Default for Vocabulary {
    fn default() -> Self {
        Self::new()
    }
}

impl Vocabulary {
    /// Creates an empty, open vocabulary that records no key texts.
    pub fn new() -> Self {
        Self::with_keys(false)
    }

    /// Creates an empty, open vocabulary that records the key text of each new query and
    /// document id when `keys` is true. Keys cost memory in proportion to their length.
    pub fn with_keys(keys: bool) -> Self {
        Vocabulary {
            queries: IdTable::new("query", keys),
            documents: IdTable::new("document", keys),
            pairs: IdTable::new("query-document pair", false),
            pair_ends: Vec::new(),
            frozen: false,
        }
    }

    /// Stops adding keys: from now on unknown keys get [`OUT_OF_VOCABULARY_ID`]. Key texts,
    /// which no longer grow, are moved into buffers of their exact size.
    pub fn freeze(&mut self) {
        self.frozen = true;
        for table in [&mut self.queries, &mut self.documents] {
            if let Some(keys) = &mut table.keys {
                keys.shrink_to_fit();
            }
        }
    }

    /// Returns true if unknown keys map to [`OUT_OF_VOCABULARY_ID`] instead of being added.
    pub fn is_frozen(&self) -> bool {
        self.frozen
    }

    /// Returns true if the vocabulary stores the key text of new query and document ids.
    pub fn records_keys(&self) -> bool {
        self.queries.records_keys()
    }

    /// Looks up the id of a query fingerprint, adding it unless the vocabulary is frozen.
    pub fn query_id(&mut self, fingerprint: u64) -> Result<Lookup> {
        self.queries.lookup(fingerprint, None, self.frozen)
    }

    /// Looks up the id of a document fingerprint, adding it unless the vocabulary is frozen.
    pub fn document_id(&mut self, fingerprint: u64) -> Result<Lookup> {
        self.documents.lookup(fingerprint, None, self.frozen)
    }

    /// Like [`Self::query_id`], and a new id stores `key`, the text that `fingerprint` was
    /// computed from, when the vocabulary records keys.
    pub fn query_id_with_key(&mut self, fingerprint: u64, key: Option<&[u8]>) -> Result<Lookup> {
        self.queries.lookup(fingerprint, key, self.frozen)
    }

    /// Like [`Self::document_id`], and a new id stores `key` when the vocabulary records keys.
    pub fn document_id_with_key(&mut self, fingerprint: u64, key: Option<&[u8]>) -> Result<Lookup> {
        self.documents.lookup(fingerprint, key, self.frozen)
    }

    /// Key text of a query id; None for padding, out-of-vocabulary and unknown ids, and for ids
    /// without a recorded key.
    pub fn query_key(&self, id: i32) -> Option<&[u8]> {
        self.queries.key(usize::try_from(id - FIRST_REAL_ID).ok()?)
    }

    /// Key text of a document id, as [`Self::query_key`].
    pub fn document_key(&self, id: i32) -> Option<&[u8]> {
        self.documents
            .key(usize::try_from(id - FIRST_REAL_ID).ok()?)
    }

    /// Heap memory of the stored key texts, in bytes.
    pub fn key_bytes(&self) -> usize {
        [&self.queries, &self.documents]
            .iter()
            .filter_map(|table| table.keys.as_ref())
            .map(KeyStore::heap_bytes)
            .sum()
    }

    /// Looks up the id of a pair fingerprint, adding it unless the vocabulary is frozen. A new
    /// pair records `query_id` and `doc_id`, the ids of its query and document, for [`Self::pair_ends`].
    pub fn pair_id(&mut self, fingerprint: u64, query_id: i32, doc_id: i32) -> Result<Lookup> {
        let id = self.resolve_pair(fingerprint, query_id, doc_id)?;
        self.count_pair(id);
        Ok(Lookup {
            id,
            out_of_vocabulary: id == OUT_OF_VOCABULARY_ID,
        })
    }

    /// Returns the id of a query fingerprint as [`Self::query_id_with_key`] does, but without
    /// counting the lookup; [`Self::count_query`] counts each use of the id.
    pub(crate) fn resolve_query(&mut self, fingerprint: u64, key: Option<&[u8]>) -> Result<i32> {
        self.queries.resolve(fingerprint, key, self.frozen)
    }

    /// Returns the id of a document fingerprint without counting the lookup.
    pub(crate) fn resolve_document(&mut self, fingerprint: u64, key: Option<&[u8]>) -> Result<i32> {
        self.documents.resolve(fingerprint, key, self.frozen)
    }

    /// Returns the id of a pair fingerprint without counting the lookup. A new pair records the
    /// ids of its query and document, as in [`Self::pair_id`].
    pub(crate) fn resolve_pair(
        &mut self,
        fingerprint: u64,
        query_id: i32,
        doc_id: i32,
    ) -> Result<i32> {
        let id = self.pairs.resolve(fingerprint, None, self.frozen)?;
        if self.pairs.len() > self.pair_ends.len() {
            self.pair_ends.push(PairEnds { query_id, doc_id });
        }
        Ok(id)
    }

    /// Counts one lookup of a query id while the vocabulary is open.
    pub(crate) fn count_query(&mut self, id: i32) {
        if !self.frozen {
            self.queries.count(id);
        }
    }

    /// Counts one lookup of a document id while the vocabulary is open.
    pub(crate) fn count_document(&mut self, id: i32) {
        if !self.frozen {
            self.documents.count(id);
        }
    }

    /// Counts one lookup of a pair id while the vocabulary is open.
    pub(crate) fn count_pair(&mut self, id: i32) {
        if !self.frozen {
            self.pairs.count(id);
        }
    }

    /// Query and document ids of each real pair id, in id order from [`FIRST_REAL_ID`].
    pub fn pair_ends(&self) -> &[PairEnds] {
        &self.pair_ends
    }

    /// Returns the id of a known pair fingerprint, or [`OUT_OF_VOCABULARY_ID`]; adds nothing.
    pub fn known_pair_id(&self, fingerprint: u64) -> i32 {
        self.pairs
            .ids
            .get(&fingerprint)
            .copied()
            .unwrap_or(OUT_OF_VOCABULARY_ID)
    }

    /// Returns a frozen copy with new ids: entries seen fewer than `min_count` times are left
    /// out, so they read as [`OUT_OF_VOCABULARY_ID`], and the others are numbered from
    /// [`FIRST_REAL_ID`] by `order`. A pair is also left out when its query or document is.
    pub fn reindexed(&self, order: IdOrder, min_count: u64) -> Vocabulary {
        let (queries, query_ids) = self.queries.reindexed(order, min_count, |_| true);
        let (documents, document_ids) = self.documents.reindexed(order, min_count, |_| true);
        // New id of an old id, or None when the entry was left out.
        let new_id = |ids: &[Option<i32>], old: i32| {
            usize::try_from(old - FIRST_REAL_ID)
                .ok()
                .and_then(|index| ids.get(index).copied().flatten())
        };
        let ends_kept = |index: usize| {
            let ends = self.pair_ends[index];
            new_id(&query_ids, ends.query_id).is_some()
                && new_id(&document_ids, ends.doc_id).is_some()
        };
        let (pairs, pair_ids) = self.pairs.reindexed(order, min_count, ends_kept);

        let mut pair_ends = vec![PairEnds::default(); pairs.len()];
        for (old_index, ends) in self.pair_ends.iter().enumerate() {
            let Some(pair) = pair_ids[old_index] else {
                continue;
            };
            // `ends_kept` accepted this pair, so both ends have new ids.
            pair_ends[(pair - FIRST_REAL_ID) as usize] = PairEnds {
                query_id: new_id(&query_ids, ends.query_id).unwrap_or(OUT_OF_VOCABULARY_ID),
                doc_id: new_id(&document_ids, ends.doc_id).unwrap_or(OUT_OF_VOCABULARY_ID),
            };
        }
        Vocabulary {
            queries,
            documents,
            pairs,
            pair_ends,
            frozen: true,
        }
    }

    /// Rows that an embedding table over `query_id` needs: real queries plus padding and
    /// out-of-vocabulary rows.
    pub fn query_table_size(&self) -> usize {
        self.queries.table_size()
    }

    /// Rows that an embedding table over `doc_id` needs.
    pub fn document_table_size(&self) -> usize {
        self.documents.table_size()
    }

    /// Rows that an embedding table over `query_doc_id` needs.
    pub fn pair_table_size(&self) -> usize {
        self.pairs.table_size()
    }

    /// Number of real query-document pairs.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Returns true if the vocabulary contains no query-document pair.
    pub fn is_empty(&self) -> bool {
        self.pairs.fingerprints.is_empty()
    }
}

#[path = "vocabulary_arrow.rs"]
mod arrow;

#[path = "vocabulary_keys.rs"]
mod keys;

pub use arrow::{
    FORMAT_VERSION, FORMAT_VERSION_KEY, FROZEN_KEY, KEYS_KEY, PREVIOUS_FORMAT_VERSION,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_first_appearance() {
        let mut vocabulary = Vocabulary::new();
        let keys = [30u64, 10, 30, 20, 10];
        let ids: Vec<i32> = keys
            .iter()
            .map(|&key| vocabulary.document_id(key).unwrap().id)
            .collect();
        assert_eq!(ids, vec![2, 3, 2, 4, 3]);
        assert_eq!(vocabulary.document_table_size(), 3 + 2);
        assert_eq!(vocabulary.query_table_size(), 2);
    }

    #[test]
    fn reindexed_orders_by_count() {
        let mut vocabulary = Vocabulary::new();
        for key in [10u64, 20, 20, 30, 30, 30, 40, 40] {
            vocabulary.document_id(key).unwrap();
        }
        // Counts: 10 once, 20 twice, 30 three times, 40 twice (after 20, so it sorts after 20).
        let mut by_count = vocabulary.reindexed(IdOrder::Frequency, 1);
        assert!(by_count.is_frozen());
        let ids: Vec<i32> = [30u64, 20, 40, 10]
            .iter()
            .map(|&key| by_count.document_id(key).unwrap().id)
            .collect();
        assert_eq!(ids, vec![2, 3, 4, 5]);

        let mut frequent = vocabulary.reindexed(IdOrder::Frequency, 2);
        assert_eq!(frequent.document_id(10).unwrap().id, OUT_OF_VOCABULARY_ID);
        assert_eq!(frequent.document_id(40).unwrap().id, 4);
        assert_eq!(frequent.document_table_size(), 3 + 2);

        let mut in_order = vocabulary.reindexed(IdOrder::Appearance, 2);
        let ids: Vec<i32> = [20u64, 30, 40, 10]
            .iter()
            .map(|&key| in_order.document_id(key).unwrap().id)
            .collect();
        assert_eq!(ids, vec![2, 3, 4, OUT_OF_VOCABULARY_ID]);
    }

    #[test]
    fn reindexed_maps_pair_ends() {
        let mut vocabulary = Vocabulary::new();
        // Sessions as (query, documents): query 7 once with document 1, query 8 twice with 2.
        for (query, documents) in [(7u64, [1u64]), (8, [2]), (8, [2])] {
            let query_id = vocabulary.query_id(query).unwrap().id;
            for document in documents {
                let doc_id = vocabulary.document_id(document).unwrap().id;
                let pair = pair_fingerprint(query, document);
                vocabulary.pair_id(pair, query_id, doc_id).unwrap();
            }
        }
        let by_count = vocabulary.reindexed(IdOrder::Frequency, 1);
        // Query 8, document 2 and their pair come first now.
        assert_eq!(
            by_count.pair_ends(),
            &[
                PairEnds {
                    query_id: 2,
                    doc_id: 2
                },
                PairEnds {
                    query_id: 3,
                    doc_id: 3
                }
            ]
        );
        assert_eq!(by_count.known_pair_id(pair_fingerprint(8, 2)), 2);

        let frequent = vocabulary.reindexed(IdOrder::Frequency, 2);
        assert_eq!(frequent.len(), 1);
        assert_eq!(
            frequent.known_pair_id(pair_fingerprint(7, 1)),
            OUT_OF_VOCABULARY_ID
        );
    }

    #[test]
    fn pair_with_dropped_query_is_dropped() {
        let mut vocabulary = Vocabulary::new();
        // One session that lists document 5 twice: the pair is met twice, its query once.
        let query_id = vocabulary.query_id(9).unwrap().id;
        for _ in 0..2 {
            let doc_id = vocabulary.document_id(5).unwrap().id;
            vocabulary
                .pair_id(pair_fingerprint(9, 5), query_id, doc_id)
                .unwrap();
        }
        let frequent = vocabulary.reindexed(IdOrder::Frequency, 2);
        assert_eq!(frequent.query_table_size(), 2);
        assert_eq!(frequent.document_table_size(), 3);
        assert!(frequent.is_empty());
    }

    #[test]
    fn id_order_parses() {
        assert_eq!("frequency".parse::<IdOrder>().unwrap(), IdOrder::Frequency);
        assert_eq!(
            "appearance".parse::<IdOrder>().unwrap(),
            IdOrder::Appearance
        );
        let error = "count".parse::<IdOrder>().unwrap_err().to_string();
        assert_eq!(
            error,
            "invalid order \"count\": expected \"frequency\" or \"appearance\""
        );
    }

    #[test]
    fn frozen_vocabulary_maps_unknown_to_one() {
        let mut vocabulary = Vocabulary::new();
        assert_eq!(vocabulary.query_id(7).unwrap().id, 2);
        vocabulary.freeze();
        assert!(vocabulary.is_frozen());
        let unknown = vocabulary.query_id(8).unwrap();
        assert_eq!(unknown.id, OUT_OF_VOCABULARY_ID);
        assert!(unknown.out_of_vocabulary);
        let known = vocabulary.query_id(7).unwrap();
        assert_eq!(known.id, 2);
        assert!(!known.out_of_vocabulary);
        assert_eq!(vocabulary.query_table_size(), 3);
    }

    #[test]
    fn full_table_is_an_error() {
        // A real table reaches its limit only after 2^31 - 2 keys, so this one gets a limit of 2.
        let mut table = IdTable {
            max_entries: 2,
            ..IdTable::new("query", false)
        };
        assert_eq!(table.lookup(10, None, false).unwrap().id, 2);
        assert_eq!(table.lookup(11, None, false).unwrap().id, 3);
        assert_eq!(table.lookup(10, None, false).unwrap().id, 2);
        let error = table.lookup(12, None, false).unwrap_err();
        assert!(
            matches!(
                error,
                Error::VocabularyFull {
                    table: "query",
                    limit: 2
                }
            ),
            "{error:?}"
        );
    }

    #[test]
    fn fingerprints_are_pinned() {
        // Fingerprints must not change between versions: shards ingested separately, and saved
        // vocabularies, rely on them. xxh3-64 of empty input is the reference value of XXH3.
        assert_eq!(xxh3_64(b""), 0x2d06_8005_38d3_94c2);
        assert_eq!(QUERY_SEED, 0x0000_0079_7265_7571);
        assert_eq!(DOCUMENT_SEED, 0x746e_656d_7563_6f64);
        let query = query_fingerprint(b"98435_1");
        let document = document_fingerprint(b"688835");
        assert_eq!(query, 0x4345_d85c_2b54_c5f8);
        assert_eq!(document, 0x5865_9af5_3b05_9944);
        assert_eq!(query_fingerprint(b""), 0x02f9_6b2f_7d6e_7fc5);
        assert_eq!(pair_fingerprint(query, document), 0x7a04_882a_b499_2cbd);
        assert_ne!(query_fingerprint(b"42"), document_fingerprint(b"42"));
    }

    #[test]
    fn text_fingerprint_joins_with_zero_byte() {
        let joined = document_fingerprint(b"201\x01202\x00301");
        assert_eq!(text_document_fingerprint(b"201\x01202", b"301"), joined);
        assert_ne!(
            text_document_fingerprint(b"201", b"202"),
            text_document_fingerprint(b"20", b"1202")
        );
    }

    #[test]
    fn keys_stored_for_new_ids_only() {
        let mut vocabulary = Vocabulary::with_keys(true);
        assert!(vocabulary.records_keys());
        let first = vocabulary.query_id_with_key(70, Some(b"q70")).unwrap();
        // A second lookup of the same fingerprint keeps the first key text.
        let again = vocabulary.query_id_with_key(70, Some(b"other")).unwrap();
        assert_eq!(first.id, again.id);
        let without = vocabulary.query_id_with_key(71, None).unwrap();
        let document = vocabulary.document_id_with_key(70, Some(b"d70")).unwrap();
        assert_eq!(vocabulary.query_key(first.id), Some(&b"q70"[..]));
        assert_eq!(vocabulary.query_key(without.id), None);
        assert_eq!(vocabulary.document_key(document.id), Some(&b"d70"[..]));
        assert_eq!(vocabulary.query_key(PADDING_ID), None);
        assert_eq!(vocabulary.query_key(OUT_OF_VOCABULARY_ID), None);
        assert_eq!(vocabulary.query_key(9), None);

        let before = vocabulary.key_bytes();
        vocabulary.freeze();
        assert!(vocabulary.key_bytes() <= before);
        assert_eq!(vocabulary.query_key(first.id), Some(&b"q70"[..]));
        let unknown = vocabulary.query_id_with_key(72, Some(b"q72")).unwrap();
        assert_eq!(unknown.id, OUT_OF_VOCABULARY_ID);
        assert_eq!(vocabulary.query_table_size(), 4);
    }

    #[test]
    fn vocabulary_without_keys_stores_none() {
        let mut vocabulary = Vocabulary::new();
        assert!(!vocabulary.records_keys());
        let id = vocabulary.query_id_with_key(70, Some(b"q70")).unwrap().id;
        assert_eq!(vocabulary.query_key(id), None);
        assert_eq!(vocabulary.key_bytes(), 0);
    }

    #[test]
    fn reindexed_keeps_keys_with_ids() {
        let mut vocabulary = Vocabulary::with_keys(true);
        for (fingerprint, key) in [(10u64, &b"ten"[..]), (20, b"twenty"), (20, b"twenty")] {
            vocabulary
                .document_id_with_key(fingerprint, Some(key))
                .unwrap();
        }
        let by_count = vocabulary.reindexed(IdOrder::Frequency, 1);
        assert!(by_count.records_keys());
        assert_eq!(by_count.document_key(2), Some(&b"twenty"[..]));
        assert_eq!(by_count.document_key(3), Some(&b"ten"[..]));
        let frequent = vocabulary.reindexed(IdOrder::Frequency, 2);
        assert_eq!(frequent.document_key(2), Some(&b"twenty"[..]));
        assert_eq!(frequent.document_key(3), None);
    }

    #[test]
    fn known_pair_id_adds_nothing() {
        let mut vocabulary = Vocabulary::new();
        assert_eq!(vocabulary.pair_id(40, 2, 2).unwrap().id, 2);
        assert_eq!(vocabulary.known_pair_id(40), 2);
        assert_eq!(vocabulary.known_pair_id(41), OUT_OF_VOCABULARY_ID);
        assert_eq!(vocabulary.len(), 1);
    }

    #[test]
    fn query_doc_hash_is_31_bits() {
        for pair in [0u64, 1, u64::MAX, 1 << 63, 0x1234_5678_9abc_def0] {
            let hash = query_doc_hash(pair);
            assert!(hash >= 0);
            assert_eq!(hash as u64, pair >> 33);
        }
        assert_eq!(query_doc_hash(u64::MAX), i32::MAX);
    }

    #[test]
    fn pair_fingerprint_hashes_le_bytes() {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&5u64.to_le_bytes());
        bytes.extend_from_slice(&9u64.to_le_bytes());
        assert_eq!(pair_fingerprint(5, 9), xxh3_64(&bytes));
        assert_ne!(pair_fingerprint(5, 9), pair_fingerprint(9, 5));
    }
}
