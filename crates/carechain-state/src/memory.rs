//! In-memory state: for genesis, tests and the offline verifier's re-execution.

use std::collections::BTreeMap;

use crate::{ChangeSet, StateView, ViewError, bucket_of};

/// State held in an ordered map keyed by `(bucket, key)`.
#[derive(Clone, Debug, Default)]
pub struct MemoryState {
    entries: BTreeMap<(u16, Vec<u8>), Vec<u8>>,
}

impl MemoryState {
    /// Empty state.
    pub fn new() -> MemoryState {
        MemoryState::default()
    }

    /// Applies a change set.
    pub fn apply(&mut self, changes: &ChangeSet) {
        for (k, v) in changes {
            let key = (bucket_of(k), k.clone());
            match v {
                Some(v) => {
                    self.entries.insert(key, v.clone());
                }
                None => {
                    self.entries.remove(&key);
                }
            }
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The keys whose value differs between `self` and `earlier` (added, changed or
    /// removed), in order.
    pub fn changed_since(&self, earlier: &MemoryState) -> Vec<Vec<u8>> {
        let mut keys: Vec<Vec<u8>> = self
            .entries
            .iter()
            .filter(|(k, v)| earlier.entries.get(*k) != Some(*v))
            .chain(
                earlier
                    .entries
                    .iter()
                    .filter(|(k, _)| !self.entries.contains_key(*k)),
            )
            .map(|((_, k), _)| k.clone())
            .collect();
        keys.sort();
        keys
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl StateView for MemoryState {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ViewError> {
        Ok(self.entries.get(&(bucket_of(key), key.to_vec())).cloned())
    }

    fn bucket_entries(&self, bucket: u16) -> Result<crate::Entries, ViewError> {
        Ok(self
            .entries
            .range((bucket, Vec::new())..)
            .take_while(|((b, _), _)| *b == bucket)
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect())
    }
}
