//! The patient's access log and break-glass alerts, with the proofs that verify each event.

use axum::{
    Json,
    extract::{Path, State},
    http::HeaderMap,
    response::{IntoResponse, Response},
};
use carechain_node::Node;
use serde_json::{Value, json};

use super::{Fail, FhirState, blocking, session};

pub(crate) fn with_proofs(node: &Node, mut entries: Vec<Value>) -> Vec<Value> {
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
        if let Some((size, note)) = &cp
            && let Ok(proof) = carechain_log::inclusion_proof(&snap, log_index, *size)
        {
            e["inclusion"] = json!({
                "log_index": log_index,
                "tree_size": size,
                "proof": proof.iter().map(carechain_crypto::Hash::to_hex).collect::<Vec<_>>(),
                "checkpoint": note,
            });
        }
    }
    entries
}

pub(super) async fn access_log(
    State(s): State<FhirState>,
    Path(id): Path<String>,
    h: HeaderMap,
) -> Result<Response, Fail> {
    let sess = session(&s, &h).await?;
    let (svc, node) = (s.service.clone(), s.node.clone());
    let entries =
        blocking(move || svc.access_log(&sess, &id).map(|e| with_proofs(&node, e))).await?;
    Ok(Json(json!({"entries": entries})).into_response())
}

pub(super) async fn alerts(
    State(s): State<FhirState>,
    Path(id): Path<String>,
    h: HeaderMap,
) -> Result<Response, Fail> {
    let sess = session(&s, &h).await?;
    let (svc, node) = (s.service.clone(), s.node.clone());
    let entries = blocking(move || {
        svc.access_log(&sess, &id).map(|e| {
            let bg: Vec<Value> = e
                .into_iter()
                .filter(|x| carechain_service::is_break_glass(&x["event"]))
                .collect();
            with_proofs(&node, bg)
        })
    })
    .await?;
    Ok(Json(json!({"alerts": entries})).into_response())
}
