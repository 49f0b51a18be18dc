//! An index from string keys to `u32` positions in a table that owns the
//! keys. The index stores only the positions: a lookup hashes the key it
//! is given and compares it with the owner's key through a `key_of`
//! callback, so a 100,000-entry table keeps no second copy of any key and
//! a lookup by a borrowed slice allocates nothing.
//!
//! Used by [`crate::catalog::Catalog`] (metadata by key rest) and by the
//! TUI's row table (rows by key).

use std::hash::BuildHasher;

use hashbrown::HashTable;

/// Positions by key; the keys live in the caller's table.
///
/// Invariant (the caller's to keep): `key_of(i)` returns the same key for
/// a position for as long as it is in the index, and no two positions
/// have the same key. Every method that may compare or rehash entries
/// takes that `key_of`.
#[derive(Debug, Clone, Default)]
pub struct KeyIndex {
    table: HashTable<u32>,
    hasher: std::hash::RandomState,
}

impl KeyIndex {
    pub fn new() -> KeyIndex {
        KeyIndex::default()
    }

    /// The position whose key is `key`.
    pub fn find<'a>(&self, key: &str, key_of: impl Fn(u32) -> &'a str) -> Option<u32> {
        let hash = self.hasher.hash_one(key);
        self.table.find(hash, |&i| key_of(i) == key).copied()
    }

    /// Adds `idx` under `key`, which must not be in the index yet (check
    /// with [`KeyIndex::find`] first); `key_of` rehashes entries when the
    /// table grows.
    pub fn insert_unique<'a>(&mut self, key: &str, idx: u32, key_of: impl Fn(u32) -> &'a str) {
        let hash = self.hasher.hash_one(key);
        let hasher = &self.hasher;
        self.table
            .insert_unique(hash, idx, |&i| hasher.hash_one(key_of(i)));
    }

    /// Removes `key`; returns the position it had.
    pub fn remove<'a>(&mut self, key: &str, key_of: impl Fn(u32) -> &'a str) -> Option<u32> {
        let hash = self.hasher.hash_one(key);
        let entry = self.table.find_entry(hash, |&i| key_of(i) == key).ok()?;
        Some(entry.remove().0)
    }

    pub fn clear(&mut self) {
        self.table.clear();
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_inserts_and_removes_by_borrowed_key() {
        let keys: Vec<String> = (0..1000).map(|n| format!("uploads/{n:04}.jpg")).collect();
        let key_of = |i: u32| keys[i as usize].as_str();
        let mut index = KeyIndex::new();
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(index.find(k, key_of), None);
            // Growing rehashes earlier entries through key_of.
            index.insert_unique(k, i as u32, key_of);
        }
        assert_eq!(index.len(), 1000);
        // A slice of a longer string finds the same entry.
        let long = "xuploads/0042.jpgx";
        assert_eq!(index.find(&long[1..long.len() - 1], key_of), Some(42));
        assert_eq!(index.find("uploads/1000.jpg", key_of), None);

        assert_eq!(index.remove("uploads/0042.jpg", key_of), Some(42));
        assert_eq!(index.remove("uploads/0042.jpg", key_of), None);
        assert_eq!(index.find("uploads/0042.jpg", key_of), None);
        assert_eq!(index.find("uploads/0043.jpg", key_of), Some(43));
        assert_eq!(index.len(), 999);

        index.clear();
        assert!(index.is_empty());
        assert_eq!(index.find("uploads/0043.jpg", key_of), None);
    }
}
