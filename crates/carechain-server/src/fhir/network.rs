//! FHIR across the network: `Patient/{id}/$everything` gathered from every custodian, and
//! the signed-in patient's access log from every node (`/me/access-log`).

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde_json::json;

use super::{Fail, FhirState, base_url, blocking, fhir, purpose, session, with_proofs};

pub(super) async fn everything(s: &FhirState, id: String, h: &HeaderMap) -> Result<Response, Fail> {
    let sess = session(s, h).await?;
    let base = base_url(h);
    let (svc, p) = (s.service.clone(), purpose(h));
    let out = blocking(move || svc.network_everything(&sess, &p, &id, &base)).await?;
    Ok(fhir(StatusCode::OK, out))
}

pub(super) async fn my_access_log(
    State(s): State<FhirState>,
    h: HeaderMap,
) -> Result<Response, Fail> {
    let sess = session(&s, &h).await?;
    let (svc, node) = (s.service.clone(), s.node.clone());
    let (entries, unavailable) = blocking(move || {
        svc.network_access_log(&sess)
            .map(|(e, u)| (with_proofs(&node, e), u))
    })
    .await?;
    let unavailable: Vec<_> = unavailable
        .into_iter()
        .map(|u| json!({"node": u.node, "endpoint": u.endpoint, "reason": u.reason}))
        .collect();
    Ok(Json(json!({"entries": entries, "unavailable": unavailable})).into_response())
}
