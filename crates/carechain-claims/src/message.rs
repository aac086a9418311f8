//! What goes on chain for a claim: the claims contract's `submit` message, derived from the
//! bundle alone (so a verifier derives the same), carrying no name, member number or
//! diagnosis: the member as a pseudonym, the lines' billing codes, units and prices, the
//! service date, and a salted commitment to the whole bundle, which stays off chain.

use carechain_crypto::{Did, Hash, sha256_parts};
use serde_json::{Value, json};

use crate::ClaimBundle;

const MEMBER_NS: &[u8] = b"carechain/v1/claims-member\0";
const CLAIM_NS: &[u8] = b"carechain/v1/claim-id\0";
const INPUTS_NS: &[u8] = b"carechain/v1/claim-inputs\0";

/// The member's pseudonym at the insurer's contract: what the insurer enrolls, and what a
/// claim names instead of the member id (`carechain claims member` computes it).
pub fn member_pseudonym(contract: &Hash, subscriber_id: &str) -> String {
    sha256_parts(&[MEMBER_NS, &contract.0, subscriber_id.as_bytes()]).to_hex()[..32].to_string()
}

/// The claim's id at the contract: one per provider and claim identifier, so a resubmission
/// is a duplicate and two providers never collide.
pub fn claim_id(provider: &Did, identifier: &str) -> String {
    sha256_parts(&[
        CLAIM_NS,
        provider.to_string().as_bytes(),
        identifier.as_bytes(),
    ])
    .to_hex()[..32]
        .to_string()
}

/// The commitment to the bundle as submitted: `SHA-256(ns || salt || canonical JSON)`.
pub fn inputs_commitment(salt: &[u8; 32], bundle: &Value) -> Hash {
    sha256_parts(&[
        INPUTS_NS,
        salt,
        &serde_json::to_vec(bundle).unwrap_or_default(),
    ])
}

/// The contract message deciding `claim` for `provider` (the authenticated practitioner or
/// organization), with the inputs' commitment.
pub fn submit_message(claim: &ClaimBundle, provider: &Did, inputs: &Hash) -> Value {
    let items: Vec<Value> = claim
        .lines
        .iter()
        .map(|l| {
            json!({
                "sequence": l.sequence,
                "code": l.code,
                "quantity": l.quantity,
                "unit_price": l.unit_price,
            })
        })
        .collect();
    let mut submit = json!({
        "claim_id": claim_id(provider, &claim.identifier),
        "member": member_pseudonym(&claim.contract, &claim.subscriber_id),
        "provider": provider.to_string(),
        "service_ms": claim.service_ms,
        "items": items,
        "inputs": inputs.to_hex(),
    });
    if let Some(p) = &claim.preauth {
        submit["preauth"] = json!(p);
    }
    json!({ "submit": submit })
}
