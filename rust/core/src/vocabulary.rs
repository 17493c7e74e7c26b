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

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed, Xxh3};

use crate::error::{Error, Result};

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
    /// The entry of each real id, at index `id - FIRST_REAL_ID`.
    pub(crate) entries: Vec<Entry>,
    max_entries: usize,
}

/// Result of looking a key up in a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lookup {
    pub id: i32,
    pub out_of_vocabulary: bool,
}

impl IdTable {
    fn new(name: &'static str) -> Self {
        IdTable {
            name,
            ids: FingerprintMap::default(),
            entries: Vec::new(),
            max_entries: MAX_ENTRIES,
        }
    }

    /// Creates a table whose real ids are the entries in order, from [`FIRST_REAL_ID`].
    /// The caller checks that the fingerprints are distinct and that there are not too many.
    pub(crate) fn from_entries(name: &'static str, entries: Vec<Entry>) -> Self {
        let mut ids = FingerprintMap::with_capacity_and_hasher(entries.len(), Default::default());
        for (index, entry) in entries.iter().enumerate() {
            // The caller keeps `entries` within MAX_ENTRIES, so the id fits in i32.
            ids.insert(entry.fingerprint, FIRST_REAL_ID + index as i32);
        }
        IdTable {
            name,
            ids,
            entries,
            max_entries: MAX_ENTRIES,
        }
    }

    fn lookup(&mut self, key: u64, frozen: bool) -> Result<Lookup> {
        if let Some(&id) = self.ids.get(&key) {
            if !frozen {
                // Ids in the map are FIRST_REAL_ID + index of their entry.
                let entry = &mut self.entries[(id - FIRST_REAL_ID) as usize];
                entry.count = entry.count.saturating_add(1);
            }
            return Ok(Lookup {
                id,
                out_of_vocabulary: false,
            });
        }
        if frozen {
            return Ok(Lookup {
                id: OUT_OF_VOCABULARY_ID,
                out_of_vocabulary: true,
            });
        }

        let count = self.ids.len();
        if count >= self.max_entries {
            return Err(Error::VocabularyFull {
                table: self.name,
                limit: self.max_entries,
            });
        }
        // `count` < max_entries <= i32::MAX - 1, so the new id is at most i32::MAX.
        let id = FIRST_REAL_ID + count as i32;
        self.ids.insert(key, id);
        self.entries.push(Entry {
            fingerprint: key,
            count: 1,
        });
        Ok(Lookup {
            id,
            out_of_vocabulary: false,
        })
    }

    fn table_size(&self) -> usize {
        self.ids.len() + FIRST_REAL_ID as usize
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// Creates an empty, open vocabulary.
    pub fn new() -> Self {
        Vocabulary {
            queries: IdTable::new("query"),
            documents: IdTable::new("document"),
            pairs: IdTable::new("query-document pair"),
            pair_ends: Vec::new(),
            frozen: false,
        }
    }

    /// Stops adding keys: from now on unknown keys get [`OUT_OF_VOCABULARY_ID`].
    pub fn freeze(&mut self) {
        self.frozen = true;
    }

    /// Returns true if unknown keys map to [`OUT_OF_VOCABULARY_ID`] instead of being added.
    pub fn is_frozen(&self) -> bool {
        self.frozen
    }

    /// Looks up the id of a query fingerprint, adding it unless the vocabulary is frozen.
    pub fn query_id(&mut self, fingerprint: u64) -> Result<Lookup> {
        self.queries.lookup(fingerprint, self.frozen)
    }

    /// Looks up the id of a document fingerprint, adding it unless the vocabulary is frozen.
    pub fn document_id(&mut self, fingerprint: u64) -> Result<Lookup> {
        self.documents.lookup(fingerprint, self.frozen)
    }

    /// Looks up the id of a pair fingerprint, adding it unless the vocabulary is frozen. A new
    /// pair records `query_id` and `doc_id`, the ids of its query and document, for [`Self::pair_ends`].
    pub fn pair_id(&mut self, fingerprint: u64, query_id: i32, doc_id: i32) -> Result<Lookup> {
        let lookup = self.pairs.lookup(fingerprint, self.frozen)?;
        if self.pairs.entries.len() > self.pair_ends.len() {
            self.pair_ends.push(PairEnds { query_id, doc_id });
        }
        Ok(lookup)
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
        self.pairs.ids.len()
    }

    /// Returns true if the vocabulary contains no query-document pair.
    pub fn is_empty(&self) -> bool {
        self.pairs.ids.is_empty()
    }
}

#[path = "vocabulary_arrow.rs"]
mod arrow;

pub use arrow::{FORMAT_VERSION, FORMAT_VERSION_KEY, FROZEN_KEY};

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
            ..IdTable::new("query")
        };
        assert_eq!(table.lookup(10, false).unwrap().id, 2);
        assert_eq!(table.lookup(11, false).unwrap().id, 3);
        assert_eq!(table.lookup(10, false).unwrap().id, 2);
        let error = table.lookup(12, false).unwrap_err();
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
