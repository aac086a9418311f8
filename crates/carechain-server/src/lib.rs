//! The node's HTTP API (axum): submit transactions and wait for receipts, read blocks,
//! transactions with inclusion proofs, identities and state proofs, the C2SP checkpoint and
//! tiles, health, Prometheus metrics, the OpenAPI document, the FHIR API, and the web UI
//! (patient portal, clinician console, ledger explorer).

mod api;
mod consents;
mod economy;
mod epcis;
mod error;
mod fhir;
mod json;
mod peer;
mod portal;
mod proof;

use std::{net::SocketAddr, sync::Arc};

use axum::Router;
use carechain_node::Node;

pub use error::ApiError;
pub use peer::HttpTransport;
pub use portal::{DemoLogin, UiOptions};

/// The OpenAPI 3.1 document served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// The full router (web UI without demo sign-in).
pub fn router(node: Arc<Node>, service: Arc<carechain_service::Service>) -> Router {
    router_with(node, service, UiOptions::default())
}

/// The full router with web UI options (the supply service opened here).
pub fn router_with(
    node: Arc<Node>,
    service: Arc<carechain_service::Service>,
    ui: UiOptions,
) -> Router {
    match carechain_supply::Supply::open(service.clone()) {
        Ok(s) => router_full(node, service, Some(s), ui),
        Err(e) => {
            tracing::error!(error = %e, "the EPCIS repository could not be opened; /epcis is off");
            router_full(node, service, None, ui)
        }
    }
}

/// The full router over an already opened supply service (`None`: no `/epcis`).
pub fn router_full(
    node: Arc<Node>,
    service: Arc<carechain_service::Service>,
    supply: Option<Arc<carechain_supply::Supply>>,
    ui: UiOptions,
) -> Router {
    let hosts = Arc::new(ui.allowed_hosts.clone());
    service.set_transport(Arc::new(HttpTransport::default()));
    let supply_routes = supply.clone().map(epcis::routes).unwrap_or_default();
    api::routes(node.clone())
        .merge(supply_routes)
        .merge(peer::routes(node.clone(), service.clone()))
        .merge(consents::routes(node.clone()))
        .merge(economy::routes(node.clone()))
        .merge(portal::routes(node.clone(), service.clone(), supply, ui))
        .merge(fhir::routes(fhir::FhirState { node, service }))
        .layer(axum::middleware::from_fn(move |req, next| {
            host_allowed(hosts.clone(), req, next)
        }))
}

/// Refuses a request whose `Host` is not one this node answers to (DNS rebinding: a page
/// of another site resolving its name to this node's address). An empty list allows any.
async fn host_allowed(
    hosts: Arc<Vec<String>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let host = req
        .headers()
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_ascii_lowercase);
    let ok = hosts.is_empty() || host.as_ref().is_some_and(|h| hosts.iter().any(|a| a == h));
    if ok {
        next.run(req).await
    } else {
        ApiError::new(
            axum::http::StatusCode::MISDIRECTED_REQUEST,
            "host_not_allowed",
            "this node does not answer to that Host (see --allowed-host)",
        )
        .into_response()
    }
}

/// The hosts a node listening on `addr` answers to by default: the address itself, and for
/// a loopback address also `localhost` at the same port.
pub fn default_allowed_hosts(addr: SocketAddr) -> Vec<String> {
    let mut out = vec![addr.to_string()];
    if addr.ip().is_loopback() {
        out.push(format!("localhost:{}", addr.port()));
    }
    out
}

/// What one node serves: its ledger node, records service and supply service.
pub struct Services {
    /// The ledger node.
    pub node: Arc<Node>,
    /// The records service.
    pub service: Arc<carechain_service::Service>,
    /// The supply service (`None`: no `/epcis`).
    pub supply: Option<Arc<carechain_supply::Supply>>,
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    s: Services,
    listener: tokio::net::TcpListener,
    ui: UiOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router_full(s.node, s.service, s.supply, ui);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
