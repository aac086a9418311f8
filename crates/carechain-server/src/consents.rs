//! `GET /v1/identities/{did}/consents`: a patient's consents as the ledger holds them, at
//! the head (public ledger data: grantee, purposes, classes, period, heights).

use std::{str::FromStr, sync::Arc};

use axum::{
    Json, Router,
    extract::{Path, State},
    routing::get,
};
use carechain_crypto::Did;
use carechain_node::Node;
use serde_json::{Value, json};

use crate::ApiError;

/// The routes.
pub fn routes(node: Arc<Node>) -> Router {
    Router::new()
        .route("/v1/identities/{did}/consents", get(consents))
        .with_state(node)
}

async fn consents(
    State(node): State<Arc<Node>>,
    Path(did): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let did = Did::from_str(&did).map_err(|e| ApiError::bad_request("bad_did", e.to_string()))?;
    let (height, list) = node
        .store()
        .with_durable(|d| {
            carechain_state::consents_of(d.snapshot, &did.public_key()).map(|l| (d.height, l))
        })
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    let consents: Vec<Value> = list
        .iter()
        .map(|c| {
            json!({
                "id": c.id.to_hex(),
                "grantee": c.rule.grantee.did().to_string(),
                "purposes": c.rule.purposes.iter().map(|p| p.code()).collect::<Vec<_>>(),
                "classes": c.rule.classes,
                "not_before_ms": c.rule.not_before_ms,
                "not_after_ms": c.rule.not_after_ms,
                "granted_at": c.granted_at,
                "revoked_at": c.revoked_at,
                "in_force": c.in_force_at(height),
            })
        })
        .collect();
    Ok(Json(
        json!({"patient": did.to_string(), "height": height, "consents": consents}),
    ))
}
