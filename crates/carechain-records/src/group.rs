//! Group commit of metadata writes, and taking back a create whose anchor never held.

use std::sync::atomic::Ordering;

use borsh::BorshDeserialize;
use carechain_vault::BlobStore;
use redb::{Durability, ReadableTable};

use crate::tables::{BY_PATIENT, HEADS, PENDING, VERSIONS};
use crate::{RecordError, RecordStore, VersionMeta, Written};

/// One version's metadata in a commit.
pub(crate) struct Entry {
    key: String,
    meta: VersionMeta,
    /// Make it the current version.
    head: bool,
    /// Record its anchor as pending (a create committed before its anchor is durable).
    pending: bool,
    /// Blob store mark its ciphertext needs synced.
    blob_mark: u64,
}

impl Entry {
    /// A stored version's metadata rewritten in place (its head and anchor as they were).
    pub(crate) fn rewrapped(key: &str, meta: VersionMeta) -> Entry {
        Entry {
            key: key.to_string(),
            meta,
            head: false,
            pending: false,
            blob_mark: 0,
        }
    }

    pub(crate) fn of(w: &Written, head: bool, pending: bool) -> Entry {
        Entry {
            key: format!("{}/{}", w.resource_type, w.id),
            meta: w.meta.clone(),
            head,
            pending,
            blob_mark: w.blob_mark,
        }
    }
}

/// Group commit of metadata writes: concurrent writers' entries share one durable redb
/// transaction. The first writer to find no commit in progress leads: it takes every pending
/// entry, commits them, and wakes the others.
#[derive(Default)]
pub(crate) struct Group {
    /// The batch new entries join.
    open: u64,
    /// The last batch committed (or failed).
    done: u64,
    /// A commit is in progress.
    leader: bool,
    pending: Vec<Entry>,
    failed: std::collections::BTreeSet<u64>,
}

impl Group {
    /// No batch committed yet; the first one is batch 1.
    pub(crate) fn new() -> Group {
        Group {
            open: 1,
            ..Group::default()
        }
    }
}

impl<B: BlobStore> RecordStore<B> {
    /// Writes one version's metadata durably, sharing the commit with concurrent writers.
    pub(crate) fn put_grouped(&self, entry: Entry) -> Result<(), RecordError> {
        let mut g = self.group.lock();
        g.pending.push(entry);
        let mine = g.open;
        loop {
            if g.done >= mine {
                return if g.failed.contains(&mine) {
                    Err(RecordError::CommitFailed)
                } else {
                    Ok(())
                };
            }
            if g.leader {
                self.group_cv.wait(&mut g);
                continue;
            }
            g.leader = true;
            let batch = std::mem::take(&mut g.pending);
            let id = g.open;
            g.open += 1;
            let result = parking_lot::MutexGuard::unlocked(&mut g, || self.commit_batch(&batch));
            g.leader = false;
            g.done = id;
            let led = result.is_err();
            if led {
                g.failed.insert(id);
            }
            self.group_cv.notify_all();
            if led && mine == id {
                return result;
            }
        }
    }

    /// Commits `batch` durably in one transaction. A failed metadata commit poisons the
    /// handle: redb's state after a failed write is not to be trusted, so every later write
    /// is refused until the store is reopened (reads go on).
    pub(crate) fn commit_batch(&self, batch: &[Entry]) -> Result<(), RecordError> {
        self.check_writable()?;
        // The ciphertexts these versions refer to are durable first (one sync for the group;
        // none when the anchoring already synced them).
        let mark = batch.iter().map(|e| e.blob_mark).max().unwrap_or(0);
        if mark > 0 {
            self.vault.blobs().sync_through(mark)?;
        }
        let confirmed = std::mem::take(&mut *self.confirmed.lock());
        self.commit_metadata(batch, &confirmed)
            .map_err(|e| self.poison(e))
    }

    /// Refuses writes once a metadata commit has failed.
    pub(crate) fn check_writable(&self) -> Result<(), RecordError> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(RecordError::Poisoned);
        }
        Ok(())
    }

    /// Marks the handle failed (after a failed metadata write) and passes the error on.
    pub(crate) fn poison(&self, e: RecordError) -> RecordError {
        self.poisoned.store(true, Ordering::Release);
        e
    }

    fn commit_metadata(
        &self,
        batch: &[Entry],
        confirmed: &[(String, u64)],
    ) -> Result<(), RecordError> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        {
            let mut v = txn.open_table(VERSIONS)?;
            let mut h = txn.open_table(HEADS)?;
            let mut bp = txn.open_table(BY_PATIENT)?;
            let mut p = txn.open_table(PENDING)?;
            for (key, version) in confirmed {
                p.remove((key.as_str(), *version))?;
            }
            for e in batch {
                let (key, meta) = (e.key.as_str(), &e.meta);
                v.insert((key, meta.version), borsh::to_vec(meta)?.as_slice())?;
                if e.head {
                    h.insert(key, meta.version)?;
                }
                if let Some((rt, id)) = key.split_once('/') {
                    for pt in meta.patient.iter().chain(&meta.patients) {
                        bp.insert((pt.as_str(), rt, id), ())?;
                    }
                }
                if e.pending
                    && let Some(a) = &meta.anchor
                {
                    p.insert((key, meta.version), &a.tx.0)?;
                }
            }
        }
        Ok(txn.commit()?)
    }

    /// Removes a create whose anchor never became durable: its metadata, compartment entry,
    /// pending mark and ciphertext.
    pub(crate) fn roll_back_create(&self, key: &str, version: u64) -> Result<(), RecordError> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        let sealed = {
            let mut v = txn.open_table(VERSIONS)?;
            let mut h = txn.open_table(HEADS)?;
            let mut bp = txn.open_table(BY_PATIENT)?;
            let mut p = txn.open_table(PENDING)?;
            p.remove((key, version))?;
            let raw = v.remove((key, version))?.map(|g| g.value().to_vec());
            let meta = raw.map(|r| VersionMeta::try_from_slice(&r)).transpose()?;
            if h.get(key)?.map(|g| g.value()) == Some(version) {
                h.remove(key)?;
            }
            match (meta, key.split_once('/')) {
                (Some(meta), Some((rt, id))) => {
                    for pt in meta.patient.iter().chain(&meta.patients) {
                        bp.remove((pt.as_str(), rt, id))?;
                    }
                    let ctx = Self::context(rt, id, &meta);
                    meta.sealed.map(|s| (ctx, s))
                }
                _ => None,
            }
        };
        txn.commit()?;
        if let Some((ctx, sealed)) = sealed {
            self.vault.erase(&ctx, &sealed)?;
        }
        Ok(())
    }
}
