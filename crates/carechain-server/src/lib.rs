//! The node's HTTP API (axum): submit transactions and wait for receipts, read blocks,
//! transactions with inclusion proofs, identities and state proofs, the C2SP checkpoint and
//! tiles, health, Prometheus metrics, the OpenAPI document, and a small ledger explorer page.

mod api;
mod error;
mod fhir;
mod json;
mod ui;

use std::{net::SocketAddr, sync::Arc};

use axum::Router;
use carechain_node::Node;

pub use error::ApiError;

/// The OpenAPI 3.1 document served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// The full router.
pub fn router(node: Arc<Node>, service: Arc<carechain_service::Service>) -> Router {
    api::routes(node.clone())
        .merge(ui::routes(node.clone()))
        .merge(fhir::routes(fhir::FhirState { node, service }))
}

/// Serves the API on `addr` until `shutdown` resolves.
pub async fn serve(
    node: Arc<Node>,
    service: Arc<carechain_service::Service>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(node, service);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
