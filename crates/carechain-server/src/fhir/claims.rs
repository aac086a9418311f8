//! `POST /fhir/Claim/$submit`: a provider's claim bundle decided by the insurer's claims
//! contract; the answer is the ClaimResponse (200 when decided, whatever the outcome). A
//! bundle that cannot be decided gets a ClaimResponse with outcome `error` naming each
//! problem (400), and one the contract refuses (no such contract, this node not an accepted
//! submitter) the same with the contract's reason (422).

use axum::{
    Json,
    body::Bytes,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use carechain_claims::{Claims, SubmitError};
use carechain_service::ServiceError;
use serde_json::{Value, json};

use super::{FHIR_JSON, Fail, FhirState, blocking, parse_body, session};

const ADJUDICATION_ERROR: &str = "http://terminology.hl7.org/CodeSystem/adjudication-error";

fn error_response(status: StatusCode, texts: Vec<String>) -> Response {
    let errors: Vec<Value> = texts
        .iter()
        .map(|t| {
            json!({ "code": {
                "coding": [{ "system": ADJUDICATION_ERROR, "code": "a001" }],
                "text": t,
            }})
        })
        .collect();
    let body = json!({
        "resourceType": "ClaimResponse",
        "status": "active",
        "use": "claim",
        "outcome": "error",
        "disposition": texts.join("; "),
        "error": errors,
    });
    let mut r = (status, Json(body)).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    r
}

pub(super) async fn submit(
    State(s): State<FhirState>,
    h: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, Fail> {
    decide(s, h, body, false).await
}

/// `POST /fhir/Claim/$inquire`: the claim bundle again; its current decision.
pub(super) async fn inquire(
    State(s): State<FhirState>,
    h: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, Fail> {
    decide(s, h, body, true).await
}

async fn decide(
    s: FhirState,
    h: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
    inquiry: bool,
) -> Result<Response, Fail> {
    let sess = session(&s, &h).await?;
    let bundle = parse_body(body)?;
    let svc = s.service.clone();
    let out = blocking(move || {
        let c = Claims::new(&svc);
        Ok(if inquiry {
            c.inquire(&sess, &bundle)
        } else {
            c.submit(&sess, &bundle)
        })
    })
    .await?;
    Ok(match out {
        Ok(done) => {
            let mut r = (StatusCode::OK, Json(done.claim_response)).into_response();
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
            r
        }
        Err(SubmitError::Invalid(problems)) => error_response(
            StatusCode::BAD_REQUEST,
            problems.iter().map(ToString::to_string).collect(),
        ),
        Err(SubmitError::Refused(why)) => {
            error_response(StatusCode::UNPROCESSABLE_ENTITY, vec![why])
        }
        Err(SubmitError::NotAProvider) => {
            return Err(Fail(ServiceError::forbidden(
                "only a practitioner or an organization submits claims",
            )));
        }
        Err(SubmitError::Service(e)) => return Err(Fail(e)),
    })
}

/// `POST /fhir/Invoice/{id}/$reconcile` with `{"transaction": "<hash>"}` (or a FHIR
/// Parameters with a `transaction` valueString): the provider records a token payment.
pub(super) async fn reconcile(
    State(s): State<FhirState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    h: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, Fail> {
    let sess = session(&s, &h).await?;
    let v = parse_body(body)?;
    let hash = v["transaction"]
        .as_str()
        .or_else(|| {
            v["parameter"]
                .as_array()?
                .iter()
                .find(|p| p["name"] == "transaction")?["valueString"]
                .as_str()
        })
        .and_then(|h| carechain_crypto::Hash::from_hex(h).ok())
        .ok_or_else(|| {
            Fail(ServiceError::bad(
                "$reconcile needs \"transaction\": the payment's hash (64 hex digits)",
            ))
        })?;
    let svc = s.service.clone();
    let out = blocking(move || Ok(carechain_claims::reconcile(&svc, &sess, &id, &hash))).await?;
    use carechain_claims::ReconcileError as E;
    let e = match out {
        Ok(r) => {
            let body = json!({
                "resourceType": "Bundle", "type": "collection",
                "entry": [{"resource": r.invoice}, {"resource": r.reconciliation}, {"resource": r.notice}],
            });
            let mut resp = (StatusCode::OK, Json(body)).into_response();
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
            return Ok(resp);
        }
        Err(E::Service(e)) => return Err(Fail(e)),
        Err(E::AlreadyUsed(id)) => ServiceError::new(
            carechain_service::ErrorKind::Conflict,
            format!("the transaction already reconciles PaymentReconciliation/{id}"),
        ),
        Err(other) => ServiceError::new(carechain_service::ErrorKind::Invalid, other.to_string()),
    };
    Err(Fail(e))
}
