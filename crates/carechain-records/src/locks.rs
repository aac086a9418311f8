//! Per-resource write locks: writers of one resource take turns, of different ones run in
//! parallel.

use parking_lot::Mutex;

#[derive(Default)]
pub(crate) struct KeyLocks {
    held: Mutex<std::collections::BTreeSet<String>>,
    free: parking_lot::Condvar,
}

/// Holds some keys of a [`KeyLocks`] until dropped.
pub(crate) struct KeyGuard<'a> {
    locks: &'a KeyLocks,
    keys: Vec<String>,
}

impl KeyLocks {
    /// Waits until none of `keys` is held, then holds them all (all at once, so two writers
    /// of overlapping sets cannot deadlock).
    pub(crate) fn lock(&self, keys: Vec<String>) -> KeyGuard<'_> {
        let mut held = self.held.lock();
        while keys.iter().any(|k| held.contains(k)) {
            self.free.wait(&mut held);
        }
        held.extend(keys.iter().cloned());
        KeyGuard { locks: self, keys }
    }
}

impl Drop for KeyGuard<'_> {
    fn drop(&mut self) {
        let mut held = self.locks.held.lock();
        for k in &self.keys {
            held.remove(k);
        }
        self.locks.free.notify_all();
    }
}
