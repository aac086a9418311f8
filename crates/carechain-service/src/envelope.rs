//! A record version's envelope for its patient: the ciphertext, its context and the data key
//! wrapped to the patient's identity key — everything needed to decrypt it offline with the
//! patient's own key, without the node (`carechain decrypt`).

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use carechain_crypto::{Hash, SecretKey};
use carechain_vault::{
    BlobStore, ContentId, EncryptionKey, PublicEncryptionKey, RecordContext, SealedRecord,
    VaultError, WrappedKey,
};
use serde_json::{Value, json};

use crate::{
    ErrorKind, Interaction, Purpose, Service, ServiceError, Session,
    access::{Action, Record},
    audit::AuditEntry,
};

impl Service {
    /// The envelope of the current version (or `version`) of one of the caller's own records.
    pub fn envelope(
        &self,
        s: &Session,
        purpose: &Purpose,
        rt: &str,
        id: &str,
        version: Option<u64>,
    ) -> Result<Value, ServiceError> {
        let c = self.caller(s, purpose);
        crate::write::check_id(id)?;
        self.scope_first(&c, Interaction::Envelope, rt, Some(id), 'r')?;
        let what = format!("{rt}/{id}");
        let meta = self.records.meta(rt, id, version)?;
        self.authorize(
            &c,
            Interaction::Envelope,
            &what,
            Action::Envelope,
            Some(&Record::of(rt, &meta)),
            None,
        )?;
        let sealed = meta
            .sealed
            .as_ref()
            .ok_or_else(|| ServiceError::new(ErrorKind::Gone, "no content: deleted or erased"))?;
        let ciphertext = self
            .records
            .vault()
            .blobs()
            .get(&sealed.blob)
            .map_err(|e| ServiceError::internal("blob store", e))?
            .ok_or_else(|| ServiceError::new(ErrorKind::Gone, "ciphertext erased"))?;
        self.audit_each(
            s,
            purpose,
            AuditEntry::allowed(
                Interaction::Envelope,
                &format!("{what}/_history/{}", meta.version),
                None,
                "envelope (ciphertext and wrapped keys) to the patient",
            ),
            &meta.patients,
        );
        Ok(json!({
            "context": {
                "patient": meta.patient.clone().unwrap_or_default(),
                "resource_type": rt,
                "resource_id": id,
                "version": meta.version,
            },
            "ciphertext": B64.encode(&ciphertext),
            "salt": hex::encode(sealed.salt),
            "commitment": sealed.commitment.to_hex(),
            "anchor_tx": meta.anchor.as_ref().map(|a| a.tx.to_hex()),
            "wrapped": sealed.wrapped.iter().map(|w| json!({
                "recipient": hex::encode(w.recipient.0),
                "enc": B64.encode(&w.enc),
                "ciphertext": B64.encode(&w.ciphertext),
            })).collect::<Vec<_>>(),
        }))
    }
}

/// The ciphertext of an envelope, as a one-blob store.
struct OneBlob(Vec<u8>);

impl BlobStore for OneBlob {
    fn put(&self, _: &[u8]) -> Result<ContentId, VaultError> {
        Err(VaultError::Store("read-only".into()))
    }
    fn get(&self, id: &ContentId) -> Result<Option<Vec<u8>>, VaultError> {
        Ok((carechain_vault::blob_id(&self.0) == *id).then(|| self.0.clone()))
    }
    fn delete(&self, _: &ContentId) -> Result<bool, VaultError> {
        Err(VaultError::Store("read-only".into()))
    }
}

/// Decrypts an envelope with the patient's identity key; checks the commitment on the way
/// (so the result is what the ledger anchored). Errors name what failed, never the content.
pub fn open_envelope(envelope: &Value, key: &SecretKey) -> Result<Value, String> {
    let b64 = |v: &Value, what: &str| {
        v.as_str()
            .and_then(|s| B64.decode(s).ok())
            .ok_or_else(|| format!("{what} is missing or not base64"))
    };
    let hex32 = |v: &Value, what: &str| -> Result<[u8; 32], String> {
        v.as_str()
            .and_then(|s| hex::decode(s).ok())
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| format!("{what} is missing or not 32 hex bytes"))
    };
    let c = &envelope["context"];
    let ctx = RecordContext {
        patient: c["patient"].as_str().unwrap_or_default().to_string(),
        resource_type: c["resource_type"].as_str().unwrap_or_default().to_string(),
        resource_id: c["resource_id"].as_str().unwrap_or_default().to_string(),
        version: c["version"].as_u64().ok_or("context.version is missing")?,
    };
    let ciphertext = b64(&envelope["ciphertext"], "ciphertext")?;
    let salt = hex32(&envelope["salt"], "salt")?;
    let blob = carechain_vault::blob_id(&ciphertext);
    let commitment = carechain_vault::commitment(&salt, &blob);
    if Hash(hex32(&envelope["commitment"], "commitment")?) != commitment {
        return Err("the ciphertext does not match the envelope's commitment".into());
    }
    let mut wrapped = Vec::new();
    for w in envelope["wrapped"].as_array().into_iter().flatten() {
        wrapped.push(WrappedKey {
            recipient: PublicEncryptionKey(hex32(&w["recipient"], "wrapped.recipient")?),
            enc: b64(&w["enc"], "wrapped.enc")?,
            ciphertext: b64(&w["ciphertext"], "wrapped.ciphertext")?,
        });
    }
    let sealed = SealedRecord {
        blob,
        salt,
        commitment,
        wrapped,
    };
    let me = EncryptionKey::from_x25519_secret(&key.x25519_secret()).map_err(|e| e.to_string())?;
    let plain = carechain_vault::open_as(&OneBlob(ciphertext), &me, &ctx, &sealed).map_err(
        |e| match e {
            VaultError::NotARecipient => "the data key is not wrapped to this key".to_string(),
            other => other.to_string(),
        },
    )?;
    serde_json::from_slice(&plain).map_err(|_| "the plaintext is not JSON".to_string())
}
