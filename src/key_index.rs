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

/// Shards of the index: a table grows by rehashing one shard, never every
/// key at once, so an insert into a million-key index costs at most a
/// 256th of a full rehash (the TUI files its rows on the UI thread,
/// where one whole rehash was a 200 ms stall).
const SHARDS: usize = 256;

/// Positions by key; the keys live in the caller's table.
///
/// Invariant (the caller's to keep): `key_of(i)` returns the same key for
/// a position for as long as it is in the index, and no two positions
/// have the same key. Every method that may compare or rehash entries
/// takes that `key_of`.
#[derive(Debug, Clone, Default)]
pub struct KeyIndex {
    /// Empty until the first insert, then [`SHARDS`] tables.
    shards: Vec<HashTable<u32>>,
    hasher: std::hash::RandomState,
    len: usize,
}

/// The shard of a hash: bits the tables use for neither the bucket (low
/// bits) nor the control byte (top seven).
fn shard_of(hash: u64) -> usize {
    (hash >> 32) as usize % SHARDS
}

/// Room one shard needs so that `additional` keys, hashed at random,
/// overflow none of the [`SHARDS`].
fn per_shard_room(additional: usize) -> usize {
    let mean = additional / SHARDS;
    mean + 6 * (mean as f64).sqrt().ceil() as usize + 8
}

impl KeyIndex {
    pub fn new() -> KeyIndex {
        KeyIndex::default()
    }

    /// The position whose key is `key`.
    pub fn find<'a>(&self, key: &str, key_of: impl Fn(u32) -> &'a str) -> Option<u32> {
        let hash = self.hasher.hash_one(key);
        self.shards
            .get(shard_of(hash))?
            .find(hash, |&i| key_of(i) == key)
            .copied()
    }

    /// Adds `idx` under `key`, which must not be in the index yet (check
    /// with [`KeyIndex::find`] first); `key_of` rehashes a shard's entries
    /// when it grows.
    pub fn insert_unique<'a>(&mut self, key: &str, idx: u32, key_of: impl Fn(u32) -> &'a str) {
        if self.shards.is_empty() {
            self.shards.resize_with(SHARDS, HashTable::new);
        }
        let hash = self.hasher.hash_one(key);
        let hasher = &self.hasher;
        self.shards[shard_of(hash)].insert_unique(hash, idx, |&i| hasher.hash_one(key_of(i)));
        self.len += 1;
    }

    /// Removes `key`; returns the position it had.
    pub fn remove<'a>(&mut self, key: &str, key_of: impl Fn(u32) -> &'a str) -> Option<u32> {
        let hash = self.hasher.hash_one(key);
        let shard = self.shards.get_mut(shard_of(hash))?;
        let entry = shard.find_entry(hash, |&i| key_of(i) == key).ok()?;
        self.len -= 1;
        Some(entry.remove().0)
    }

    /// Room for `additional` more keys, so that filing them never grows a
    /// table (each growth rehashes its entries).
    pub fn reserve<'a>(&mut self, additional: usize, key_of: impl Fn(u32) -> &'a str + Copy) {
        if self.shards.is_empty() {
            self.shards.resize_with(SHARDS, HashTable::new);
        }
        // A random hasher spreads keys over the shards as a multinomial:
        // the fullest of 256 shards sits a few standard deviations over
        // the mean. Six of them (plus a floor for tiny tables) leave a
        // shard that still grows out of reach (below 1e-9 a fill); the
        // mean plus an eighth grew one in about 33 fills of 20,000 keys.
        let per_shard = per_shard_room(additional);
        for s in &mut self.shards {
            s.reserve(per_shard, |&i| self.hasher.hash_one(key_of(i)));
        }
    }

    pub fn clear(&mut self) {
        for s in &mut self.shards {
            s.clear();
        }
        self.len = 0;
    }

    /// Keys the tables hold room for without growing.
    pub fn capacity(&self) -> usize {
        self.shards.iter().map(HashTable::capacity).sum()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The most entries any one shard holds: what one growth rehashes at
    /// most.
    pub fn largest_shard(&self) -> usize {
        self.shards.iter().map(HashTable::len).max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reserved index files that many keys without growing, whatever
    /// the hasher's seed: each round draws a fresh random hasher.
    #[test]
    fn a_reserved_index_never_grows_under_any_seed() {
        let n = 20_000;
        let keys: Vec<String> = (0..n).map(|i| format!("uploads/{i:06}.jpg")).collect();
        let key_of = |i: u32| keys[i as usize].as_str();
        for round in 0..40 {
            let mut index = KeyIndex::new();
            index.reserve(n, key_of);
            let before = index.capacity();
            for (i, k) in keys.iter().enumerate() {
                index.insert_unique(k, i as u32, key_of);
            }
            assert_eq!(index.capacity(), before, "round {round} grew a shard");
            // Slack within one doubling of each shard's table.
            assert!(before < 3 * n, "{before}");
        }
    }

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
        // Spread over the shards: no growth rehashes much of the index.
        assert!(index.largest_shard() < 30, "{}", index.largest_shard());

        index.clear();
        assert!(index.is_empty());
        assert_eq!(index.len(), 0);
        assert_eq!(index.find("uploads/0043.jpg", key_of), None);
    }
}
