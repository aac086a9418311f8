//! Erasure: data keys forgotten durably first, then ciphertexts deleted (retried until they
//! are).

use carechain_crypto::Hash;
use carechain_vault::{BlobStore, RecordContext};
use redb::{Durability, ReadableDatabase, ReadableTable};

use crate::tables::{ERASING, VERSIONS};
use crate::{RecordError, RecordStore, VersionMeta};

impl<B: BlobStore> RecordStore<B> {
    /// Erases every version: ciphertext destroyed, data keys dropped; the metadata keeps only
    /// what the ledger already has (version, time, commitment).
    ///
    /// `tombstone` is called first, under the resource's write lock, with the commitments of
    /// the versions about to be destroyed (to put their tombstone on the ledger); only if it
    /// succeeds is anything destroyed. So a destroyed version always has its tombstone, and a
    /// failed tombstone leaves the resource as it was (the erasure can be asked again).
    /// Returns those commitments and what `tombstone` returned. A resource with nothing left
    /// to destroy is [`RecordError::Erased`].
    pub fn erase<T, E: From<RecordError>>(
        &self,
        resource_type: &str,
        id: &str,
        tombstone: impl FnOnce(&[Hash]) -> Result<T, E>,
    ) -> Result<(Vec<Hash>, T), E> {
        let key = format!("{resource_type}/{id}");
        let _guard = self.writing.lock(vec![key.clone()]);
        let cur = self
            .head(&key)?
            .ok_or_else(|| RecordError::NotFound(key.clone()))?;
        let metas = self.version_metas(&key, cur)?;
        let doomed: Vec<Hash> = metas
            .iter()
            .filter_map(|(_, m)| m.sealed.as_ref().map(|s| s.commitment))
            .collect();
        if doomed.is_empty() && metas.iter().any(|(_, m)| m.erased) {
            self.finish_erasures(Some(&key))?;
            return Err(RecordError::Erased(key).into());
        }
        let out = tombstone(&doomed)?;
        // The metadata forgets the wrapped data keys first (durably, with the ciphertexts to
        // delete recorded as pending), then the ciphertext goes.
        self.forget_keys(resource_type, id, metas)?;
        // The keys are gone: the erasure holds. A ciphertext the blob store cannot delete now
        // stays pending (see `pending_erasures`) and is deleted by a later try.
        let _ = self.finish_erasures(Some(&key));
        Ok((doomed, out))
    }

    /// Drops the sealed keys (and the categories and labels) of `metas` durably, recording
    /// their ciphertexts as pending deletion.
    fn forget_keys(
        &self,
        resource_type: &str,
        id: &str,
        metas: Vec<(u64, VersionMeta)>,
    ) -> Result<(), RecordError> {
        self.check_writable()?;
        let key = format!("{resource_type}/{id}");
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        {
            let mut t = txn.open_table(VERSIONS)?;
            let mut pending = txn.open_table(ERASING)?;
            for (v, mut meta) in metas {
                if let Some(s) = meta.sealed.take() {
                    let ctx = Self::context(resource_type, id, &meta);
                    pending.insert((key.as_str(), v), borsh::to_vec(&(ctx, s.blob))?.as_slice())?;
                }
                meta.erased = true;
                meta.categories.clear();
                meta.labels.clear();
                t.insert((key.as_str(), v), borsh::to_vec(&meta)?.as_slice())?;
            }
        }
        txn.commit().map_err(|e| self.poison(e.into()))
    }

    /// Deletes the ciphertexts of erased versions still pending (of the resource `only`, as
    /// `type/id`, or all). Returns how many were deleted; the first blob-store error, if any,
    /// after removing those that were.
    pub fn finish_erasures(&self, only: Option<&str>) -> Result<usize, RecordError> {
        let mut todo = Vec::new();
        {
            let rt = self.db.begin_read()?;
            let t = rt.open_table(ERASING)?;
            let rows = match only {
                Some(k) => t.range((k, 0)..=(k, u64::MAX))?,
                None => t.iter()?,
            };
            for row in rows {
                let (k, v) = row?;
                let (key, version) = k.value();
                let (ctx, blob): (RecordContext, carechain_vault::ContentId) =
                    borsh::from_slice(v.value())?;
                todo.push((key.to_string(), version, ctx, blob));
            }
        }
        let mut done = Vec::new();
        let mut failed = None;
        for (key, version, ctx, blob) in todo {
            match self.vault.erase_blob(&ctx, &blob) {
                Ok(()) => done.push((key, version)),
                Err(e) => {
                    failed.get_or_insert(RecordError::from(e));
                }
            }
        }
        if !done.is_empty() {
            let txn = self.db.begin_write()?;
            {
                let mut t = txn.open_table(ERASING)?;
                for (key, version) in &done {
                    t.remove((key.as_str(), *version))?;
                }
            }
            txn.commit()?;
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(done.len()),
        }
    }

    /// How many erased versions' ciphertexts are still waiting to be deleted.
    pub fn pending_erasures(&self) -> Result<u64, RecordError> {
        let rt = self.db.begin_read()?;
        Ok(redb::ReadableTableMetadata::len(&rt.open_table(ERASING)?)?)
    }
}
