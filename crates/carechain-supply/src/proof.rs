//! `carechain verify-event`: events returned by a query checked offline. For each event: its
//! CBV 2.0 hash recomputed from the event as returned (anchor field left out); the anchoring
//! transaction decoded, its signature checked, the hash found at the event's index of its
//! supply batch, with the same event time and capturing organization; the transaction's
//! inclusion in the log proven under a checkpoint signed by the given key. An event changed
//! after capture, or one the ledger never recorded, fails.

use carechain_crypto::Hash;
use carechain_epcis::hash::json_event_hash;
use carechain_log::NoteVerifier;
use carechain_types::{Payload, decode_tx};
use serde_json::{Value, json};

use crate::capture::digest_of;

/// What the check of one event found.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct EventCheck {
    /// The event's id (as returned).
    pub event_id: String,
    /// Its hash, recomputed.
    pub hash: String,
    /// Whether every check passed.
    pub ok: bool,
    /// Why not.
    pub reason: Option<String>,
    /// The capturing organization (did), as the ledger says.
    pub organization: Option<String>,
    /// The log index of the anchoring transaction.
    pub log_index: Option<u64>,
    /// The size of the checkpoint it was proven under.
    pub checkpoint_size: Option<u64>,
}

/// The CBV 2.0 hash of an event as returned: its anchor left out, hashed with the context of
/// the capture it came in (which its anchor carries), else the document's.
fn returned_hash(event: &Value, context: Option<&Value>) -> String {
    let mut bare = event.clone();
    if let Some(m) = bare.as_object_mut() {
        m.remove("carechain:anchor");
    }
    let ctx = event["carechain:anchor"]
        .get("context")
        .filter(|c| !c.is_null())
        .or(context);
    json_event_hash(&bare, ctx)
}

/// Checks the anchor of `event`, whose recomputed hash is `hash`.
fn check_one(
    event: &Value,
    hash: &str,
    verifier: &NoteVerifier,
) -> Result<(String, u64, u64), String> {
    let anchor = event
        .get("carechain:anchor")
        .ok_or("the event carries no anchor")?;
    let tx_hex = anchor["tx"]
        .as_str()
        .ok_or("the anchor has no transaction")?;
    let tx = decode_tx(&hex::decode(tx_hex).map_err(|_| "the transaction is not hex")?)
        .map_err(|e| format!("the transaction does not decode: {e}"))?;
    tx.verify_with(&tx.body.signer)
        .map_err(|_| "the transaction's signature does not verify")?;
    let Payload::Supply {
        organization,
        events,
        ..
    } = &tx.body.payload
    else {
        return Err("the transaction is not a supply batch".into());
    };
    let index = anchor["event_index"]
        .as_u64()
        .ok_or("the anchor has no event index")? as usize;
    let on_chain = events
        .get(index)
        .ok_or("the batch has no event at that index")?;
    if on_chain.hash != Hash(digest_of(hash)) {
        return Err(format!(
            "the event's hash {hash} is not the one anchored: the event was changed after capture"
        ));
    }
    let time = event["eventTime"]
        .as_str()
        .and_then(carechain_epcis::event::time_ms);
    if time != Some(on_chain.time_ms) {
        return Err("the event's time is not the anchored time".into());
    }
    let org = organization.did().to_string();
    if anchor["organization"].as_str().is_some_and(|o| o != org) {
        return Err("the anchor names another organization than the ledger".into());
    }
    let (log_index, size) = carechain_service::verify_logged(
        &anchor["inclusion"],
        &tx.hash(),
        &tx.body.chain_id,
        verifier,
    )?;
    Ok((org, log_index, size))
}

/// Checks every event of an EPCISQueryDocument (or one event) as returned by this
/// repository, under checkpoints signed by `verifier`'s key.
pub fn verify_events(doc: &Value, verifier: &NoteVerifier) -> Vec<EventCheck> {
    let context = doc.get("@context");
    let events: Vec<&Value> = match carechain_epcis::hash::json_events(doc) {
        Ok(e) => e,
        Err(_) if doc.get("type").is_some() && doc.get("eventTime").is_some() => vec![doc],
        Err(_) => vec![],
    };
    events
        .into_iter()
        .map(|e| {
            let hash = returned_hash(e, context);
            let id = e["eventID"].as_str().unwrap_or(&hash).to_string();
            match check_one(e, &hash, verifier) {
                Ok((org, log_index, size)) => EventCheck {
                    event_id: id,
                    hash,
                    ok: true,
                    reason: None,
                    organization: Some(org),
                    log_index: Some(log_index),
                    checkpoint_size: Some(size),
                },
                Err(reason) => EventCheck {
                    event_id: id,
                    hash,
                    ok: false,
                    reason: Some(reason),
                    organization: None,
                    log_index: None,
                    checkpoint_size: None,
                },
            }
        })
        .collect()
}

/// A report of checks as JSON.
pub fn report(checks: &[EventCheck]) -> Value {
    json!({
        "ok": !checks.is_empty() && checks.iter().all(|c| c.ok),
        "events": checks,
    })
}
