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
        Payload::ProposeChange {
            change,
            effective_height,
        } => json!({
            "type": "propose_change",
            "action": change.action(),
            "identity": change.key().did().to_string(),
            "effective_height": effective_height,
            "proposal": carechain_types::proposal_id(change, *effective_height).to_hex(),
        }),
        Payload::ApproveChange { proposal } => json!({
            "type": "approve_change",
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
        Payload::Mint { to, amount } => json!({
            "type": "mint", "to": to.to_string(), "amount": amount,
        }),
        Payload::Transfer { to, amount } => json!({
            "type": "transfer", "to": to.to_string(), "amount": amount,
        }),
        Payload::Burn { amount } => json!({ "type": "burn", "amount": amount }),
        Payload::SetAllowance {
            spender,
            amount,
            expires_at,
        } => json!({
            "type": "set_allowance", "spender": spender.to_string(), "amount": amount,
            "expires_at": expires_at,
        }),
        Payload::TransferFrom { owner, to, amount } => json!({
            "type": "transfer_from", "owner": owner.did().to_string(), "to": to.to_string(),
            "amount": amount,
        }),
        Payload::DeployCode { code } => json!({
            "type": "deploy_code",
            "code_hash": carechain_crypto::sha256(code).to_hex(),
            "code_bytes": code.len(),
        }),
        Payload::Instantiate {
            code,
            msg,
            funds,
            label,
        } => json!({
            "type": "instantiate", "code_hash": code.to_hex(), "msg": message(msg),
            "funds": funds, "label": label,
        }),
        Payload::Execute {
            contract,
            msg,
            funds,
        } => json!({
            "type": "execute",
            "contract": carechain_types::Account::Contract(*contract).to_string(),
            "msg": message(msg), "funds": funds,
        }),
        Payload::AssignCompanyPrefix {
            prefix,
            organization,
        } => json!({
            "type": "assign_company_prefix", "prefix": prefix,
            "organization": organization.map(|o| o.did().to_string()),
        }),
        Payload::Supply {
            organization,
            events,
            atomic,
        } => json!({
            "type": "supply",
            "organization": organization.did().to_string(),
            "atomic": atomic,
            "events": events.iter().map(supply_event).collect::<Vec<_>>(),
        }),
    }
}

/// A supply event as the ledger holds it.
pub fn supply_event(e: &carechain_types::SupplyEvent) -> Value {
    use carechain_types::SupplyStep as S;
    let ids = |v: &[carechain_crypto::Hash]| v.iter().map(|h| h.to_hex()).collect::<Vec<_>>();
    let step = match &e.step {
        S::Observe => json!({"type": "observe"}),
        S::Commission {
            gtin,
            lot,
            expiry,
            items,
        } => json!({
            "type": "commission", "gtin": format!("{gtin:014}"), "lot": lot,
            "expiry": expiry, "items": ids(items),
        }),
        S::Pack { parent, children } => {
            json!({"type": "pack", "parent": parent.to_hex(), "children": ids(children)})
        }
        S::Unpack { parent, children } => {
            json!({"type": "unpack", "parent": parent.to_hex(), "children": ids(children)})
        }
        S::Ship { to, items } => json!({
            "type": "ship", "to": to.map(|t| t.did().to_string()), "items": ids(items),
        }),
        S::Receive { items } => json!({"type": "receive", "items": ids(items)}),
        S::Dispense { items } => json!({"type": "dispense", "items": ids(items)}),
        S::Decommission { items } => json!({"type": "decommission", "items": ids(items)}),
        S::Recall { gtin, lot } => {
            json!({"type": "recall", "gtin": format!("{gtin:014}"), "lot": lot})
        }
        S::Suspect { item, reason } => {
            json!({"type": "suspect", "item": item.to_hex(), "reason": reason.as_str()})
        }
    };
    json!({
        "event_hash": format!("ni:///sha-256;{}?ver=CBV2.0", e.hash.to_hex()),
        "time_ms": e.time_ms,
        "location": e.location.map(|g| format!("{g:013}")),
        "step": step,
    })
}

/// A contract message or result: its JSON, or its hex when it is not JSON.
pub fn message(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or_else(|_| json!({ "hex": hex::encode(bytes) }))
}

/// An event.
pub fn event(e: &carechain_types::Event) -> Value {
    json!({
        "emitter": e.emitter.to_string(),
        "type": e.kind,
        "attributes": e.attributes.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
    })
}

/// A receipt.
pub fn receipt(r: &Receipt) -> Value {
    let mut v = match &r.outcome {
        Outcome::Applied { log_index } => json!({
            "tx_hash": r.tx_hash.to_hex(), "outcome": "applied", "log_index": log_index,
        }),
        Outcome::Rejected(reason) => json!({
            "tx_hash": r.tx_hash.to_hex(), "outcome": "rejected",
            "reason": { "code": reason.code(), "message": reason.message() },
        }),
    };
    if r.fuel_used > 0 {
        v["fuel_used"] = json!(r.fuel_used);
    }
    if !r.events.is_empty() {
        v["events"] = r.events.iter().map(event).collect();
    }
    if !r.data.is_empty() {
        v["data"] = message(&r.data);
    }
    v
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
