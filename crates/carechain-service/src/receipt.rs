//! The patient's access log, and receipts that anyone can verify offline: an audit event, its
//! salt, its place in its batch, the anchoring transaction and the transaction's inclusion
//! under a signed checkpoint.
//!
//! A receipt verifies only when the anchoring transaction is what the node writes for audit
//! events: a plain anchor of kind `audit-batch`, on the chain the checkpoint names, signed
//! by the key that signed the checkpoint (the node) or by another key the verifier trusts
//! (a validator of the cluster). A commitment some other identity anchored proves nothing.

use carechain_crypto::{Hash, PublicKey, sha256_parts};
use carechain_types::{Payload, encode};
use serde_json::{Value, json};

use crate::{Purpose, Service, ServiceError, Session, audit::AUDIT_BATCH};

const AUDIT_NAMESPACE: &[u8] = b"carechain/v1/audit-event\0";

/// Whom a receipt's anchoring transaction may be signed by, beside the checkpoint's key.
#[derive(Clone, Debug, Default)]
pub struct ReceiptTrust {
    /// Further trusted signers (a cluster's validators).
    pub signers: Vec<PublicKey>,
}

impl Service {
    /// The patient's access log: every audit event about her records, each with the data to
    /// verify it offline (salt, commitment, raw anchoring transaction). Only for the patient
    /// herself, with a token that may read audit events.
    pub fn access_log(&self, s: &Session, patient_id: &str) -> Result<Vec<Value>, ServiceError> {
        let patient = format!("Patient/{patient_id}");
        let purpose = Purpose::treatment();
        let c = self.caller(s, &purpose);
        if !s.allows("AuditEvent", 'r') {
            return Err(ServiceError::forbidden(
                "the token's scopes do not allow reading audit events",
            ));
        }
        if c.patient.as_deref() != Some(patient.as_str()) {
            return Err(ServiceError::forbidden(
                "only the patient may read their access log",
            ));
        }
        // Every access up to this request is in the log.
        self.flush_audit();
        let snap = self
            .node
            .snapshot()
            .map_err(|e| ServiceError::internal("storage", e))?;
        let mut out = Vec::new();
        for id in self.records.patient_ids(&patient, "AuditEvent")? {
            let meta = self.records.meta("AuditEvent", &id, None)?;
            let Ok(event) = self.records.read_version("AuditEvent", &id, &meta) else {
                continue;
            };
            let mut entry = json!({"event": event});
            if let Some(a) = &meta.anchor {
                entry["commitment"] = json!(a.commitment.to_hex());
                entry["salt"] = json!(a.salt.map(hex::encode));
                entry["tx_hash"] = json!(a.tx.to_hex());
                if let Some(b) = &a.batch {
                    entry["batch"] = json!({
                        "index": b.index,
                        "size": b.size,
                        "proof": b.proof.iter().map(Hash::to_hex).collect::<Vec<_>>(),
                    });
                }
                if let Ok(Some(loc)) = snap.tx_location(&a.tx)
                    && let Ok(Some(block)) = snap.block(loc.height)
                    && let Some(tx) = block.txs.get(loc.position as usize)
                {
                    entry["tx"] = json!(hex::encode(encode(tx)));
                    entry["height"] = json!(loc.height);
                }
            }
            out.push(entry);
        }
        out.sort_by(|a, b| {
            b["event"]["recorded"]
                .as_str()
                .cmp(&a["event"]["recorded"].as_str())
        });
        Ok(out)
    }
}

/// The commitment anchored for an audit event: `SHA-256(ns || salt || canonical JSON)`.
pub fn audit_commitment(salt: &[u8; 32], event: &Value) -> Hash {
    audit_commitment_of_bytes(salt, &serde_json::to_vec(event).unwrap_or_default())
}

/// [`audit_commitment`] of an event already serialized.
pub(crate) fn audit_commitment_of_bytes(salt: &[u8; 32], json: &[u8]) -> Hash {
    sha256_parts(&[AUDIT_NAMESPACE, salt, json])
}

/// Checks one access-log entry offline: the audit event matches the commitment its
/// transaction carries (with the entry's salt) — directly, or through the entry's inclusion
/// proof in the batch whose Merkle root the transaction carries —; that transaction is an
/// `audit-batch` anchor on the checkpoint's chain, signed by the checkpoint's key (or one in
/// `trust`); and it is a leaf of the log under a checkpoint signed by `verifier`. Returns the
/// checkpoint's log size.
pub fn verify_receipt(
    entry: &Value,
    verifier: &carechain_log::NoteVerifier,
    trust: &ReceiptTrust,
) -> Result<u64, String> {
    let salt: [u8; 32] = hex::decode(entry["salt"].as_str().ok_or("entry has no salt")?)
        .map_err(|_| "salt is not hex")?
        .try_into()
        .map_err(|_| "salt is not 32 bytes")?;
    let commitment = audit_commitment(&salt, &entry["event"]);
    let raw = hex::decode(entry["tx"].as_str().ok_or("entry has no transaction")?)
        .map_err(|_| "tx is not hex")?;
    let tx = carechain_types::decode_tx(&raw).map_err(|e| e.to_string())?;
    let anchored = match &entry["batch"] {
        Value::Null => commitment,
        b => {
            let proof = hashes(&b["proof"]).map_err(|e| format!("batch proof: {e}"))?;
            carechain_log::proof::root_from_inclusion(
                b["index"].as_u64().ok_or("batch has no index")?,
                b["size"].as_u64().ok_or("batch has no size")?,
                &carechain_crypto::merkle::leaf_hash(&commitment.0),
                &proof,
            )
            .map_err(|e| format!("batch proof: {e}"))?
        }
    };
    match &tx.body.payload {
        Payload::Anchor {
            kind,
            commitment: c,
        } if *c == anchored && kind == AUDIT_BATCH => {}
        Payload::Anchor { commitment: c, .. } | Payload::TaggedAnchor { commitment: c, .. }
            if *c == anchored =>
        {
            return Err(format!(
                "the transaction is not an {AUDIT_BATCH} anchor: it does not record audit events"
            ));
        }
        _ => {
            return Err(
                "the transaction does not carry this event's commitment: the event was altered"
                    .into(),
            );
        }
    }
    let signer = tx.body.signer;
    if signer != verifier.key && !trust.signers.contains(&signer) {
        return Err(
            "the transaction is not signed by the node or a trusted validator: anyone can anchor a commitment"
                .into(),
        );
    }
    tx.verify_with(&signer)
        .map_err(|_| "the transaction's signature does not verify")?;
    let inc = &entry["inclusion"];
    let cp = verifier
        .verify_checkpoint(
            inc["checkpoint"]
                .as_str()
                .ok_or("entry has no checkpoint")?,
        )
        .map_err(|e| e.to_string())?;
    if cp.origin != format!("carechain/{}", tx.body.chain_id) {
        return Err(format!(
            "the transaction is for chain {:?}, the checkpoint for {:?}",
            tx.body.chain_id, cp.origin
        ));
    }
    let proof = hashes(&inc["proof"])?;
    let index = inc["log_index"].as_u64().ok_or("entry has no log index")?;
    carechain_log::proof::verify_inclusion(
        index,
        cp.size,
        &carechain_crypto::merkle::leaf_hash(&tx.hash().0),
        &proof,
        &cp.root,
    )
    .map_err(|e| format!("inclusion proof: {e}"))?;
    Ok(cp.size)
}

/// A JSON array of hex hashes.
fn hashes(v: &Value) -> Result<Vec<Hash>, String> {
    v.as_array()
        .ok_or("entry has no proof")?
        .iter()
        .map(|h| Hash::from_hex(h.as_str().unwrap_or("")).map_err(|e| e.to_string()))
        .collect()
}

/// Adds to each entry naming a `tx_hash` the transaction's `inclusion` in the log under the
/// latest checkpoint (`{log_index, tree_size, proof, checkpoint}`), when it is applied and
/// checkpointed.
pub fn with_inclusion(node: &carechain_node::Node, mut entries: Vec<Value>) -> Vec<Value> {
    let Ok(snap) = node.snapshot() else {
        return entries;
    };
    let cp = snap.latest_checkpoint().ok().flatten();
    for e in &mut entries {
        let Some(hash) = e["tx_hash"]
            .as_str()
            .and_then(|h| carechain_crypto::Hash::from_hex(h).ok())
        else {
            continue;
        };
        let Ok(Some(loc)) = snap.tx_location(&hash) else {
            continue;
        };
        let Ok(Some(receipts)) = snap.receipts(loc.height) else {
            continue;
        };
        let Some(carechain_types::Outcome::Applied { log_index }) = receipts
            .get(loc.position as usize)
            .map(|r| r.outcome.clone())
        else {
            continue;
        };
        if let Some(inc) = inclusion_at(&snap, cp.as_ref(), log_index) {
            e["inclusion"] = inc;
        }
    }
    entries
}

/// The inclusion of log entry `log_index` under the latest checkpoint of `node`
/// (`{log_index, tree_size, proof, checkpoint}`), once a checkpoint covers it.
pub fn log_inclusion(node: &carechain_node::Node, log_index: u64) -> Option<Value> {
    let snap = node.snapshot().ok()?;
    let cp = snap.latest_checkpoint().ok().flatten();
    inclusion_at(&snap, cp.as_ref(), log_index)
}

fn inclusion_at(
    snap: &dyn carechain_log::NodeSource,
    cp: Option<&(u64, String)>,
    log_index: u64,
) -> Option<Value> {
    let (size, note) = cp?;
    let proof = carechain_log::inclusion_proof(snap, log_index, *size).ok()?;
    Some(json!({
        "log_index": log_index,
        "tree_size": size,
        "proof": proof.iter().map(carechain_crypto::Hash::to_hex).collect::<Vec<_>>(),
        "checkpoint": note,
    }))
}

/// Checks `inclusion` (as [`log_inclusion`] gives it: `{log_index, tree_size, proof,
/// checkpoint}`) of the transaction `tx` of chain `chain_id` under a checkpoint signed by
/// `verifier`'s key; the log index and the checkpoint's size.
pub fn verify_logged(
    inclusion: &Value,
    tx: &Hash,
    chain_id: &str,
    verifier: &carechain_log::NoteVerifier,
) -> Result<(u64, u64), String> {
    let note = inclusion["checkpoint"]
        .as_str()
        .ok_or("no checkpoint covers the transaction yet")?;
    let cp = verifier
        .verify_checkpoint(note)
        .map_err(|e| format!("checkpoint: {e}"))?;
    if cp.origin != format!("carechain/{chain_id}") {
        return Err("the checkpoint is of another chain".into());
    }
    let proof: Vec<Hash> = inclusion["proof"]
        .as_array()
        .ok_or("no inclusion proof")?
        .iter()
        .map(|h| Hash::from_hex(h.as_str().unwrap_or("")).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    let log_index = inclusion["log_index"]
        .as_u64()
        .ok_or("the inclusion has no log index")?;
    carechain_log::proof::verify_inclusion(
        log_index,
        cp.size,
        &carechain_crypto::merkle::leaf_hash(&tx.0),
        &proof,
        &cp.root,
    )
    .map_err(|e| format!("inclusion proof: {e}"))?;
    Ok((log_index, cp.size))
}
