//! Reading: metadata, content, history, ids and the patient compartment index.

use borsh::BorshDeserialize;
use carechain_vault::{BlobStore, RecordContext};
use redb::ReadableDatabase;
use serde_json::Value;

use crate::tables::{BY_PATIENT, HEADS, VERSIONS};
use crate::{HistoryEntry, RecordError, RecordStore, VersionMeta};

impl<B: BlobStore> RecordStore<B> {
    pub(crate) fn drop_hidden(&self, resource_type: &str, ids: &mut Vec<String>) {
        let h = self.hidden.read();
        if !h.is_empty() {
            ids.retain(|id| !h.contains(&format!("{resource_type}/{id}")));
        }
    }

    pub(crate) fn is_hidden(&self, key: &str) -> bool {
        let h = self.hidden.read();
        !h.is_empty() && h.contains(key)
    }

    pub(crate) fn head(&self, key: &str) -> Result<Option<u64>, RecordError> {
        if self.is_hidden(key) {
            return Ok(None);
        }
        let rt = self.db.begin_read()?;
        let t = rt.open_table(HEADS)?;
        Ok(t.get(key)?.map(|v| v.value()))
    }

    /// Metadata of one version (or the current one), without decrypting.
    pub fn meta(
        &self,
        resource_type: &str,
        id: &str,
        version: Option<u64>,
    ) -> Result<VersionMeta, RecordError> {
        let key = format!("{resource_type}/{id}");
        if self.is_hidden(&key) {
            return Err(RecordError::NotFound(key));
        }
        let v = match version {
            Some(v) => v,
            None => self
                .head(&key)?
                .ok_or_else(|| RecordError::NotFound(key.clone()))?,
        };
        let rt = self.db.begin_read()?;
        let t = rt.open_table(VERSIONS)?;
        let raw = t
            .get((key.as_str(), v))?
            .ok_or_else(|| RecordError::NotFound(format!("{key}/_history/{v}")))?;
        Ok(VersionMeta::try_from_slice(raw.value())?)
    }

    pub(crate) fn context(resource_type: &str, id: &str, meta: &VersionMeta) -> RecordContext {
        RecordContext {
            patient: meta.patient.clone().unwrap_or_default(),
            resource_type: resource_type.into(),
            resource_id: id.into(),
            version: meta.version,
        }
    }

    pub(crate) fn content(
        &self,
        resource_type: &str,
        id: &str,
        meta: &VersionMeta,
    ) -> Result<Option<Value>, RecordError> {
        let Some(sealed) = &meta.sealed else {
            return Ok(None);
        };
        let plain = self
            .vault
            .open(&Self::context(resource_type, id, meta), sealed)?;
        Ok(Some(serde_json::from_slice(&plain)?))
    }

    /// Ids of every resource of a type (including deleted and erased ones).
    pub fn ids(&self, resource_type: &str) -> Result<Vec<String>, RecordError> {
        let rt = self.db.begin_read()?;
        let t = rt.open_table(HEADS)?;
        let prefix = format!("{resource_type}/");
        let mut out = Vec::new();
        for item in t.range(prefix.as_str()..)? {
            let (k, _) = item?;
            let Some(id) = k.value().strip_prefix(&prefix) else {
                break;
            };
            out.push(id.to_string());
        }
        self.drop_hidden(resource_type, &mut out);
        Ok(out)
    }

    /// Ids of a patient's resources of one type.
    pub fn patient_ids(
        &self,
        patient: &str,
        resource_type: &str,
    ) -> Result<Vec<String>, RecordError> {
        let rt = self.db.begin_read()?;
        let t = rt.open_table(BY_PATIENT)?;
        let mut out = Vec::new();
        for item in t.range((patient, resource_type, "")..)? {
            let (k, _) = item?;
            let (p, ty, id) = k.value();
            if p != patient || ty != resource_type {
                break;
            }
            out.push(id.to_string());
        }
        self.drop_hidden(resource_type, &mut out);
        Ok(out)
    }

    /// Every resource in a patient's compartment: (type, id), sorted.
    pub fn patient_resources(&self, patient: &str) -> Result<Vec<(String, String)>, RecordError> {
        let rt = self.db.begin_read()?;
        let t = rt.open_table(BY_PATIENT)?;
        let mut by_type: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for item in t.range((patient, "", "")..)? {
            let (k, _) = item?;
            let (p, ty, id) = k.value();
            if p != patient {
                break;
            }
            by_type
                .entry(ty.to_string())
                .or_default()
                .push(id.to_string());
        }
        let mut out = Vec::new();
        for (ty, mut ids) in by_type {
            self.drop_hidden(&ty, &mut ids);
            out.extend(ids.into_iter().map(|id| (ty.clone(), id)));
        }
        Ok(out)
    }

    /// The current version.
    pub fn read(&self, resource_type: &str, id: &str) -> Result<Value, RecordError> {
        let meta = self.meta(resource_type, id, None)?;
        self.read_version(resource_type, id, &meta)
    }

    /// One version.
    pub fn vread(&self, resource_type: &str, id: &str, version: u64) -> Result<Value, RecordError> {
        let meta = self.meta(resource_type, id, Some(version))?;
        self.read_version(resource_type, id, &meta)
    }

    /// The content of the version `meta` describes (from [`RecordStore::meta`]), without
    /// looking the metadata up again.
    pub fn read_version(
        &self,
        resource_type: &str,
        id: &str,
        meta: &VersionMeta,
    ) -> Result<Value, RecordError> {
        let key = format!("{resource_type}/{id}");
        if meta.erased {
            return Err(RecordError::Erased(key));
        }
        if meta.deleted {
            return Err(RecordError::Deleted(key));
        }
        self.content(resource_type, id, meta)?
            .ok_or(RecordError::Erased(key))
    }

    /// All versions, newest first.
    pub fn history(&self, resource_type: &str, id: &str) -> Result<Vec<HistoryEntry>, RecordError> {
        let key = format!("{resource_type}/{id}");
        let cur = self
            .head(&key)?
            .ok_or_else(|| RecordError::NotFound(key.clone()))?;
        let mut out = Vec::new();
        for v in (1..=cur).rev() {
            let meta = self.meta(resource_type, id, Some(v))?;
            let resource = if meta.erased || meta.deleted {
                None
            } else {
                self.content(resource_type, id, &meta)?
            };
            out.push(HistoryEntry { meta, resource });
        }
        Ok(out)
    }

    /// Every version's metadata, `(version, meta)`, oldest first.
    pub(crate) fn version_metas(
        &self,
        key: &str,
        cur: u64,
    ) -> Result<Vec<(u64, VersionMeta)>, RecordError> {
        let rt = self.db.begin_read()?;
        let t = rt.open_table(VERSIONS)?;
        let mut metas = Vec::new();
        for v in 1..=cur {
            if let Some(g) = t.get((key, v))? {
                metas.push((v, VersionMeta::try_from_slice(g.value())?));
            }
        }
        Ok(metas)
    }
}
