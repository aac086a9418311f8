//! Who a patient is: the proven link between an identity (`did:key`) and a `Patient` record,
//! and the one-time activation codes a custodian organization hands a patient so that she can
//! claim her record with her own key.
//!
//! A link is made only by [`RecordStore::claim`] (the patient answering a code with her
//! signature, checked by the caller) or [`RecordStore::link_patient`] (a registration the
//! patient's key co-signed). Nothing in a `Patient` resource — its `identifier` least of all —
//! makes or changes one. Each identity is linked to at most one patient and each patient to at
//! most one identity; links survive restarts in `records.redb`.

use carechain_crypto::sha256_parts;
use redb::{Durability, ReadableDatabase, ReadableTable, TableDefinition};

use crate::{RecordError, RecordStore};
use carechain_vault::BlobStore;

/// did → `Patient/<id>`.
const LINKS: TableDefinition<&str, &str> = TableDefinition::new("patient_links");
/// `Patient/<id>` → did.
const LINKED: TableDefinition<&str, &str> = TableDefinition::new("patient_linked");
/// SHA-256 of an activation code → (`Patient/<id>`, expiry ms, issuing organization).
const CODES: TableDefinition<&[u8; 32], (&str, u64, &str)> =
    TableDefinition::new("activation_codes");

/// Why a link or claim is refused.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The identity is already linked to another patient.
    #[error("this identity is already linked to a patient record")]
    IdentityLinked,
    /// The patient record is already linked to another identity.
    #[error("this patient record is already claimed by another identity")]
    PatientLinked,
    /// No such code, or it was used already.
    #[error("unknown or already used activation code")]
    UnknownCode,
    /// The code has expired.
    #[error("the activation code has expired")]
    Expired,
    /// The code is for another patient record.
    #[error("the activation code is for another patient record")]
    WrongPatient,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] RecordError),
}

crate::error::from_redb!(LinkError, |e| LinkError::Store(RecordError::Db(e)));

/// The key an activation code is stored under (the code itself is never stored).
fn code_key(code: &str) -> [u8; 32] {
    sha256_parts(&[b"carechain/v1/activation-code\0", code.trim().as_bytes()]).0
}

/// An issued activation code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActivationCode {
    /// The code to hand to the patient (shown once).
    pub code: String,
    /// The patient record it claims.
    pub patient: String,
    /// Its expiry (ms since the Unix epoch).
    pub expires_ms: u64,
}

impl<B: BlobStore> RecordStore<B> {
    pub(crate) fn open_link_tables(txn: &redb::WriteTransaction) -> Result<(), RecordError> {
        txn.open_table(LINKS)?;
        txn.open_table(LINKED)?;
        txn.open_table(CODES)?;
        Ok(())
    }

    /// Every link, `(did, Patient/<id>)`.
    pub fn links(&self) -> Result<Vec<(String, String)>, RecordError> {
        let rt = self.db.begin_read()?;
        let t = rt.open_table(LINKS)?;
        let mut out = Vec::new();
        for item in t.iter()? {
            let (k, v) = item?;
            out.push((k.value().to_string(), v.value().to_string()));
        }
        Ok(out)
    }

    /// Links `did` to `patient` (a registration the patient's key signed, or the patient
    /// registering herself). Refused when either is linked to another already; linking the
    /// same pair again is a no-op.
    pub fn link_patient(&self, did: &str, patient: &str) -> Result<(), LinkError> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        Self::link_in(&txn, did, patient)?;
        txn.commit()?;
        Ok(())
    }

    fn link_in(txn: &redb::WriteTransaction, did: &str, patient: &str) -> Result<(), LinkError> {
        let mut links = txn.open_table(LINKS)?;
        let mut linked = txn.open_table(LINKED)?;
        match links.get(did)?.map(|g| g.value().to_string()) {
            Some(p) if p == patient => return Ok(()),
            Some(_) => return Err(LinkError::IdentityLinked),
            None => {}
        }
        if linked.get(patient)?.is_some() {
            return Err(LinkError::PatientLinked);
        }
        links.insert(did, patient)?;
        linked.insert(patient, did)?;
        Ok(())
    }

    /// Stores a fresh one-time activation code for `patient`, issued by `issuer` (the
    /// custodian organization), valid until `expires_ms`. Only its hash is stored.
    pub fn issue_activation(
        &self,
        patient: &str,
        issuer: &str,
        expires_ms: u64,
    ) -> Result<ActivationCode, RecordError> {
        let mut raw = [0u8; 15];
        getrandom::fill(&mut raw)
            .map_err(|_| RecordError::Vault(carechain_vault::VaultError::Randomness))?;
        // Five groups of five base32 letters: easy to read out and type.
        const ALPHABET: &[u8; 32] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
        let mut bits: u128 = 0;
        for b in raw {
            bits = bits << 8 | u128::from(b);
        }
        let mut code = String::with_capacity(29);
        for i in 0..25 {
            if i > 0 && i % 5 == 0 {
                code.push('-');
            }
            code.push(char::from(ALPHABET[(bits >> (i * 5) & 31) as usize]));
        }
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        {
            let mut t = txn.open_table(CODES)?;
            t.insert(&code_key(&code), (patient, expires_ms, issuer))?;
        }
        txn.commit()?;
        Ok(ActivationCode {
            code,
            patient: patient.to_string(),
            expires_ms,
        })
    }

    /// The patient and issuer of an unused activation code (whether or not it has expired:
    /// `(patient, expires_ms, issuer)`), without using it.
    pub fn activation(&self, code: &str) -> Result<Option<(String, u64, String)>, RecordError> {
        let rt = self.db.begin_read()?;
        let t = rt.open_table(CODES)?;
        Ok(t.get(&code_key(code))?.map(|g| {
            let (p, e, i) = g.value();
            (p.to_string(), e, i.to_string())
        }))
    }

    /// Claims `patient` for `did` with an activation code, in one durable transaction: the
    /// code must be unused, unexpired and for that patient; it is used up whether or not the
    /// link can then be made (a code works once). The caller has checked the patient's
    /// signature over the claim.
    pub fn claim(
        &self,
        code: &str,
        patient: &str,
        did: &str,
        now_ms: u64,
    ) -> Result<(), LinkError> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        let found = {
            let mut t = txn.open_table(CODES)?;
            t.remove(&code_key(code))?.map(|g| {
                let (p, e, _) = g.value();
                (p.to_string(), e)
            })
        };
        let result = match found {
            None => Err(LinkError::UnknownCode),
            Some((_, e)) if e <= now_ms => Err(LinkError::Expired),
            Some((p, _)) if p != patient => Err(LinkError::WrongPatient),
            Some(_) => Self::link_in(&txn, did, patient),
        };
        if result.is_ok() || found_used(&result) {
            txn.commit()?;
        }
        result
    }
}

/// Whether a refused claim still used its code up (it existed).
fn found_used(r: &Result<(), LinkError>) -> bool {
    matches!(
        r,
        Err(LinkError::Expired
            | LinkError::WrongPatient
            | LinkError::IdentityLinked
            | LinkError::PatientLinked)
    )
}

/// The claim a patient signs (namespace `PatientClaim`): the audience (the node), the patient
/// record, the code and her did, one per line.
pub fn claim_message(audience: &str, patient: &str, code: &str, did: &str) -> String {
    format!(
        "carechain patient claim\naudience: {audience}\npatient: {patient}\ncode: {}\ndid: {did}\n",
        code.trim()
    )
}
