//! The state commitment: state keys fall into 65,536 buckets by the first two bytes of their
//! SHA-256; a bucket's hash covers its sorted entries; the root is a complete binary Merkle tree
//! over the bucket hashes. Updating a bucket costs 16 node hashes.

use std::collections::BTreeMap;

use borsh::{BorshDeserialize, BorshSerialize};
use carechain_crypto::{Hash, merkle::node_hash, sha256, sha256_parts};

/// Number of buckets.
pub const BUCKETS: usize = 1 << 16;
const DEPTH: usize = 16;

/// The bucket a state key belongs to.
pub fn bucket_of(key: &[u8]) -> u16 {
    let h = sha256(key);
    u16::from_be_bytes([h.0[0], h.0[1]])
}

/// Hash of a bucket from its sorted `(key, value hash)` pairs; the empty bucket hashes to zero.
pub fn bucket_hash<'a>(entries: impl IntoIterator<Item = (&'a [u8], Hash)>) -> Hash {
    let mut buf = vec![0x02u8];
    let mut any = false;
    for (k, vh) in entries {
        any = true;
        buf.extend_from_slice(&(k.len() as u32).to_le_bytes());
        buf.extend_from_slice(k);
        buf.extend_from_slice(&vh.0);
    }
    if any { sha256(&buf) } else { Hash::ZERO }
}

/// The Merkle tree over all bucket hashes, kept in memory (4 MiB).
#[derive(Clone)]
pub struct StateCommitment {
    /// levels[0] = bucket hashes, levels[16] = [root].
    levels: Vec<Vec<Hash>>,
}

impl Default for StateCommitment {
    fn default() -> Self {
        StateCommitment::empty()
    }
}

impl StateCommitment {
    /// The commitment of empty state.
    pub fn empty() -> StateCommitment {
        let mut levels = Vec::with_capacity(DEPTH + 1);
        let mut h = Hash::ZERO;
        let mut width = BUCKETS;
        for _ in 0..=DEPTH {
            levels.push(vec![h; width]);
            h = node_hash(&h, &h);
            width /= 2;
        }
        StateCommitment { levels }
    }

    /// Builds the tree from stored non-empty bucket hashes.
    pub fn from_buckets(buckets: impl IntoIterator<Item = (u16, Hash)>) -> StateCommitment {
        let mut c = StateCommitment::empty();
        let updates: BTreeMap<u16, Hash> = buckets.into_iter().collect();
        c.apply(&updates);
        c
    }

    /// The root.
    pub fn root(&self) -> Hash {
        self.levels[DEPTH][0]
    }

    /// A bucket's hash.
    pub fn bucket(&self, b: u16) -> Hash {
        self.levels[0][usize::from(b)]
    }

    /// The root that would result from `updates`, without changing `self`.
    pub fn root_with(&self, updates: &BTreeMap<u16, Hash>) -> Hash {
        if updates.is_empty() {
            return self.root();
        }
        // The changed nodes of one level, sorted by index (a BTreeMap iterates in order, and
        // parents of sorted nodes are sorted); a sibling not in the list is read from `self`.
        let mut layer: Vec<(usize, Hash)> =
            updates.iter().map(|(b, h)| (usize::from(*b), *h)).collect();
        let mut next = Vec::with_capacity(layer.len());
        for level in 0..DEPTH {
            next.clear();
            let mut i = 0;
            while i < layer.len() {
                let (index, hash) = layer[i];
                let (left, right) = if index % 2 == 1 {
                    (self.levels[level][index - 1], hash)
                } else if layer.get(i + 1).is_some_and(|(j, _)| *j == index + 1) {
                    i += 1;
                    (hash, layer[i].1)
                } else {
                    (hash, self.levels[level][index + 1])
                };
                next.push((index / 2, node_hash(&left, &right)));
                i += 1;
            }
            std::mem::swap(&mut layer, &mut next);
        }
        layer.first().map_or_else(|| self.root(), |(_, h)| *h)
    }

    /// Applies bucket updates.
    pub fn apply(&mut self, updates: &BTreeMap<u16, Hash>) {
        for (&b, &h) in updates {
            self.levels[0][usize::from(b)] = h;
        }
        let mut dirty: Vec<usize> = updates.keys().map(|b| usize::from(*b)).collect();
        for level in 0..DEPTH {
            let mut parents: Vec<usize> = dirty.iter().map(|i| i / 2).collect();
            parents.dedup();
            for &p in &parents {
                let h = node_hash(&self.levels[level][p * 2], &self.levels[level][p * 2 + 1]);
                self.levels[level + 1][p] = h;
            }
            dirty = parents;
        }
    }

    /// The sibling path of a bucket, from the bucket level up.
    pub fn path(&self, b: u16) -> Vec<Hash> {
        let mut i = usize::from(b);
        let mut out = Vec::with_capacity(DEPTH);
        for level in 0..DEPTH {
            out.push(self.levels[level][i ^ 1]);
            i /= 2;
        }
        out
    }
}

/// Proof that a key has a given value (or is absent) under a state root.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct StateProof {
    /// The bucket of the key.
    pub bucket: u16,
    /// All `(key, value hash)` pairs of the bucket, sorted by key.
    pub entries: Vec<(Vec<u8>, Hash)>,
    /// Sibling hashes from the bucket up to the root.
    pub path: Vec<Hash>,
}

impl StateProof {
    /// Checks the proof against `root` and returns the hash of the value under `key`
    /// (`None` if the proof shows the key is absent).
    pub fn verify(&self, root: &Hash, key: &[u8]) -> Result<Option<Hash>, &'static str> {
        if bucket_of(key) != self.bucket {
            return Err("key is not in the proven bucket");
        }
        if self.path.len() != DEPTH {
            return Err("wrong path length");
        }
        if self.entries.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err("bucket entries are not strictly sorted");
        }
        if self
            .entries
            .iter()
            .any(|(k, _)| bucket_of(k) != self.bucket)
        {
            return Err("an entry does not belong to the bucket");
        }
        let mut h = bucket_hash(self.entries.iter().map(|(k, v)| (k.as_slice(), *v)));
        let mut i = usize::from(self.bucket);
        for sib in &self.path {
            h = if i & 1 == 0 {
                node_hash(&h, sib)
            } else {
                node_hash(sib, &h)
            };
            i /= 2;
        }
        if h != *root {
            return Err("proof does not lead to the state root");
        }
        Ok(self
            .entries
            .iter()
            .find(|(k, _)| k.as_slice() == key)
            .map(|(_, v)| *v))
    }
}

/// Hash of a stored value, as committed in its bucket.
pub fn value_hash(value: &[u8]) -> Hash {
    sha256_parts(&[b"\x03", value])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_with_equals_apply() {
        let mut c = StateCommitment::empty();
        let empty_root = c.root();
        let mut u = BTreeMap::new();
        u.insert(5u16, sha256(b"a"));
        u.insert(65535u16, sha256(b"b"));
        u.insert(4u16, sha256(b"c"));
        let predicted = c.root_with(&u);
        c.apply(&u);
        assert_eq!(predicted, c.root());
        assert_ne!(predicted, empty_root);
        let rebuilt = StateCommitment::from_buckets(u.clone());
        assert_eq!(rebuilt.root(), c.root());
    }

    proptest::proptest! {
        /// The predicted root equals the root after applying, over any committed buckets and
        /// any updates (siblings, neighbours at both ends, overwrites of committed buckets).
        #[test]
        fn root_with_equals_apply_for_any_updates(
            committed in proptest::collection::btree_map(proptest::prelude::any::<u16>(), proptest::prelude::any::<[u8; 32]>(), 0..64),
            updates in proptest::collection::btree_map(proptest::prelude::any::<u16>(), proptest::prelude::any::<[u8; 32]>(), 0..64),
            siblings in proptest::collection::vec(proptest::prelude::any::<u16>(), 0..16),
        ) {
            let mut c = StateCommitment::from_buckets(committed.into_iter().map(|(b, h)| (b, Hash(h))));
            let mut u: BTreeMap<u16, Hash> = updates.into_iter().map(|(b, h)| (b, Hash(h))).collect();
            for b in siblings {
                u.insert(b, sha256(&b.to_le_bytes()));
                u.insert(b ^ 1, sha256(&(b ^ 1).to_be_bytes()));
            }
            let predicted = c.root_with(&u);
            c.apply(&u);
            proptest::prop_assert_eq!(predicted, c.root());
        }
    }
}
