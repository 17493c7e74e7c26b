//! Key texts of the real ids of one table, kept in one byte buffer with end offsets, so that a
//! key costs its length plus one offset and one allocation is shared by every key.

/// Key text of each real id, at index `id - FIRST_REAL_ID`. An id whose key was not given (an
/// entry loaded from a file without keys, or added by a caller that passed none) has no key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct KeyStore {
    bytes: Vec<u8>,
    /// End of each key in `bytes`; a key starts where the previous one ends.
    ends: Vec<usize>,
    /// Indices of the ids without a key, in increasing order. Usually empty.
    missing: Vec<usize>,
}

impl KeyStore {
    /// Appends the key of the next id, copying its bytes once.
    pub(crate) fn push(&mut self, key: Option<&[u8]>) {
        match key {
            Some(key) => self.bytes.extend_from_slice(key),
            None => self.missing.push(self.ends.len()),
        }
        self.ends.push(self.bytes.len());
    }

    /// Number of ids, with or without a key.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    /// Key of index `index`; None when the id has no key or the index is out of range.
    pub(crate) fn get(&self, index: usize) -> Option<&[u8]> {
        let end = *self.ends.get(index)?;
        if self.missing.binary_search(&index).is_ok() {
            return None;
        }
        let start = index
            .checked_sub(1)
            .map_or(0, |previous| self.ends[previous]);
        Some(&self.bytes[start..end])
    }

    /// Returns a store of the keys at `indices`, in that order.
    pub(crate) fn select(&self, indices: &[usize]) -> KeyStore {
        let mut selected = KeyStore::default();
        let bytes = indices
            .iter()
            .map(|&index| self.get(index).map_or(0, <[u8]>::len))
            .sum();
        selected.bytes.reserve_exact(bytes);
        selected.ends.reserve_exact(indices.len());
        for &index in indices {
            selected.push(self.get(index));
        }
        selected
    }

    /// Releases the capacity that growth left beyond the stored keys.
    pub(crate) fn shrink_to_fit(&mut self) {
        self.bytes.shrink_to_fit();
        self.ends.shrink_to_fit();
        self.missing.shrink_to_fit();
    }

    /// Heap memory of the store, in bytes (capacities, not lengths).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.bytes.capacity()
            + (self.ends.capacity() + self.missing.capacity()) * std::mem::size_of::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_with_gaps() {
        let mut store = KeyStore::default();
        store.push(Some(b"1,2,3"));
        store.push(None);
        store.push(Some(b""));
        store.push(Some(b"abc"));
        assert_eq!(store.len(), 4);
        assert_eq!(store.get(0), Some(&b"1,2,3"[..]));
        assert_eq!(store.get(1), None);
        assert_eq!(store.get(2), Some(&b""[..]));
        assert_eq!(store.get(3), Some(&b"abc"[..]));
        assert_eq!(store.get(4), None);
        // One buffer of 8 bytes contains every key, and a missing key takes no bytes.
        assert_eq!(store.bytes, b"1,2,3abc");
        assert_eq!(store.ends, vec![5, 5, 5, 8]);
    }

    #[test]
    fn select_reorders_and_keeps_missing() {
        let mut store = KeyStore::default();
        for key in [Some(&b"q1"[..]), None, Some(b"q333")] {
            store.push(key);
        }
        let selected = store.select(&[2, 1, 0]);
        assert_eq!(selected.len(), 3);
        assert_eq!(selected.get(0), Some(&b"q333"[..]));
        assert_eq!(selected.get(1), None);
        assert_eq!(selected.get(2), Some(&b"q1"[..]));
        assert_eq!(selected.bytes, b"q333q1");
        assert!(store.select(&[]).len() == 0);
    }
}
