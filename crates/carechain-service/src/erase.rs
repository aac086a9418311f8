//! Erasure: the patient (or an operator) destroys every version's keys and ciphertext; the
//! tombstone is on the ledger first, and she gets a certificate signed by the node.

use carechain_crypto::{Hash, sha256_parts};
use carechain_node::now_ms;
use carechain_records::format_instant;
use serde_json::{Value, json};

use crate::{
    Interaction, Purpose, Service, ServiceError, Session,
    access::{Action, Record},
    audit::AuditEntry,
    write::check_id,
};

impl Service {
    /// Erases a resource: its patient or an operator (and a token with the `d` scope on its
    /// type). Returns the signed erasure certificate.
    pub fn erase(
        &self,
        s: &Session,
        purpose: &Purpose,
        rt: &str,
        id: &str,
    ) -> Result<Value, ServiceError> {
        let c = self.caller(s, purpose);
        check_id(id)?;
        self.scope_first(&c, Interaction::Erase, rt, Some(id), 'd')?;
        let what = format!("{rt}/{id}");
        let meta = self.records.meta(rt, id, None)?;
        self.authorize(
            &c,
            Interaction::Erase,
            &what,
            Action::Erase,
            Some(&Record::of(rt, &meta)),
            None,
        )?;
        // An erased Consent grants nothing any more, at any node: revoked first.
        if rt == "Consent" {
            self.revoke_erased(&meta.patients, id, meta.version)?;
        }
        // The tombstone is on the ledger before anything is destroyed.
        let (destroyed, (tombstone, tx)) = self.records.erase(rt, id, |doomed: &[Hash]| {
            let mut parts: Vec<&[u8]> = vec![b"carechain/v1/tombstone\0"];
            parts.extend(doomed.iter().map(|h| h.0.as_slice()));
            let tombstone = sha256_parts(&parts);
            let tx = self.anchor(self.tagged_anchor("tombstone", rt, &meta, tombstone))?;
            Ok::<_, ServiceError>((tombstone, tx))
        })?;
        if rt == "Consent" {
            self.index_consent(id, None);
        }
        let body = json!({
            "type": "carechain-erasure-certificate",
            "chain_id": self.node.store().genesis().chain_id,
            "resource": what,
            "erased_at": format_instant(now_ms()),
            "destroyed_commitments": destroyed.iter().map(Hash::to_hex).collect::<Vec<_>>(),
            "tombstone": tombstone.to_hex(),
            "tombstone_tx": tx.to_hex(),
            "issuer": self.node_did,
        });
        let sig = self.key.sign(
            carechain_crypto::Namespace::Certificate,
            &serde_json::to_vec(&body).unwrap_or_default(),
        );
        self.audit_each(
            s,
            purpose,
            AuditEntry::allowed(Interaction::Erase, &what, None, "erased"),
            &meta.patients,
        );
        Ok(json!({"certificate": body, "signature": sig.to_hex()}))
    }
}
