//! The web UI served at `/`: sign-in (an identity's key signs a server challenge with
//! WebCrypto Ed25519 in the browser; one-click demo sign-in only in demo mode), the patient
//! portal, the clinician console and the ledger explorer. Server-rendered HTML (maud, escaped
//! by construction) over the same records service the FHIR API uses, so consent, scopes and
//! audit apply exactly as they do there; a little JavaScript (served by the node, no external
//! requests) signs challenges and verifies access-log receipts in the browser.

mod access;
mod chart;
mod clinician;
mod consents;
mod counter;
mod explorer;
mod patient;
mod payments;
mod products;
mod signin;

pub(crate) use signin::is_loopback_host;

use std::sync::Arc;

use axum::{
    Router,
    extract::{FromRequestParts, State},
    http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use carechain_crypto::SecretKey;
use carechain_node::Node;
use carechain_service::{Purpose, Service, ServiceError, Session};
use carechain_types::Role;
use maud::{DOCTYPE, Markup, html};

/// A one-click sign-in offered on the sign-in page when the node runs in demo mode.
#[derive(Clone)]
pub struct DemoLogin {
    /// What the button says (e.g. "Alice Demo — patient").
    pub label: String,
    /// The demo identity's key (the node signs the challenge with it, through the same
    /// sign-in path a browser uses).
    pub key: SecretKey,
}

/// Options of the web UI.
#[derive(Clone, Default)]
pub struct UiOptions {
    /// Demo sign-ins; empty unless the node runs with `--demo`. Offered only to requests
    /// whose `Host` is a loopback address.
    pub demo_logins: Vec<DemoLogin>,
    /// The `Host` values every route answers to (`host:port`, lower case); empty allows any.
    pub allowed_hosts: Vec<String>,
}

#[derive(Clone)]
pub(crate) struct Portal {
    pub node: Arc<Node>,
    pub service: Arc<Service>,
    /// The supply service (the pharmacy counter), if this node runs one.
    pub supply: Option<Arc<carechain_supply::Supply>>,
    pub demo: Arc<Vec<DemoLogin>>,
    /// Display names by session token, found once per session (finding one reads the
    /// patient's record or searches the directory: audited accesses, not to repeat per page).
    names: Arc<parking_lot::Mutex<std::collections::HashMap<String, String>>>,
}

const COOKIE: &str = "carechain_session";
const CSS: &str = include_str!("assets/portal.css");
const JS: &str = include_str!("assets/portal.js");

pub(crate) fn routes(
    node: Arc<Node>,
    service: Arc<Service>,
    supply: Option<Arc<carechain_supply::Supply>>,
    ui: UiOptions,
) -> Router {
    let state = Portal {
        node,
        service,
        supply,
        demo: Arc::new(ui.demo_logins),
        names: Default::default(),
    };
    Router::new()
        .route("/", get(home))
        .route("/assets/portal.css", get(css))
        .route("/assets/portal.js", get(js))
        .route("/favicon.ico", get(icon))
        .route("/assets/icon.svg", get(icon))
        .merge(signin::routes())
        .merge(patient::routes())
        .merge(payments::routes())
        .merge(consents::routes())
        .merge(clinician::routes())
        .merge(explorer::routes())
        .merge(products::routes())
        .merge(counter::routes())
        .with_state(state)
}

/// A page failure: an HTML page with the status and a plain message (never health data:
/// service messages carry none).
pub(crate) struct PageError {
    status: StatusCode,
    title: &'static str,
    message: String,
    /// Who is signed in (boxed: errors stay small).
    viewer: Option<Box<Viewer>>,
}

impl PageError {
    pub fn new(status: u16, title: &'static str, message: impl Into<String>) -> Self {
        PageError {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            title,
            message: message.into(),
            viewer: None,
        }
    }
}

impl PageError {
    /// The same error, shown with the viewer's navigation.
    pub fn seen_by(mut self, v: &Viewer) -> Self {
        self.viewer = Some(Box::new(v.clone()));
        self
    }
}

impl From<ServiceError> for PageError {
    fn from(e: ServiceError) -> Self {
        let status = e.kind.http_status();
        let title = match status {
            401 => "Please sign in",
            403 => "Access denied",
            404 => "Not found",
            410 => "Erased",
            _ if status < 500 => "Request refused",
            _ => "Something went wrong",
        };
        let message = if status >= 500 {
            "internal error; see the node's log".to_string()
        } else {
            e.message
        };
        PageError::new(status, title, message)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let body = html! {
            p.notice.bad role="alert" { (self.message) }
            @if self.status == StatusCode::UNAUTHORIZED {
                p { a href="/" { "Sign in" } }
            } @else {
                p { a href="/" { "Back to the start" } }
            }
        };
        let mut r = page(self.title, self.viewer.as_deref(), body);
        *r.status_mut() = self.status;
        r
    }
}

/// Runs service calls off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ServiceError> + Send + 'static,
) -> Result<T, PageError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| PageError::new(500, "Something went wrong", "internal error"))?
        .map_err(PageError::from)
}

/// The signed-in identity of a request (from the session cookie), with what the pages need.
#[derive(Clone)]
pub(crate) struct Viewer {
    pub session: Session,
    /// `Patient/<id>` when the viewer is a patient with a record here.
    pub patient: Option<String>,
    /// A name to greet with (the patient's or practitioner's record), else the did.
    pub name: String,
}

impl Viewer {
    pub fn patient_id(&self) -> Option<&str> {
        self.patient.as_deref()?.strip_prefix("Patient/")
    }
}

fn cookie_token(h: &HeaderMap) -> Option<String> {
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

impl FromRequestParts<Portal> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &Portal) -> Result<Self, Self::Rejection> {
        let Some(token) = cookie_token(&parts.headers) else {
            return Err(Redirect::to("/").into_response());
        };
        let (svc, names) = (st.service.clone(), st.names.clone());
        let v = blocking(move || {
            let session = svc.session(Some(&token))?;
            let patient = svc.patient_reference(&session);
            let cached = names.lock().get(&token).cloned();
            let name = match cached {
                Some(n) => n,
                None => {
                    let n = display_name(&svc, &session, patient.as_deref());
                    let mut names = names.lock();
                    if names.len() >= 10_000 {
                        names.clear();
                    }
                    names.insert(token, n.clone());
                    n
                }
            };
            Ok(Viewer {
                session,
                patient,
                name,
            })
        })
        .await;
        // An expired or revoked session goes back to sign-in.
        v.map_err(|_| Redirect::to("/").into_response())
    }
}

/// A POST from another site is refused: the session cookie is `SameSite=Strict`, and the
/// `Origin` a browser sends must be this node.
pub(crate) struct SameOrigin;

impl<S: Send + Sync> FromRequestParts<S> for SameOrigin {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let h = &parts.headers;
        let origin = h.get(header::ORIGIN).and_then(|v| v.to_str().ok());
        let host = h.get(header::HOST).and_then(|v| v.to_str().ok());
        let fetch_site = h.get("sec-fetch-site").and_then(|v| v.to_str().ok());
        match (origin, host) {
            // No Origin: only a browser's own same-origin request (Sec-Fetch-Site) passes.
            (None, _) if fetch_site == Some("same-origin") => Ok(SameOrigin),
            (Some(o), Some(host))
                if o.strip_prefix("http://")
                    .or_else(|| o.strip_prefix("https://"))
                    == Some(host) =>
            {
                Ok(SameOrigin)
            }
            _ => Err(PageError::new(
                403,
                "Request refused",
                "cross-site request refused",
            )),
        }
    }
}

/// The name to show for a session: the patient's name, a practitioner's or organization's
/// directory entry, else the did.
fn display_name(svc: &Service, s: &Session, patient: Option<&str>) -> String {
    let own = purpose("TREAT", None);
    if let Some(id) = patient.and_then(|p| p.strip_prefix("Patient/"))
        && let Ok(r) = svc.read(s, &own, "Patient", id, None)
        && let Some(p) = r.resource
    {
        return chart::human_name(&p);
    }
    directory(svc, s)
        .into_iter()
        .find(|e| e.did == s.did.to_string())
        .map(|e| e.name)
        .unwrap_or_else(|| s.did.to_string())
}

/// A practitioner or organization the node knows (its FHIR record names its did).
#[derive(Clone, Debug)]
pub(crate) struct DirectoryEntry {
    pub did: String,
    pub name: String,
    pub kind: &'static str,
}

/// The practitioners and organizations with records on this node (readable by anyone signed
/// in: they are not patients' records).
pub(crate) fn directory(svc: &Service, s: &Session) -> Vec<DirectoryEntry> {
    let treat = purpose("TREAT", None);
    let mut out = Vec::new();
    for (rt, kind) in [
        ("Practitioner", "practitioner"),
        ("Organization", "organization"),
    ] {
        let params = vec![("_count".to_string(), "1000".to_string())];
        let Ok(b) = svc.search(s, &treat, rt, &params, "") else {
            continue;
        };
        for e in b["entry"].as_array().into_iter().flatten() {
            let r = &e["resource"];
            let did = r["identifier"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|i| i["system"] == "urn:ietf:rfc:3986")
                .and_then(|i| i["value"].as_str());
            if let Some(did) = did {
                let name = if rt == "Organization" {
                    r["name"].as_str().unwrap_or(did).to_string()
                } else {
                    chart::human_name(r)
                };
                out.push(DirectoryEntry {
                    did: did.to_string(),
                    name,
                    kind,
                });
            }
        }
    }
    out.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
    out
}

pub(crate) fn purpose(code: &str, reason: Option<String>) -> Purpose {
    Purpose {
        code: code.to_string(),
        break_glass_reason: reason.filter(|r| !r.trim().is_empty()),
    }
}

/// Purposes of use a clinician may choose (v3 ActReason).
pub(crate) const PURPOSES: &[(&str, &str)] = &[
    ("TREAT", "Treatment"),
    ("HPAYMT", "Payment"),
    ("HRESCH", "Research"),
    ("HOPERAT", "Healthcare operations"),
    ("PATRQT", "Patient requested"),
];

/// The HTML page around a body: header with navigation for the viewer, main landmark.
pub(crate) fn page(title: &str, viewer: Option<&Viewer>, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width,initial-scale=1";
                title { (title) " · carechain" }
                link rel="icon" href="/assets/icon.svg" type="image/svg+xml";
                link rel="stylesheet" href="/assets/portal.css";
                script src="/assets/portal.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/" { "carechain" }
                    nav aria-label="Main" {
                        ul {
                            @if let Some(v) = viewer {
                                @match v.session.role {
                                    Role::Patient => {
                                        li { a href="/patient" { "My records" } }
                                        li { a href="/patient/consents" { "Consents" } }
                                        li { a href="/patient/access" { "Who accessed my data" } }
                                        li { a href="/patient/payments" { "Payments" } }
                                    }
                                    Role::Operator => {}
                                    _ => {
                                        li { a href="/clinician" { "Patients" } }
                                        li { a href="/supply" { "Pharmacy counter" } }
                                    }
                                }
                            }
                            li { a href="/explorer" { "Ledger" } }
                        }
                    }
                    @if let Some(v) = viewer {
                        form.signout method="post" action="/logout" {
                            span.who { (v.name) " · " (v.session.role.as_str()) }
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main id="main" tabindex="-1" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    };
    let mut r = markup.into_response();
    security_headers(r.headers_mut());
    r
}

fn security_headers(h: &mut HeaderMap) {
    // Everything comes from this node: no external requests, no inline script.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::REFERRER_POLICY,
        // `same-origin`, not `no-referrer`: with the latter a browser's form POST carries
        // `Origin: null` and the same-origin check would refuse it.
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        CSS,
    )
        .into_response()
}

async fn icon() -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "max-age=86400"),
        ],
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 16 16\"><rect width=\"16\" height=\"16\" rx=\"3\" fill=\"#0b4f6c\"/><path d=\"M7 3h2v4h4v2H9v4H7V9H3V7h4z\" fill=\"#fff\"/></svg>",
    )
        .into_response()
}

async fn js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        JS,
    )
        .into_response()
}

fn landing(role: Role) -> &'static str {
    match role {
        Role::Patient => "/patient",
        Role::Operator => "/explorer",
        _ => "/clinician",
    }
}

async fn home(State(st): State<Portal>, h: HeaderMap) -> Response {
    if let Some(t) = cookie_token(&h) {
        let svc = st.service.clone();
        if let Ok(s) = blocking(move || svc.session(Some(&t))).await {
            return Redirect::to(landing(s.role)).into_response();
        }
    }
    let body = html! {
        p.lead { "You decide who sees your health data, and you can see who did. Sign in with your carechain identity." }
        section aria-labelledby="key-h" {
            h2 id="key-h" { "Sign in with your key" }
            p { "Choose the key file " code { "carechain key new" } " made for you. It stays in this browser: only a signature over a one-time challenge is sent." }
            form id="key-login" {
                label for="keyfile" { "Key file" }
                input id="keyfile" name="keyfile" type="file" accept=".key,.json,application/json" required;
                button type="submit" { "Sign in" }
                p id="key-login-status" role="status" aria-live="polite" {}
            }
        }
        @if !st.demo.is_empty() && is_loopback_host(&h) {
            section aria-labelledby="demo-h" {
                h2 id="demo-h" { "Demo sign-in" }
                p { "This node runs in demo mode with demo identities. Pick one:" }
                ul.demo {
                    @for (i, d) in st.demo.iter().enumerate() {
                        li {
                            form method="post" action="/login/demo" {
                                input type="hidden" name="who" value=(i);
                                button type="submit" { (d.label) }
                            }
                        }
                    }
                }
            }
        }
        p { "Or look at the public ledger: " a href="/explorer" { "ledger explorer" } "." }
    };
    page("Sign in", None, body)
}
