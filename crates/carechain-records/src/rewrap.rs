//! Wrapping a patient's existing records to her key once she proves who she is (a claim made
//! after her records were written, e.g. an imported patient).

use carechain_vault::{BlobStore, PublicEncryptionKey};
use redb::ReadableDatabase;

use crate::group::Entry;
use crate::tables::BY_PATIENT;
use crate::{RecordError, RecordStore, VersionMeta};

/// Resources re-wrapped per durable commit.
const RESOURCES_PER_COMMIT: usize = 256;

impl<B: BlobStore> RecordStore<B> {
    /// Wraps the data key of every version in `patient`'s compartment (`Patient/<id>`) that is
    /// bound to her (its ciphertext's context names her) to `key` as well, so that she can
    /// decrypt all of her records with her own key, not only those written after she was
    /// linked. Versions already wrapped to her, deleted and erased ones are left alone; each
    /// resource is updated under its write lock. Returns how many versions were wrapped.
    pub fn wrap_patient_records(
        &self,
        patient: &str,
        key: &PublicEncryptionKey,
    ) -> Result<usize, RecordError> {
        let resources: Vec<String> = {
            let rt = self.db.begin_read()?;
            let t = rt.open_table(BY_PATIENT)?;
            let mut out = Vec::new();
            for item in t.range((patient, "", "")..)? {
                let (k, _) = item?;
                let (p, ty, id) = k.value();
                if p != patient {
                    break;
                }
                out.push(format!("{ty}/{id}"));
            }
            out
        };
        let mut wrapped = 0;
        for chunk in resources.chunks(RESOURCES_PER_COMMIT) {
            let _guard = self.writing.lock(chunk.to_vec());
            let mut batch = Vec::new();
            for key_path in chunk {
                let Some((ty, id)) = key_path.split_once('/') else {
                    continue;
                };
                let Some(cur) = self.head(key_path)? else {
                    continue;
                };
                for (_, meta) in self.version_metas(key_path, cur)? {
                    let Some(sealed) = &meta.sealed else { continue };
                    if meta.patient.as_deref() != Some(patient)
                        || sealed.wrapped.iter().any(|w| w.recipient == *key)
                    {
                        continue;
                    }
                    let sealed = self
                        .vault
                        .wrap_to(&Self::context(ty, id, &meta), sealed, key)?;
                    batch.push(Entry::rewrapped(
                        key_path,
                        VersionMeta {
                            sealed: Some(sealed),
                            ..meta
                        },
                    ));
                    wrapped += 1;
                }
            }
            if !batch.is_empty() {
                self.commit_batch(&batch)?;
            }
        }
        Ok(wrapped)
    }
}
