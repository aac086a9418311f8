//! The supply chain over HTTP: the GS1 EPCIS 2.0 REST binding under `/epcis` (capture and
//! capture jobs, events and their resource views, named queries and webhook subscriptions),
//! pack verification at `/verify`, a product's journey, and the organization's alerts.
//! Errors are RFC 7807 problem documents (`application/problem+json`) with the EPCIS
//! exception type; every call is made as an authenticated organization or member of one.

use std::sync::Arc;

use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, Path, RawQuery, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use carechain_service::ErrorKind;
use carechain_supply::{
    Actor, Behaviour, CAPTURE_LIMIT, Format, MAX_CAPTURE_BYTES, Query, Supply, SupplyError,
};
use serde_json::{Value, json};

#[derive(Clone)]
pub(crate) struct EpcisState {
    pub supply: Arc<Supply>,
}

pub(crate) struct Problem(SupplyError);

impl From<SupplyError> for Problem {
    fn from(e: SupplyError) -> Self {
        Problem(e)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let (status, kind) = match &self.0 {
            SupplyError::Bad(m) if m.starts_with("conflict:") => {
                (StatusCode::CONFLICT, "ResourceAlreadyExistsException")
            }
            SupplyError::Bad(m) if m.contains("QueryParameterException") => {
                (StatusCode::BAD_REQUEST, "QueryParameterException")
            }
            SupplyError::Bad(_) | SupplyError::Schema(_) => {
                (StatusCode::BAD_REQUEST, "ValidationException")
            }
            SupplyError::Forbidden(_) => (StatusCode::FORBIDDEN, "ClientUnauthorizedException"),
            SupplyError::NotFound(_) => (StatusCode::NOT_FOUND, "NoSuchResourceException"),
            SupplyError::TooLarge(_) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "CaptureLimitExceededException",
            ),
            SupplyError::Service(e) => {
                let status = crate::error::fhir_status(e.kind);
                let kind = match e.kind {
                    ErrorKind::Unauthenticated | ErrorKind::Forbidden => "SecurityException",
                    ErrorKind::NotFound | ErrorKind::Gone => "NoSuchResourceException",
                    _ if status.is_client_error() => "ValidationException",
                    _ => "ImplementationException",
                };
                (status, kind)
            }
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "ImplementationException"),
        };
        let detail = if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %self.0, "EPCIS request failed");
            "internal error; see the node log".to_string()
        } else {
            self.0.to_string()
        };
        let mut body = json!({
            "type": format!("epcisException:{kind}"),
            "title": kind,
            "status": status.as_u16(),
            "detail": detail,
        });
        if let SupplyError::Schema(errs) = &self.0 {
            body["errors"] = json!(errs);
        }
        let mut r = (status, Json(body)).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

type Res = Result<Response, Problem>;

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SupplyError> + Send + 'static,
) -> Result<T, Problem> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| Problem(SupplyError::Bad("internal error".into())))?
        .map_err(Problem)
}

/// Runs `f` as the caller's organization.
async fn as_actor<T: Send + 'static>(
    st: &EpcisState,
    h: &HeaderMap,
    f: impl FnOnce(&Arc<Supply>, &Actor) -> Result<T, SupplyError> + Send + 'static,
) -> Result<T, Problem> {
    let supply = st.supply.clone();
    let b = crate::fhir::bearer(h);
    blocking(move || {
        let session = supply.service().session(b.as_deref())?;
        let actor = supply.actor(&session)?;
        f(&supply, &actor)
    })
    .await
}

fn gs1_headers(r: &mut Response) {
    let h = r.headers_mut();
    h.insert("GS1-EPCIS-Version", HeaderValue::from_static("2.0.0"));
    h.insert("GS1-CBV-Version", HeaderValue::from_static("2.0.0"));
    h.insert("GS1-EPCIS-Capture-Limit", HeaderValue::from(CAPTURE_LIMIT));
    h.insert(
        "GS1-EPCIS-Capture-File-Size-Limit",
        HeaderValue::from(MAX_CAPTURE_BYTES),
    );
}

fn ld(status: StatusCode, v: Value) -> Response {
    let mut r = (status, Json(v)).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/ld+json"),
    );
    gs1_headers(&mut r);
    r
}

/// `body` with a `Location` header.
fn located(status: StatusCode, body: Value, location: &str) -> Response {
    let mut r = ld(status, body);
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// A JSON request body.
fn json_body(body: &[u8]) -> Result<Value, Problem> {
    serde_json::from_slice(body).map_err(|e| Problem(SupplyError::Bad(format!("not JSON: {e}"))))
}

fn pairs(q: Option<String>) -> Vec<(String, String)> {
    form_urlencoded::parse(q.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

/// The resource views of events: the path and the query parameter it stands for.
const VIEWS: [(&str, &str); 5] = [
    ("/epcis/eventTypes/{v}/events", "eventType"),
    ("/epcis/bizSteps/{v}/events", "EQ_bizStep"),
    ("/epcis/bizLocations/{v}/events", "EQ_bizLocation"),
    ("/epcis/readPoints/{v}/events", "EQ_readPoint"),
    ("/epcis/dispositions/{v}/events", "EQ_disposition"),
];

pub(crate) fn routes(supply: Arc<Supply>) -> Router {
    let mut r = Router::new()
        .route("/epcis", get(root).options(root))
        .route("/epcis/capture", get(captures).post(capture))
        .route("/epcis/capture/{id}", get(capture_job))
        .route("/epcis/events", get(events))
        .route("/epcis/events/{id}", get(event))
        .route("/epcis/epcs/{epc}/events", get(epc_events));
    for (path, param) in VIEWS {
        r = r.route(path, get(move |s, h, p, q| view(param, s, h, p, q)));
    }
    r.route("/epcis/queries", get(queries).post(create_query))
        .route("/epcis/queries/{name}", get(query_def).delete(delete_query))
        .route("/epcis/queries/{name}/events", get(query_events))
        .route(
            "/epcis/queries/{name}/subscriptions",
            get(subscriptions).post(subscribe),
        )
        .route(
            "/epcis/queries/{name}/subscriptions/{id}",
            axum::routing::delete(unsubscribe),
        )
        .route("/epcis/alerts", get(alerts))
        .route("/epcis/products/{*pack}", get(product))
        .route("/verify", get(verify_query))
        .route("/verify/{*pack}", get(verify_path))
        .layer(DefaultBodyLimit::max(MAX_CAPTURE_BYTES))
        .with_state(EpcisState { supply })
}

async fn root() -> Response {
    ld(
        StatusCode::OK,
        json!({
            "endpoints": ["/epcis/capture", "/epcis/events", "/epcis/epcs/{epc}/events", "/epcis/eventTypes/{type}/events",
                "/epcis/bizSteps/{step}/events", "/epcis/bizLocations/{gln}/events", "/epcis/readPoints/{gln}/events",
                "/epcis/dispositions/{d}/events", "/epcis/queries", "/verify/{digital link}"],
            "captureLimit": CAPTURE_LIMIT, "captureFileSizeLimit": MAX_CAPTURE_BYTES,
            "captureErrorBehaviours": ["rollback", "proceed"],
            "formats": ["application/json", "application/ld+json", "application/xml"],
            "subscriptions": "streaming webhooks (stream: true), signed with GS1-Signature (HMAC-SHA256) and Carechain-Signature (Ed25519)",
        }),
    )
}

async fn capture(
    State(st): State<EpcisState>,
    h: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Res {
    let body = body.map_err(|e| {
        Problem(if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            SupplyError::TooLarge(format!("a capture is at most {MAX_CAPTURE_BYTES} bytes"))
        } else {
            SupplyError::Bad("the body could not be read".into())
        })
    })?;
    let ct = h
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let format = if ct.contains("xml") {
        Format::Xml
    } else if ct.contains("json") {
        Format::Json
    } else {
        let mut r = Problem(SupplyError::Bad(format!(
            "{ct}: send application/ld+json, application/json or application/xml"
        )))
        .into_response();
        *r.status_mut() = StatusCode::UNSUPPORTED_MEDIA_TYPE;
        return Ok(r);
    };
    let behaviour = Behaviour::parse(
        h.get("GS1-Capture-Error-Behaviour")
            .and_then(|v| v.to_str().ok()),
    )?;
    let id = as_actor(&st, &h, move |s, a| s.capture(a, &body, format, behaviour)).await?;
    Ok(located(
        StatusCode::ACCEPTED,
        json!({"captureID": id}),
        &format!("/epcis/capture/{id}"),
    ))
}

async fn capture_job(State(st): State<EpcisState>, h: HeaderMap, Path(id): Path<String>) -> Res {
    let job = as_actor(&st, &h, move |s, a| s.capture_job(a, &id)).await?;
    Ok(ld(StatusCode::OK, job))
}

async fn captures(State(st): State<EpcisState>, h: HeaderMap) -> Res {
    let jobs = as_actor(&st, &h, move |s, a| {
        let me = a.organization.did().to_string();
        Ok(s.store()
            .captures()?
            .into_iter()
            .map(|(_, j)| j)
            .filter(|j| j["organization"] == me)
            .collect::<Vec<_>>())
    })
    .await?;
    Ok(ld(StatusCode::OK, json!({"captureJobs": jobs})))
}

fn page(p: carechain_supply::QueryPage, base: &str, params: &[(String, String)]) -> Response {
    let mut r = ld(StatusCode::OK, p.document);
    if let Some(t) = p.next {
        let mut qs = form_urlencoded::Serializer::new(String::new());
        for (k, v) in params.iter().filter(|(k, _)| k != "nextPageToken") {
            qs.append_pair(k, v);
        }
        qs.append_pair("nextPageToken", &t);
        if let Ok(v) = HeaderValue::from_str(&format!("<{base}?{}>; rel=\"next\"", qs.finish())) {
            r.headers_mut().insert(header::LINK, v);
        }
    }
    r
}

async fn run_query(
    st: &EpcisState,
    h: &HeaderMap,
    base: String,
    mut params: Vec<(String, String)>,
    extra: Option<(String, String)>,
    name: &'static str,
) -> Res {
    let all = params.clone();
    params.extend(extra);
    let p = as_actor(st, h, move |s, a| {
        let (q, per, token) = Query::parse(&params)?;
        s.query(a, &q, per, token.as_deref(), name)
    })
    .await?;
    Ok(page(p, &base, &all))
}

async fn events(State(st): State<EpcisState>, h: HeaderMap, RawQuery(q): RawQuery) -> Res {
    run_query(
        &st,
        &h,
        "/epcis/events".into(),
        pairs(q),
        None,
        "SimpleEventQuery",
    )
    .await
}

async fn view(
    param: &'static str,
    State(st): State<EpcisState>,
    h: HeaderMap,
    Path(v): Path<String>,
    RawQuery(q): RawQuery,
) -> Res {
    run_query(
        &st,
        &h,
        String::new(),
        pairs(q),
        Some((param.to_string(), v)),
        "SimpleEventQuery",
    )
    .await
}

async fn epc_events(
    State(st): State<EpcisState>,
    h: HeaderMap,
    Path(epc): Path<String>,
    RawQuery(q): RawQuery,
) -> Res {
    run_query(
        &st,
        &h,
        String::new(),
        pairs(q),
        Some(("MATCH_anyEPC".into(), epc)),
        "SimpleEventQuery",
    )
    .await
}

async fn event(State(st): State<EpcisState>, h: HeaderMap, Path(id): Path<String>) -> Res {
    let ev = as_actor(&st, &h, move |s, a| s.event_document(a, &id)).await?;
    Ok(ld(StatusCode::OK, ev))
}

async fn queries(State(st): State<EpcisState>, h: HeaderMap) -> Res {
    let qs = as_actor(&st, &h, |s, a| s.named_queries(a)).await?;
    Ok(ld(StatusCode::OK, json!(qs)))
}

async fn create_query(State(st): State<EpcisState>, h: HeaderMap, body: Bytes) -> Res {
    let v = json_body(&body)?;
    let name = as_actor(&st, &h, move |s, a| s.create_query(a, &v)).await?;
    Ok(located(
        StatusCode::CREATED,
        json!({"name": name}),
        &format!("/epcis/queries/{name}"),
    ))
}

async fn query_def(State(st): State<EpcisState>, h: HeaderMap, Path(name): Path<String>) -> Res {
    let q = as_actor(&st, &h, move |s, a| s.named_query(a, &name)).await?;
    Ok(ld(StatusCode::OK, q))
}

async fn delete_query(State(st): State<EpcisState>, h: HeaderMap, Path(name): Path<String>) -> Res {
    as_actor(&st, &h, move |s, a| s.delete_query(a, &name)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn query_events(
    State(st): State<EpcisState>,
    h: HeaderMap,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Res {
    let params = pairs(q);
    let base = format!("/epcis/queries/{name}/events");
    let all = params.clone();
    let p = as_actor(&st, &h, move |s, a| {
        let def = s.named_query(a, &name)?;
        let query = Query::from_json(&def["query"])?;
        let (extra, per, token) = Query::parse(&params)?;
        if extra != Query::default() {
            return Err(SupplyError::Bad(
                "a named query's events take only perPage and nextPageToken".into(),
            ));
        }
        s.query(a, &query, per, token.as_deref(), "NamedQuery")
    })
    .await?;
    Ok(page(p, &base, &all))
}

async fn subscriptions(
    State(st): State<EpcisState>,
    h: HeaderMap,
    Path(name): Path<String>,
) -> Res {
    let subs = as_actor(&st, &h, move |s, a| s.subscriptions(a, &name)).await?;
    Ok(ld(StatusCode::OK, json!(subs)))
}

async fn subscribe(
    State(st): State<EpcisState>,
    h: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Res {
    let v = json_body(&body)?;
    let sub = as_actor(&st, &h, move |s, a| s.subscribe(a, &name, &v)).await?;
    Ok(ld(StatusCode::CREATED, sub))
}

async fn unsubscribe(
    State(st): State<EpcisState>,
    h: HeaderMap,
    Path((name, id)): Path<(String, String)>,
) -> Res {
    as_actor(&st, &h, move |s, a| s.unsubscribe(a, &name, &id)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn alerts(State(st): State<EpcisState>, h: HeaderMap) -> Res {
    let list = as_actor(&st, &h, |s, a| s.alerts(a, 200)).await?;
    Ok(ld(StatusCode::OK, json!({"alerts": list})))
}

/// `01/…/21/…?17=…` (a Digital Link path on any domain) or a full URI, as a Digital Link.
fn link_of(path: &str, query: Option<&str>) -> String {
    let path = path.trim_start_matches('/');
    let base = if path.starts_with("http://") || path.starts_with("https://") {
        path.to_string()
    } else if let Some(rest) = path
        .strip_prefix("https:/")
        .or_else(|| path.strip_prefix("http:/"))
    {
        format!("https://{}", rest.trim_start_matches('/'))
    } else {
        format!("https://id.gs1.org/{path}")
    };
    match query.filter(|q| !q.is_empty()) {
        Some(q) => format!("{base}?{q}"),
        None => base,
    }
}

async fn verify_path(
    State(st): State<EpcisState>,
    h: HeaderMap,
    Path(pack): Path<String>,
    RawQuery(q): RawQuery,
) -> Res {
    let uri = link_of(&pack, q.as_deref());
    let v = as_actor(&st, &h, move |s, a| s.verify_pack(a, &uri)).await?;
    Ok((StatusCode::OK, Json(v)).into_response())
}

async fn verify_query(State(st): State<EpcisState>, h: HeaderMap, RawQuery(q): RawQuery) -> Res {
    let uri = pairs(q)
        .into_iter()
        .find(|(k, _)| k == "uri")
        .map(|(_, v)| v)
        .ok_or_else(|| {
            Problem(SupplyError::Bad(
                "give the pack's Digital Link as ?uri=".into(),
            ))
        })?;
    let v = as_actor(&st, &h, move |s, a| s.verify_pack(a, &uri)).await?;
    Ok((StatusCode::OK, Json(v)).into_response())
}

async fn product(
    State(st): State<EpcisState>,
    h: HeaderMap,
    Path(pack): Path<String>,
    RawQuery(q): RawQuery,
) -> Res {
    let uri = link_of(&pack, q.as_deref());
    let v = as_actor(&st, &h, move |s, a| s.journey(a, &uri)).await?;
    Ok(ld(StatusCode::OK, v))
}
