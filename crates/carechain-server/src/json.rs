//! JSON views of ledger types (hex for hashes and signatures, did:key for identities).

use carechain_state::Identity;
use carechain_types::{Block, Header, Outcome, Payload, Receipt, SignedTx};
use serde_json::{Value, json};

/// A transaction.
pub fn tx(t: &SignedTx) -> Value {
    json!({
        "hash": t.hash().to_hex(),
        "chain_id": t.body.chain_id,
        "signer": t.body.signer.did().to_string(),
        "nonce": t.body.nonce,
        "payload": payload(&t.body.payload),
        "signature": t.signature.to_hex(),
    })
}

/// A payload.
pub fn payload(p: &Payload) -> Value {
    match p {
        Payload::Register {
            subject,
            role,
            parent,
        } => json!({
            "type": "register",
            "subject": subject.did().to_string(),
            "role": role.as_str(),
            "parent": parent.map(|p| p.did().to_string()),
        }),
        Payload::RotateKey { new_key, .. } => json!({
            "type": "rotate_key",
            "new_key": new_key.did().to_string(),
        }),
        Payload::Deactivate { subject } => json!({
            "type": "deactivate",
            "subject": subject.did().to_string(),
        }),
        Payload::Anchor { kind, commitment } => json!({
            "type": "anchor",
            "kind": kind,
            "commitment": commitment.to_hex(),
        }),
        Payload::TaggedAnchor {
            kind,
            commitment,
            subject,
            label,
            version,
        } => json!({
            "type": "tagged_anchor",
            "kind": kind,
            "commitment": commitment.to_hex(),
            "subject": subject.to_hex(),
            "label": label,
            "version": version,
        }),
        Payload::ProposeValidatorChange {
            change,
            effective_height,
        } => json!({
            "type": "propose_validator_change",
            "action": change.action(),
            "validator": change.key().did().to_string(),
            "effective_height": effective_height,
            "proposal": carechain_types::validator_proposal_id(change, *effective_height).to_hex(),
        }),
        Payload::ApproveValidatorChange { proposal } => json!({
            "type": "approve_validator_change",
            "proposal": proposal.to_hex(),
        }),
        Payload::GrantConsent { patient, id, rule } => json!({
            "type": "grant_consent",
            "patient": patient.did().to_string(),
            "id": id.to_hex(),
            "grantee": rule.grantee.did().to_string(),
            "purposes": rule.purposes.iter().map(|p| p.code()).collect::<Vec<_>>(),
            "classes": rule.classes,
            "not_before_ms": rule.not_before_ms,
            "not_after_ms": rule.not_after_ms,
        }),
        Payload::RevokeConsent { patient, id } => json!({
            "type": "revoke_consent",
            "patient": patient.did().to_string(),
            "id": id.to_hex(),
        }),
        Payload::DelegateConsents { delegate, allowed } => json!({
            "type": "delegate_consents",
            "delegate": delegate.did().to_string(),
            "allowed": allowed,
        }),
        Payload::RegisterNode { node, endpoint } => json!({
            "type": "register_node",
            "node": node.did().to_string(),
            "endpoint": endpoint,
        }),
        Payload::LocateRecords {
            patient,
            held,
            node,
        } => json!({
            "type": "locate_records",
            "patient": patient.did().to_string(),
            "held": held,
            "node": node.did().to_string(),
        }),
    }
}

/// A receipt.
pub fn receipt(r: &Receipt) -> Value {
    match &r.outcome {
        Outcome::Applied { log_index } => json!({
            "tx_hash": r.tx_hash.to_hex(), "outcome": "applied", "log_index": log_index,
        }),
        Outcome::Rejected(reason) => json!({
            "tx_hash": r.tx_hash.to_hex(), "outcome": "rejected",
            "reason": { "code": reason.code(), "message": reason.message() },
        }),
    }
}

/// A header.
pub fn header(h: &Header) -> Value {
    json!({
        "hash": h.hash().to_hex(),
        "version": h.version,
        "chain_id": h.chain_id,
        "height": h.height,
        "parent": h.parent.to_hex(),
        "timestamp_ms": h.timestamp_ms,
        "proposer": h.proposer.did().to_string(),
        "tx_count": h.tx_count,
        "tx_root": h.tx_root.to_hex(),
        "receipts_root": h.receipts_root.to_hex(),
        "state_root": h.state_root.to_hex(),
        "log_size": h.log_size,
        "log_root": h.log_root.to_hex(),
    })
}

/// A block with its transactions and receipts.
pub fn block(b: &Block, receipts: &[Receipt]) -> Value {
    json!({
        "header": header(&b.header),
        "seal": b.seal.to_hex(),
        "transactions": b.txs.iter().map(tx).collect::<Vec<_>>(),
        "receipts": receipts.iter().map(receipt).collect::<Vec<_>>(),
    })
}

/// An identity.
pub fn identity(i: &Identity) -> Value {
    json!({
        "did": i.id.did().to_string(),
        "current_key": i.current_key.did().to_string(),
        "role": i.role.as_str(),
        "parent": i.parent.map(|p| p.did().to_string()),
        "active": i.active,
        "next_nonce": i.next_nonce,
        "registered_at": i.registered_at,
        "registered_by": i.registered_by.did().to_string(),
        "rotations": i.rotations,
    })
}
