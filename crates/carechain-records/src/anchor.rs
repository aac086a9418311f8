//! Creates that become visible only once their ledger anchor is durable, and settling
//! those a crash left pending.

use carechain_crypto::Hash;
use carechain_vault::BlobStore;
use redb::{ReadableDatabase, ReadableTable};

use crate::group::Entry;
use crate::tables::PENDING;
use crate::{Anchor, NewCreate, NewVersion, RecordError, RecordStore, Written, new_id};

impl<B: BlobStore> RecordStore<B> {
    /// Settles the creates left pending by a crash (call once at open, before serving):
    /// those whose anchoring transaction `is_durable` are kept, the others removed (they were
    /// never acknowledged). Returns (kept, removed).
    pub fn settle_pending(
        &self,
        is_durable: impl Fn(&Hash) -> bool,
    ) -> Result<(usize, usize), RecordError> {
        let pending: Vec<(String, u64, Hash)> = {
            let rt = self.db.begin_read()?;
            let t = rt.open_table(PENDING)?;
            let mut out = Vec::new();
            for item in t.iter()? {
                let (k, v) = item?;
                let (key, version) = k.value();
                out.push((key.to_string(), version, Hash(*v.value())));
            }
            out
        };
        let (mut kept, mut removed) = (0, 0);
        for (key, version, tx) in pending {
            if is_durable(&tx) {
                self.confirmed.lock().push((key, version));
                kept += 1;
            } else {
                self.roll_back_create(&key, version)?;
                removed += 1;
            }
        }
        if kept > 0 {
            self.commit_batch(&[])?;
        }
        Ok((kept, removed))
    }

    /// Creates a resource (new id) that becomes visible only once its anchor is durable.
    /// Validates and seals, then `submit` puts the version's commitment on its way to the
    /// ledger and returns the anchor; the metadata is committed (recording the anchor as
    /// pending) while the ledger makes its block durable, and `settle` waits for that. Only
    /// then can anyone read the resource. A crash in between is settled at the next open by
    /// [`RecordStore::settle_pending`]; a failed `settle` removes the create again. Creates
    /// of different resources run in parallel and share their commits.
    pub fn create_anchored<E: From<RecordError>>(
        &self,
        create: NewCreate<'_>,
        authorize: impl FnOnce(&Written) -> Result<(), E>,
        submit: impl FnOnce(&Written) -> Result<Anchor, E>,
        settle: impl FnOnce(&Anchor) -> Result<(), E>,
    ) -> Result<Written, E> {
        let item = NewVersion {
            fresh: true,
            patient: create.patient.map(str::to_string),
            ..NewVersion::content(create.resource, new_id()?)
        };
        let mut w = self.prepare(item, create.author, create.now_ms)?;
        authorize(&w)?;
        self.seal(&mut w, create.also)?;
        let anchor = submit(&w)?;
        w.meta.anchor = Some(anchor.clone());
        let key = format!("{}/{}", w.resource_type, w.id);
        self.hidden.write().insert(key.clone());
        if let Err(e) = self.put_grouped(Entry::of(&w, true, true)) {
            self.hidden.write().remove(&key);
            return Err(e.into());
        }
        if let Err(e) = settle(&anchor) {
            // Never acknowledged: take it back (if that fails too, it stays hidden and the
            // next open settles it).
            if self.roll_back_create(&key, w.meta.version).is_ok() {
                self.hidden.write().remove(&key);
            }
            return Err(e);
        }
        self.hidden.write().remove(&key);
        self.confirmed.lock().push((key, w.meta.version));
        Ok(w)
    }

    /// Makes every ciphertext staged so far durable (shared by concurrent writers; the
    /// metadata commit does it too, so calling this early only moves the wait).
    pub fn sync_blobs(&self) -> Result<(), RecordError> {
        Ok(self.vault.blobs().sync()?)
    }
}
