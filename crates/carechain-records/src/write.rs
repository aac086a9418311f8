//! Writing versions: one at a time (group-committed) or a batch in one transaction, each
//! validated, decided on by the caller's `authorize` as stored, then sealed.

use carechain_fhir::{codes, validate_resource};
use carechain_vault::{BlobStore, PublicEncryptionKey};
use serde_json::{Value, json};

use crate::compartment::primary_patient;
use crate::group::Entry;
use crate::{
    Anchor, NewVersion, RecordError, RecordStore, VersionMeta, Written, format_instant, new_id,
};

/// Versions sealed per thread at least when a batch is sealed on several threads.
const SEALS_PER_THREAD: usize = 32;

impl<B: BlobStore> RecordStore<B> {
    /// Creates a resource with a new id.
    pub fn create(
        &self,
        resource: Value,
        author: Option<&str>,
        also: &[PublicEncryptionKey],
        now_ms: u64,
    ) -> Result<Written, RecordError> {
        let item = NewVersion {
            fresh: true,
            ..NewVersion::content(resource, new_id()?)
        };
        self.write_version(item, author, also, now_ms)
    }

    /// Updates (or creates, with a client id) a resource. `if_match` is the version the client
    /// last saw.
    pub fn update(
        &self,
        resource: Value,
        id: &str,
        if_match: Option<u64>,
        author: Option<&str>,
        also: &[PublicEncryptionKey],
        now_ms: u64,
    ) -> Result<Written, RecordError> {
        let item = NewVersion {
            if_match,
            ..NewVersion::content(resource, id.to_string())
        };
        self.write_version(item, author, also, now_ms)
    }

    /// Checks and describes a new version of content under the resource's write lock (held
    /// by the caller): id, `If-Match`, erasure, authorship (kept from the first version),
    /// compartments, server-assigned meta, then validation of exactly what will be stored.
    /// Not yet sealed (`it.also` is left to the caller).
    pub(crate) fn prepare(
        &self,
        it: NewVersion,
        author: Option<&str>,
        now_ms: u64,
    ) -> Result<Written, RecordError> {
        let NewVersion {
            mut resource,
            id,
            if_match,
            fresh,
            patient,
            server_built,
            ..
        } = it;
        let id = id.as_str();
        let rt = resource["resourceType"]
            .as_str()
            .ok_or_else(|| RecordError::BadRequest("resourceType is missing".into()))?
            .to_string();
        if !fresh {
            match resource["id"].as_str() {
                Some(rid) if rid == id => {}
                Some(_) => {
                    return Err(RecordError::BadRequest(
                        "the resource id does not match the URL".into(),
                    ));
                }
                None => {
                    return Err(RecordError::BadRequest(
                        "an update must carry the resource id".into(),
                    ));
                }
            }
        }
        resource["id"] = json!(id);
        let key = format!("{rt}/{id}");
        let current = self.head(&key)?;
        if let (Some(want), cur) = (if_match, current)
            && Some(want) != cur
        {
            return Err(RecordError::VersionConflict {
                current: cur.unwrap_or(0),
            });
        }
        if let Some(cur) = current
            && self.meta(&rt, id, Some(cur))?.erased
        {
            return Err(RecordError::Erased(key));
        }
        let version = current.unwrap_or(0) + 1;
        // The authoring organization is the one that created the resource: an update never
        // makes its writer the author (authorship grants access).
        let stored = match current {
            Some(cur) => Some(self.meta(&rt, id, Some(cur))?),
            None => None,
        };
        let author = match &stored {
            Some(m) => m.author.clone(),
            None => author.map(str::to_string),
        };
        let patients = match &patient {
            Some(p) => vec![p.clone()],
            None => carechain_fhir::patients_of(&rt, id, &resource),
        };
        let patient = patient.or_else(|| primary_patient(&rt, id, &resource, &patients));
        // Server-assigned meta, then validation of exactly what will be stored.
        let mut meta_json = resource["meta"].as_object().cloned().unwrap_or_default();
        meta_json.insert("versionId".into(), json!(version.to_string()));
        meta_json.insert("lastUpdated".into(), json!(format_instant(now_ms)));
        resource["meta"] = Value::Object(meta_json);
        if !server_built || cfg!(debug_assertions) {
            validate_resource(&resource).map_err(RecordError::Invalid)?;
        }
        let meta = VersionMeta {
            version,
            last_updated_ms: now_ms,
            deleted: false,
            erased: false,
            patient,
            patients,
            author,
            categories: codes(&resource["category"]),
            labels: codes(&resource["meta"]["security"]),
            commitment: None,
            sealed: None,
            anchor: None,
        };
        let w = Written {
            resource_type: rt,
            id: id.to_string(),
            meta,
            resource: Some(resource),
            stored,
            blob_mark: 0,
            plaintext: Vec::new(),
        };
        Ok(w)
    }

    /// Encrypts a prepared version and stages its ciphertext.
    pub(crate) fn seal(
        &self,
        w: &mut Written,
        also: &[PublicEncryptionKey],
    ) -> Result<(), RecordError> {
        let resource = w
            .resource
            .as_ref()
            .ok_or_else(|| RecordError::BadRequest("nothing to seal".into()))?;
        let bytes = serde_json::to_vec(resource)?;
        let sealed = self.vault.seal(
            &Self::context(&w.resource_type, &w.id, &w.meta),
            &bytes,
            also,
        )?;
        w.meta.commitment = Some(sealed.commitment);
        w.meta.sealed = Some(sealed);
        w.blob_mark = self.vault.blobs().staged_mark();
        w.plaintext = bytes;
        Ok(())
    }

    /// One version, written under its resource's lock and group-committed.
    fn write_version(
        &self,
        item: NewVersion,
        author: Option<&str>,
        also: &[PublicEncryptionKey],
        now_ms: u64,
    ) -> Result<Written, RecordError> {
        let rt = item.resource["resourceType"].as_str().unwrap_or_default();
        let _guard = self.writing.lock(vec![format!("{rt}/{}", item.id)]);
        let mut w = self.prepare(item, author, now_ms)?;
        self.seal(&mut w, also)?;
        self.put_grouped(Entry::of(&w, true, false))?;
        Ok(w)
    }

    /// Writes several versions atomically: all are validated first, then `authorize` decides
    /// on them — each with the metadata of the version it replaces (`Written::stored`), read
    /// under the resources' write locks, so the decision is on the records as stored — then
    /// they are sealed, `anchor` is called with them (to put their commitments on the
    /// ledger), and all metadata is committed in one transaction with the anchors. If
    /// anything fails, nothing becomes visible (sealed blobs left behind are unreferenced
    /// ciphertext).
    pub fn write_many<E: From<RecordError>>(
        &self,
        items: Vec<NewVersion>,
        author: Option<&str>,
        now_ms: u64,
        authorize: impl FnOnce(&[Written]) -> Result<(), E>,
        anchor: impl FnOnce(&[Written]) -> Result<Vec<Anchor>, E>,
    ) -> Result<Vec<Written>, E> {
        let mut keys = std::collections::BTreeSet::new();
        for it in &items {
            let rt = it.resource["resourceType"].as_str().unwrap_or_default();
            if !keys.insert(format!("{rt}/{}", it.id)) {
                return Err(
                    RecordError::BadRequest(format!("{rt}/{} appears twice", it.id)).into(),
                );
            }
        }
        let _guard = self.writing.lock(keys.into_iter().collect());
        let mut written = Vec::with_capacity(items.len());
        let mut recipients = Vec::with_capacity(items.len());
        for mut it in items {
            recipients.push(std::mem::take(&mut it.also));
            if it.delete {
                let rt = it.resource["resourceType"].as_str().unwrap_or_default();
                written.push(self.deletion(rt, &it.id, now_ms)?);
                continue;
            }
            written.push(self.prepare(it, author, now_ms)?);
        }
        authorize(&written)?;
        // Every version is valid and allowed: only now is anything encrypted and staged — on every core
        // when there are enough versions to be worth a thread (each seal serializes and
        // encrypts one version, some microseconds; starting a thread costs about as much as
        // sealing a few dozen).
        let threads = std::thread::available_parallelism()
            .map_or(1, std::num::NonZero::get)
            .min(written.len().div_ceil(SEALS_PER_THREAD));
        if threads <= 1 {
            self.seal_all(&mut written, &recipients)?;
        } else {
            self.seal_in_parallel(&mut written, &recipients, threads)?;
        }
        let anchors = anchor(&written)?;
        let mut batch = Vec::with_capacity(written.len());
        for (w, a) in written.iter_mut().zip(anchors) {
            w.meta.anchor = Some(a);
            batch.push(Entry::of(w, true, false));
        }
        // One transaction of its own (not the shared group): all or nothing.
        self.commit_batch(&batch)?;
        Ok(written)
    }

    /// Seals each of `written` but deletions, for its recipients in `also`.
    fn seal_all(
        &self,
        written: &mut [Written],
        also: &[Vec<PublicEncryptionKey>],
    ) -> Result<(), RecordError> {
        written
            .iter_mut()
            .zip(also)
            .filter(|(w, _)| !w.meta.deleted)
            .try_for_each(|(w, a)| self.seal(w, a))
    }

    /// [`RecordStore::seal_all`] on `threads` threads.
    fn seal_in_parallel(
        &self,
        written: &mut [Written],
        recipients: &[Vec<PublicEncryptionKey>],
        threads: usize,
    ) -> Result<(), RecordError> {
        let chunk = written.len().div_ceil(threads).max(1);
        std::thread::scope(|scope| {
            let handles: Vec<_> = written
                .chunks_mut(chunk)
                .zip(recipients.chunks(chunk))
                .map(|(ws, also)| scope.spawn(move || self.seal_all(ws, also)))
                .collect();
            handles
                .into_iter()
                .try_for_each(|h| h.join().unwrap_or_else(|_| Err(RecordError::SealPanicked)))
        })
    }

    /// Deletes a resource (FHIR semantics: a deletion version; history stays readable).
    pub fn delete(
        &self,
        resource_type: &str,
        id: &str,
        now_ms: u64,
    ) -> Result<Written, RecordError> {
        let _guard = self.writing.lock(vec![format!("{resource_type}/{id}")]);
        let w = self.deletion(resource_type, id, now_ms)?;
        self.put_grouped(Entry::of(&w, true, false))?;
        Ok(w)
    }

    /// The deletion version of a resource (not yet written).
    fn deletion(&self, resource_type: &str, id: &str, now_ms: u64) -> Result<Written, RecordError> {
        let key = format!("{resource_type}/{id}");
        let cur = self
            .head(&key)?
            .ok_or_else(|| RecordError::NotFound(key.clone()))?;
        let prev = self.meta(resource_type, id, Some(cur))?;
        if prev.erased {
            return Err(RecordError::Erased(key));
        }
        let meta = VersionMeta {
            version: cur + 1,
            last_updated_ms: now_ms,
            deleted: true,
            commitment: None,
            sealed: None,
            anchor: None,
            ..prev.clone()
        };
        Ok(Written {
            resource_type: resource_type.into(),
            id: id.into(),
            meta,
            resource: None,
            stored: Some(prev),
            blob_mark: 0,
            plaintext: Vec::new(),
        })
    }
}
