//! The node's HTTP API (axum): submit transactions and wait for receipts, read blocks,
//! transactions with inclusion proofs, identities and state proofs, the C2SP checkpoint and
//! tiles, health, Prometheus metrics, the OpenAPI document, the FHIR API, and the web UI
//! (patient portal, clinician console, ledger explorer).

mod api;
mod error;
mod fhir;
mod json;
mod portal;

use std::{net::SocketAddr, sync::Arc};

use axum::Router;
use carechain_node::Node;

pub use error::ApiError;
pub use portal::{DemoLogin, UiOptions};

/// The OpenAPI 3.1 document served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// The full router (web UI without demo sign-in).
pub fn router(node: Arc<Node>, service: Arc<carechain_service::Service>) -> Router {
    router_with(node, service, UiOptions::default())
}

/// The full router with web UI options.
pub fn router_with(
    node: Arc<Node>,
    service: Arc<carechain_service::Service>,
    ui: UiOptions,
) -> Router {
    api::routes(node.clone())
        .merge(portal::routes(node.clone(), service.clone(), ui))
        .merge(fhir::routes(fhir::FhirState { node, service }))
}

/// Serves the API on `addr` until `shutdown` resolves.
pub async fn serve(
    node: Arc<Node>,
    service: Arc<carechain_service::Service>,
    listener: tokio::net::TcpListener,
    ui: UiOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router_with(node, service, ui);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
