//! Sign-in and sign-out: the challenge an identity's key signs in the browser, the session
//! cookie, the one-click demo sign-in (demo mode, loopback only).

use axum::{
    Form, Json,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
};
use carechain_crypto::Namespace;
use serde::Deserialize;
use serde_json::json;

use super::*;

pub(crate) fn routes() -> Router<Portal> {
    Router::new()
        .route("/login/challenge", post(challenge))
        .route("/login", post(login))
        .route("/login/demo", post(demo_login))
        .route("/logout", post(logout))
}

#[derive(Deserialize)]
struct ChallengeReq {
    did: String,
}

fn json_error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"error": message}))).into_response()
}

/// Runs a sign-in step off the async threads; a refusal becomes a JSON error.
async fn json_step<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ServiceError> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(json_error(crate::error::fhir_status(e.kind), &e.message)),
        Err(_) => Err(StatusCode::INTERNAL_SERVER_ERROR.into_response()),
    }
}

async fn challenge(
    State(st): State<Portal>,
    _: SameOrigin,
    body: Result<Json<ChallengeReq>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(req)) = body else {
        return json_error(StatusCode::BAD_REQUEST, "expected {\"did\": \"did:key:…\"}");
    };
    let svc = st.service.clone();
    match json_step(move || svc.login_challenge(&req.did)).await {
        Ok(c) => Json(json!({"challenge": c})).into_response(),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct LoginReq {
    did: String,
    challenge: String,
    signature: String,
}

/// The session cookie; `Secure` when the browser reached the node over HTTPS (through a TLS
/// proxy that says so with `X-Forwarded-Proto`), so the cookie never travels in clear text.
fn session_cookie(h: &HeaderMap, token: &str, max_age_s: u64) -> HeaderValue {
    let https = h
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"));
    let secure = if https { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("invalid=1"))
}

async fn login(
    State(st): State<Portal>,
    _: SameOrigin,
    h: HeaderMap,
    body: Result<Json<LoginReq>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(req)) = body else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "expected did, challenge and signature",
        );
    };
    let svc = st.service.clone();
    match json_step(move || svc.login(&req.did, &req.challenge, &req.signature)).await {
        Ok((token, s)) => {
            let mut r = Json(json!({"redirect": landing(s.role)})).into_response();
            r.headers_mut()
                .insert(header::SET_COOKIE, session_cookie(&h, &token, 8 * 3600));
            r
        }
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct DemoReq {
    who: usize,
}

/// Demo mode only: signs the challenge with the demo identity's key on the node's side, then
/// takes exactly the path a browser's signature takes.
async fn demo_login(
    State(st): State<Portal>,
    _: SameOrigin,
    h: HeaderMap,
    Form(req): Form<DemoReq>,
) -> Result<Response, PageError> {
    if !is_loopback_host(&h) {
        return Err(PageError::new(
            403,
            "Request refused",
            "demo sign-in is offered only on a loopback address",
        ));
    }
    let Some(d) = st.demo.get(req.who).cloned() else {
        return Err(PageError::new(
            404,
            "Not found",
            "no such demo identity (demo sign-in exists only in demo mode)",
        ));
    };
    let svc = st.service.clone();
    let (token, s) = blocking(move || {
        let did = d.key.public().did().to_string();
        let c = svc.login_challenge(&did)?;
        let sig = d.key.sign(Namespace::Challenge, c.as_bytes());
        svc.login(&did, &c, &sig.to_hex())
    })
    .await?;
    let mut r = Redirect::to(landing(s.role)).into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, session_cookie(&h, &token, 8 * 3600));
    Ok(r)
}

/// Whether the request's `Host` is a loopback address (`localhost`, `127.0.0.0/8`, `[::1]`).
pub(crate) fn is_loopback_host(h: &HeaderMap) -> bool {
    let Some(host) = h.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let name = match host.rsplit_once(':') {
        Some((n, port)) if port.chars().all(|c| c.is_ascii_digit()) => n,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

async fn logout(State(st): State<Portal>, _: SameOrigin, h: HeaderMap) -> Response {
    if let Some(t) = cookie_token(&h) {
        st.names.lock().remove(&t);
        st.service.logout(&t);
    }
    let mut r = Redirect::to("/").into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, session_cookie(&h, "", 0));
    r
}
