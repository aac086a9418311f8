//! Node to node: `POST /v1/peer` (a registered node's signed request for a patient's records,
//! answered signed by this node's service), the client side of the same call, and the
//! network directory as the ledger holds it (`GET /v1/identities/{did}/locator`).

use std::{str::FromStr, sync::Arc, time::Duration};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use carechain_crypto::Did;
use carechain_node::Node;
use carechain_service::{
    Service,
    peer::{MAX_PEER_ANSWER, MAX_PEER_REQUEST, Transport},
};
use serde_json::{Value, json};

use crate::ApiError;

/// The routes.
pub fn routes(node: Arc<Node>, service: Arc<Service>) -> Router {
    Router::new()
        .route("/v1/peer", post(peer))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_PEER_REQUEST))
        .with_state(service)
        .merge(
            Router::new()
                .route("/v1/identities/{did}/locator", get(locator))
                .with_state(node),
        )
}

async fn peer(State(svc): State<Arc<Service>>, body: Bytes) -> Response {
    match tokio::task::spawn_blocking(move || svc.serve_peer(&body)).await {
        Ok(answer) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/octet-stream")],
            answer,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn locator(
    State(node): State<Arc<Node>>,
    Path(did): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let did = Did::from_str(&did).map_err(|e| ApiError::bad_request("bad_did", e.to_string()))?;
    let out = node
        .store()
        .with_durable(|d| {
            let mut nodes = Vec::new();
            for l in carechain_state::locator(d.snapshot, &did.public_key())? {
                let e = carechain_state::node_entry(d.snapshot, &l.node)?;
                nodes.push(json!({
                    "node": l.node.did().to_string(),
                    "since": l.since,
                    "endpoint": e.as_ref().map(|e| e.endpoint.clone()),
                    "organizations": e.map(|e| e.organizations.iter().map(|o| o.did().to_string()).collect::<Vec<_>>()).unwrap_or_default(),
                }));
            }
            Ok::<_, carechain_state::ViewError>(json!({"height": d.height, "patient": did.to_string(), "nodes": nodes}))
        })
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    Ok(Json(out))
}

/// Reaches other nodes over HTTP (blocking; called from the service's blocking threads).
pub struct HttpTransport {
    agent: ureq::Agent,
}

impl Default for HttpTransport {
    fn default() -> Self {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(2)))
            .timeout_global(Some(Duration::from_secs(15)))
            .build();
        HttpTransport {
            agent: ureq::Agent::new_with_config(config),
        }
    }
}

impl Transport for HttpTransport {
    fn post(&self, endpoint: &str, body: Vec<u8>) -> Result<Vec<u8>, String> {
        let url = format!("{}/v1/peer", endpoint.trim_end_matches('/'));
        let mut resp = self
            .agent
            .post(&url)
            .header("content-type", "application/octet-stream")
            .send(&body[..])
            .map_err(|e| format!("unreachable: {e}"))?;
        if resp.status() != 200 {
            return Err(format!("answered HTTP {}", resp.status().as_u16()));
        }
        resp.body_mut()
            .with_config()
            .limit(MAX_PEER_ANSWER as u64)
            .read_to_vec()
            .map_err(|e| format!("bad answer: {e}"))
    }
}
