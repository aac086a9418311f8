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

pub(crate) fn with_proofs(node: &Node, entries: Vec<Value>) -> Vec<Value> {
    carechain_service::with_inclusion(node, entries)
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
