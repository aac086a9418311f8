//! `/fhir` (FHIR R4 REST: create, read, vread, update, delete, history, `$erase`), the OAuth2
//! token endpoint with SMART configuration, and the patient's access log and alerts.

use std::sync::Arc;

use axum::{
    Form, Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use carechain_node::Node;
use carechain_service::{ErrorKind, Purpose, Service, ServiceError, Session};
use serde::Deserialize;
use serde_json::{Value, json};

mod claims;
mod log;
mod network;

pub(crate) use log::with_proofs;
use log::{access_log, alerts};

#[derive(Clone)]
pub struct FhirState {
    pub node: Arc<Node>,
    pub service: Arc<Service>,
}

const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";
const MAX_RESOURCE_BYTES: usize = 4 * 1024 * 1024;

pub fn routes(state: FhirState) -> Router {
    Router::new()
        .route("/auth/token", post(token))
        .route("/.well-known/smart-configuration", get(smart_configuration))
        .route("/fhir/metadata", get(metadata))
        .route("/fhir", post(bundle))
        .route("/fhir/", post(bundle))
        .route(
            "/fhir/{rt}",
            post(create)
                .get(search)
                .put(update_conditional)
                .delete(delete_conditional),
        )
        .route("/fhir/Claim/$submit", post(claims::submit))
        .route("/fhir/Claim/$inquire", post(claims::inquire))
        .route("/fhir/Invoice/{id}/$reconcile", post(claims::reconcile))
        .route("/fhir/{rt}/_history", get(history_type))
        .route("/fhir/{rt}/{id}", get(read).put(update).delete(delete))
        .route("/fhir/{rt}/{id}/_history", get(history))
        .route("/fhir/{rt}/{id}/_history/{vid}", get(vread))
        .route("/fhir/{rt}/{id}/{op}", post(operation).get(compartment))
        .route("/patients/{id}/access-log", get(access_log))
        .route("/me/access-log", get(network::my_access_log))
        .route("/patients/{id}/alerts", get(alerts))
        .layer(DefaultBodyLimit::max(MAX_RESOURCE_BYTES))
        .with_state(state)
}

struct Fail(ServiceError);

impl IntoResponse for Fail {
    fn into_response(self) -> Response {
        if let Some(src) = &self.0.source {
            tracing::error!(error = %src, "request failed");
        }
        let status = crate::error::fhir_status(self.0.kind);
        let mut r = (status, Json(self.0.outcome())).into_response();
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

impl From<ServiceError> for Fail {
    fn from(e: ServiceError) -> Self {
        Fail(e)
    }
}

fn err(kind: ErrorKind, msg: &str) -> Fail {
    Fail(ServiceError::new(kind, msg))
}

fn fhir(status: StatusCode, body: Value) -> Response {
    let mut r = (status, Json(body)).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    r
}

pub(crate) fn bearer(h: &HeaderMap) -> Option<String> {
    h.get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(|s| s.trim().to_string())
}

fn purpose(h: &HeaderMap) -> Purpose {
    let get = |n: &str| {
        h.get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    Purpose {
        code: get("x-purpose-of-use").unwrap_or_else(|| "TREAT".into()),
        break_glass_reason: get("x-break-glass-reason"),
    }
}

fn check_type(rt: &str) -> Result<(), Fail> {
    if carechain_fhir::model().is_resource(rt) {
        Ok(())
    } else {
        Err(err(
            ErrorKind::UnknownType,
            &format!("unknown resource type {rt}"),
        ))
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ServiceError> + Send + 'static,
) -> Result<T, Fail> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| err(ErrorKind::Internal, "internal error"))?
        .map_err(Fail)
}

async fn session(s: &FhirState, h: &HeaderMap) -> Result<Session, Fail> {
    let svc = s.service.clone();
    let b = bearer(h);
    blocking(move || svc.session(b.as_deref())).await
}

fn parse_body(
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Value, Fail> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            err(
                ErrorKind::TooCostly,
                &format!("the body is larger than {MAX_RESOURCE_BYTES} bytes"),
            )
        } else {
            err(ErrorKind::Structure, "the body could not be read")
        }
    })?;
    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| err(ErrorKind::Structure, &format!("body is not JSON: {e}")))?;
    if !v.is_object() {
        return Err(err(
            ErrorKind::Structure,
            "body must be a JSON object (a FHIR resource)",
        ));
    }
    Ok(v)
}

fn if_match(h: &HeaderMap) -> Result<Option<u64>, Fail> {
    let Some(v) = h.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let s = v
        .to_str()
        .map_err(|_| err(ErrorKind::BadRequest, "bad If-Match"))?;
    let inner = s.trim().trim_start_matches("W/").trim_matches('"');
    inner
        .parse()
        .map(Some)
        .map_err(|_| err(ErrorKind::BadRequest, "If-Match must be W/\"<version>\""))
}

fn served(status: StatusCode, rt: &str, id: &str, r: carechain_service::Served) -> Response {
    let mut resp = fhir(status, r.resource.unwrap_or(Value::Null));
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("W/\"{}\"", r.version)) {
        h.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("/fhir/{rt}/{id}/_history/{}", r.version)) {
        h.insert(header::CONTENT_LOCATION, v.clone());
        if status == StatusCode::CREATED {
            h.insert(header::LOCATION, v);
        }
    }
    if let Some(tx) = r.tx
        && let Ok(v) = HeaderValue::from_str(&tx.to_hex())
    {
        h.insert("x-carechain-tx", v);
    }
    if r.break_glass {
        h.insert("x-carechain-break-glass", HeaderValue::from_static("true"));
    }
    resp
}

/// The answer to a create or conditional write: 201 when it created, else 200.
fn written(rt: &str, r: carechain_service::Served, created: bool) -> Response {
    let id = r.id().to_string();
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    served(status, rt, &id, r)
}

async fn create(
    State(s): State<FhirState>,
    Path(rt): Path<String>,
    h: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, Fail> {
    check_type(&rt)?;
    let sess = session(&s, &h).await?;
    let v = parse_body(body)?;
    let (svc, p, rt2) = (s.service.clone(), purpose(&h), rt.clone());
    let condition = match h.get("if-none-exist") {
        Some(c) => Some(
            c.to_str()
                .map_err(|_| err(ErrorKind::BadRequest, "bad If-None-Exist"))?
                .to_string(),
        ),
        None => None,
    };
    let (r, created) = blocking(move || match condition {
        Some(q) => svc.create_if_none_exist(&sess, &p, &rt2, &q, v),
        None => svc.write(&sess, &p, &rt2, None, None, v).map(|r| (r, true)),
    })
    .await?;
    Ok(written(&rt, r, created))
}

async fn bundle(
    State(s): State<FhirState>,
    h: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, Fail> {
    let sess = session(&s, &h).await?;
    let v = parse_body(body)?;
    let (svc, p) = (s.service.clone(), purpose(&h));
    let out = blocking(move || svc.bundle(&sess, &p, v)).await?;
    Ok(fhir(StatusCode::OK, out))
}

async fn search(
    State(s): State<FhirState>,
    Path(rt): Path<String>,
    h: HeaderMap,
    uri: axum::http::Uri,
) -> Result<Response, Fail> {
    check_type(&rt)?;
    let sess = session(&s, &h).await?;
    let params: Vec<(String, String)> = serde_urlencoded_pairs(uri.query().unwrap_or(""))?;
    let base = base_url(&h);
    let (svc, p) = (s.service.clone(), purpose(&h));
    let out = blocking(move || svc.network_search(&sess, &p, &rt, &params, &base)).await?;
    Ok(fhir(StatusCode::OK, out))
}

fn serde_urlencoded_pairs(q: &str) -> Result<Vec<(String, String)>, Fail> {
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(
        &format!("/?{q}")
            .parse()
            .map_err(|_| err(ErrorKind::BadRequest, "bad query string"))?,
    )
    .map(|axum::extract::Query(v)| v)
    .map_err(|_| err(ErrorKind::BadRequest, "bad query string"))
}

async fn update(
    State(s): State<FhirState>,
    Path((rt, id)): Path<(String, String)>,
    h: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, Fail> {
    check_type(&rt)?;
    let sess = session(&s, &h).await?;
    let v = parse_body(body)?;
    let m = if_match(&h)?;
    let (svc, p, rt2, id2) = (s.service.clone(), purpose(&h), rt.clone(), id.clone());
    let r = blocking(move || svc.write(&sess, &p, &rt2, Some(&id2), m, v)).await?;
    let status = if r.version == 1 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(served(status, &rt, &id, r))
}

async fn update_conditional(
    State(s): State<FhirState>,
    Path(rt): Path<String>,
    h: HeaderMap,
    uri: axum::http::Uri,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, Fail> {
    check_type(&rt)?;
    let sess = session(&s, &h).await?;
    let v = parse_body(body)?;
    let query = uri.query().unwrap_or("").to_string();
    let (svc, p, rt2) = (s.service.clone(), purpose(&h), rt.clone());
    let (r, created) = blocking(move || svc.update_conditional(&sess, &p, &rt2, &query, v)).await?;
    Ok(written(&rt, r, created))
}

async fn read(
    State(s): State<FhirState>,
    Path((rt, id)): Path<(String, String)>,
    h: HeaderMap,
) -> Result<Response, Fail> {
    check_type(&rt)?;
    let sess = session(&s, &h).await?;
    let (svc, p, rt2, id2) = (s.service.clone(), purpose(&h), rt.clone(), id.clone());
    let r = blocking(move || svc.read(&sess, &p, &rt2, &id2, None)).await?;
    Ok(served(StatusCode::OK, &rt, &id, r))
}

async fn vread(
    State(s): State<FhirState>,
    Path((rt, id, vid)): Path<(String, String, String)>,
    h: HeaderMap,
) -> Result<Response, Fail> {
    check_type(&rt)?;
    let v: u64 = vid
        .parse()
        .map_err(|_| err(ErrorKind::BadRequest, "version id must be a number"))?;
    let sess = session(&s, &h).await?;
    let (svc, p, rt2, id2) = (s.service.clone(), purpose(&h), rt.clone(), id.clone());
    let r = blocking(move || svc.read(&sess, &p, &rt2, &id2, Some(v))).await?;
    Ok(served(StatusCode::OK, &rt, &id, r))
}

async fn delete(
    State(s): State<FhirState>,
    Path((rt, id)): Path<(String, String)>,
    h: HeaderMap,
) -> Result<Response, Fail> {
    check_type(&rt)?;
    let sess = session(&s, &h).await?;
    let (svc, p, rt2, id2) = (s.service.clone(), purpose(&h), rt.clone(), id.clone());
    let r = blocking(move || svc.delete(&sess, &p, &rt2, &id2)).await?;
    Ok(deleted(Some(r.version)))
}

/// 204, with the deletion's version as the ETag when something was deleted.
fn deleted(version: Option<u64>) -> Response {
    let mut resp = StatusCode::NO_CONTENT.into_response();
    if let Some(v) = version.and_then(|v| HeaderValue::from_str(&format!("W/\"{v}\"")).ok()) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp
}

async fn delete_conditional(
    State(s): State<FhirState>,
    Path(rt): Path<String>,
    h: HeaderMap,
    uri: axum::http::Uri,
) -> Result<Response, Fail> {
    check_type(&rt)?;
    let sess = session(&s, &h).await?;
    let query = uri.query().unwrap_or("").to_string();
    let (svc, p) = (s.service.clone(), purpose(&h));
    let r = blocking(move || svc.delete_conditional(&sess, &p, &rt, &query)).await?;
    Ok(deleted(r.map(|r| r.version)))
}

async fn history(
    State(s): State<FhirState>,
    Path((rt, id)): Path<(String, String)>,
    h: HeaderMap,
) -> Result<Response, Fail> {
    check_type(&rt)?;
    let sess = session(&s, &h).await?;
    let (svc, p, rt2, id2) = (s.service.clone(), purpose(&h), rt.clone(), id.clone());
    let versions = blocking(move || svc.history(&sess, &p, &rt2, &id2)).await?;
    let entries: Vec<Value> = versions
        .iter()
        .map(|(m, r)| history_entry(&rt, &id, m, r.as_ref()))
        .collect();
    Ok(fhir(
        StatusCode::OK,
        json!({"resourceType": "Bundle", "type": "history", "total": entries.len(), "entry": entries}),
    ))
}

fn history_entry(
    rt: &str,
    id: &str,
    m: &carechain_records::VersionMeta,
    r: Option<&Value>,
) -> Value {
    let method = if m.deleted {
        "DELETE"
    } else if m.version == 1 {
        "POST"
    } else {
        "PUT"
    };
    let mut e = json!({
        "fullUrl": format!("/fhir/{rt}/{id}"),
        "request": {"method": method, "url": if method == "POST" { rt.to_string() } else { format!("{rt}/{id}") }},
        "response": {
            "status": if m.deleted { "204" } else if m.version == 1 { "201" } else { "200" },
            "etag": format!("W/\"{}\"", m.version),
            "lastModified": carechain_records::format_instant(m.last_updated_ms)
        }
    });
    if let Some(r) = r {
        e["resource"] = r.clone();
    }
    e
}

/// `GET /fhir/{rt}/_history[?_since=…&_count=…]`: the type's versions the caller may read.
async fn history_type(
    State(s): State<FhirState>,
    Path(rt): Path<String>,
    h: HeaderMap,
    uri: axum::http::Uri,
) -> Result<Response, Fail> {
    check_type(&rt)?;
    let sess = session(&s, &h).await?;
    let mut since = None;
    let mut count = 100usize;
    for (k, v) in serde_urlencoded_pairs(uri.query().unwrap_or(""))? {
        match k.as_str() {
            "_since" => {
                since = Some(carechain_service::parse_since(&v).ok_or_else(|| {
                    err(
                        ErrorKind::BadRequest,
                        "_since must be a FHIR instant or date",
                    )
                })?)
            }
            "_count" => {
                count = v
                    .parse()
                    .ok()
                    .filter(|c| (1..=1000).contains(c))
                    .ok_or_else(|| err(ErrorKind::BadRequest, "_count must be 1..1000"))?
            }
            "_format" | "_pretty" => {}
            other => {
                return Err(err(
                    ErrorKind::NotSupported,
                    &format!("{other} is not supported on _history (_since and _count are)"),
                ));
            }
        }
    }
    let (svc, p, rt2) = (s.service.clone(), purpose(&h), rt.clone());
    let versions = blocking(move || svc.history_type(&sess, &p, &rt2, since, count)).await?;
    let entries: Vec<Value> = versions
        .iter()
        .map(|(id, m, r)| history_entry(&rt, id, m, r.as_ref()))
        .collect();
    Ok(fhir(
        StatusCode::OK,
        json!({"resourceType": "Bundle", "type": "history", "total": entries.len(), "entry": entries}),
    ))
}

/// `GET /fhir/Patient/{id}/{type}?…`: a search of `type` within the patient's compartment;
/// `GET /fhir/{type}/{id}/$envelope`: a record's envelope for its patient.
async fn compartment(
    State(s): State<FhirState>,
    Path((rt, id, target)): Path<(String, String, String)>,
    h: HeaderMap,
    uri: axum::http::Uri,
) -> Result<Response, Fail> {
    check_type(&rt)?;
    if target == "$envelope" {
        // The record's ciphertext and wrapped keys, for its patient to decrypt offline.
        let sess = session(&s, &h).await?;
        let (svc, p) = (s.service.clone(), purpose(&h));
        let env = blocking(move || svc.envelope(&sess, &p, &rt, &id, None)).await?;
        return Ok((StatusCode::OK, Json(env)).into_response());
    }
    if target == "$everything" && rt == "Patient" {
        return network::everything(&s, id, &h).await;
    }
    check_type(&target)?;
    if rt != "Patient" {
        return Err(err(
            ErrorKind::NotSupported,
            "only the Patient compartment is supported",
        ));
    }
    let link = carechain_fhir::compartment::patient_link(&target).ok_or_else(|| {
        err(
            ErrorKind::NotSupported,
            &format!("{target} is not in the Patient compartment"),
        )
    })?;
    let sess = session(&s, &h).await?;
    let mut params = serde_urlencoded_pairs(uri.query().unwrap_or(""))?;
    params.insert(0, (link.to_string(), format!("Patient/{id}")));
    let base = base_url(&h);
    let (svc, p) = (s.service.clone(), purpose(&h));
    let out = blocking(move || svc.search(&sess, &p, &target, &params, &base)).await?;
    Ok(fhir(StatusCode::OK, out))
}

fn base_url(h: &HeaderMap) -> String {
    h.get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(|host| format!("http://{host}"))
        .unwrap_or_default()
}

async fn operation(
    State(s): State<FhirState>,
    Path((rt, id, op)): Path<(String, String, String)>,
    h: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, Fail> {
    check_type(&rt)?;
    let sess = session(&s, &h).await?;
    let (svc, p) = (s.service.clone(), purpose(&h));
    let out = match (rt.as_str(), op.as_str()) {
        (_, "$erase") => blocking(move || svc.erase(&sess, &p, &rt, &id)).await?,
        ("Patient", "$activation-code") => {
            blocking(move || svc.activation_code(&sess, &p, &id)).await?
        }
        ("Patient", "$claim") => {
            let v = parse_body(body)?;
            let field = |k: &str| {
                v[k].as_str()
                    .map(str::to_string)
                    .ok_or_else(|| err(ErrorKind::BadRequest, &format!("$claim needs \"{k}\"")))
            };
            let req = carechain_service::ClaimRequest {
                patient_id: id,
                code: field("code")?,
                signature: field("signature")?,
            };
            blocking(move || svc.claim(&sess, &p, &req)).await?
        }
        _ => {
            return Err(err(
                ErrorKind::NotFound,
                &format!("operation {op} is not supported on {rt}"),
            ));
        }
    };
    Ok((StatusCode::OK, Json(out)).into_response())
}

#[derive(Deserialize)]
struct TokenForm {
    grant_type: Option<String>,
    client_assertion_type: Option<String>,
    client_assertion: Option<String>,
    scope: Option<String>,
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

async fn token(
    State(s): State<FhirState>,
    form: Result<Form<TokenForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(f)) = form else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "expected an application/x-www-form-urlencoded body",
        );
    };
    if f.grant_type.as_deref() != Some("client_credentials") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only client_credentials is supported",
        );
    }
    if f.client_assertion_type.as_deref()
        != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
    {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "client_assertion_type must be jwt-bearer (private_key_jwt)",
        );
    }
    let Some(assertion) = f.client_assertion else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "client_assertion is required",
        );
    };
    let scope = f.scope.unwrap_or_default();
    let svc = s.service.clone();
    match tokio::task::spawn_blocking(move || svc.issue_token(&assertion, &scope)).await {
        Ok(Ok((token, expires, scope))) => Json(json!({"access_token": token, "token_type": "Bearer", "expires_in": expires, "scope": scope})).into_response(),
        Ok(Err(e)) if e.kind == ErrorKind::Unauthenticated => oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", &e.message),
        Ok(Err(e)) if e.kind == ErrorKind::Busy => oauth_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", &e.message),
        Ok(Err(e)) => oauth_error(StatusCode::BAD_REQUEST, "invalid_scope", &e.message),
        Err(_) => oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "internal error"),
    }
}

async fn smart_configuration(State(s): State<FhirState>) -> Response {
    Json(json!({
        "token_endpoint": s.service.token_audience(),
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["EdDSA"],
        "scopes_supported": ["patient/*.cruds", "user/*.cruds", "system/*.cruds"],
        "capabilities": ["client-confidential-asymmetric", "permission-v2"],
    }))
    .into_response()
}

async fn metadata(State(s): State<FhirState>) -> Response {
    let interactions = json!([{"code": "create"}, {"code": "read"}, {"code": "vread"}, {"code": "update"}, {"code": "delete"}, {"code": "history-instance"}, {"code": "history-type"}, {"code": "search-type"}]);
    let mut types: Vec<&String> = carechain_fhir::model()
        .types
        .iter()
        .filter(|(_, t)| matches!(t.kind, carechain_fhir::model::Kind::Resource))
        .map(|(n, _)| n)
        .collect();
    types.sort();
    let resources: Vec<Value> = types
        .iter()
        .map(|t| json!({"type": t, "interaction": interactions,
            "searchParam": carechain_fhir::search::params_for(t).into_iter().map(|(c, k)| json!({"name": c, "type": k})).collect::<Vec<_>>(), "versioning": "versioned", "readHistory": true, "updateCreate": true, "conditionalCreate": true, "searchInclude": carechain_fhir::search::params_for(t).into_iter().filter(|(_, k)| *k == "reference").map(|(c, _)| format!("{t}:{c}")).collect::<Vec<_>>(), "conditionalUpdate": true, "conditionalDelete": "single", "operation": [{"name": "erase", "definition": "http://carechain.example/fhir/OperationDefinition/erase"}]}))
        .collect();
    fhir(
        StatusCode::OK,
        json!({
            "resourceType": "CapabilityStatement",
            "status": "active",
            "date": carechain_records::format_instant(carechain_node::now_ms()),
            "kind": "instance",
            "software": {"name": "carechain", "version": env!("CARGO_PKG_VERSION")},
            "implementation": {"description": format!("carechain node for chain {}", s.node.store().genesis().chain_id)},
            "fhirVersion": "4.0.1",
            "format": ["json"],
            "rest": [{
                "mode": "server",
                "documentation": "Transaction bundles (DELETE, POST incl. ifNoneExist, PUT and GET entries, in the FHIR order; urn:uuid references resolved; all or nothing) and batch bundles (incl. searches) are supported. Search: the official token, string, date, reference, uri and number parameters of every resource (simple paths), chained reference parameters (subject:Patient.name, up to 3 deep), reverse chaining (_has:Observation:patient:code=…, nestable, up to 3 deep), _id, _lastUpdated, _count, _sort, _include and _revinclude (also :iterate, up to 4 rounds), _summary=true|text|data|count|false (true: the official summary elements, text: narrative and required elements, both applied at the top level of each match), _elements (matches marked SUBSETTED), _text (words in the narrative) and _content (words anywhere in the resource; comma = or, each word of an alternative must start a word there, case-insensitive; matched on the decrypted resources the caller may see), paging; not supported: _filter. Conditional create (If-None-Exist), conditional update (PUT [type]?query) and conditional delete (DELETE [type]?query, one match at a time) only see resources the caller may read. Every access is consent-checked and audited; search results are filtered by consent.",
            "interaction": [{"code": "transaction"}, {"code": "batch"}],
                "security": {
                    "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "SMART-on-FHIR"}]}],
                    "extension": [{"url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris", "extension": [{"url": "token", "valueUri": s.service.token_audience()}]}]
                },
                "resource": resources
            }]
        }),
    )
}
