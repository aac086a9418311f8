//! The patient portal: my records (timeline and charts), my consents (grant with purpose,
//! data classes and end date; revoke with one click), erasure with a downloadable
//! certificate, and, at a node holding nothing of hers, where her records are. Who accessed
//! my data is `access.rs`.

use axum::{
    Form, Router,
    extract::{Path, State},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use base64::Engine;
use maud::html;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    DirectoryEntry, PageError, Portal, SameOrigin, Viewer, blocking, chart, directory, page,
    purpose,
};

pub(crate) fn routes() -> Router<Portal> {
    Router::new()
        .route("/patient", get(records))
        .route("/patient/consents", get(consents).post(grant))
        .route("/patient/consents/{id}/revoke", post(revoke))
        .route("/patient/access", get(super::access::access))
        .route("/patient/erase/{rt}/{id}", get(erase_confirm).post(erase))
}

/// The viewer's own patient id, or a clear refusal for anyone else.
pub(super) fn own(v: &Viewer) -> Result<String, PageError> {
    v.patient_id().map(str::to_string).ok_or_else(|| {
        PageError::new(
            403,
            "Patients only",
            "these pages are for a patient with a record on this node",
        )
        .seen_by(v)
    })
}

async fn records(State(st): State<Portal>, v: Viewer) -> Result<Response, PageError> {
    if v.patient_id().is_none() && v.session.role == carechain_types::Role::Patient {
        return Ok(elsewhere(&st, &v));
    }
    let pid = own(&v)?;
    let (svc, s, p2) = (st.service.clone(), v.session.clone(), pid.clone());
    let c = blocking(move || Ok(chart::load(&svc, &s, &purpose("PATRQT", None), &p2)))
        .await
        .map_err(|e| e.seen_by(&v))?;
    let body = html! {
        p.lead { "Everything held about you on this node, decrypted for you only. Each record is encrypted under its own key; the ledger holds only salted commitments." }
        p { "Your patient record: " code id="my-patient-id" { "Patient/" (pid) } " (give this to a clinician you grant access to)." }
        (chart::render(&c.records, true))
    };
    Ok(page("My records", Some(&v), body))
}

pub(super) fn name_of(dir: &[DirectoryEntry], did: &str) -> String {
    dir.iter()
        .find(|e| e.did == did)
        .map(|e| e.name.clone())
        .unwrap_or_else(|| short_did(did))
}

/// For a patient with no record on this node: where her records are (her record locator on
/// the ledger), and her access log from every node.
fn elsewhere(st: &Portal, v: &Viewer) -> Response {
    let nodes = st
        .node
        .store()
        .with_durable(|d| {
            let mut out = Vec::new();
            for l in carechain_state::locator(d.snapshot, &v.session.did.public_key())? {
                let endpoint = carechain_state::node_entry(d.snapshot, &l.node)?
                    .map(|e| e.endpoint)
                    .unwrap_or_default();
                out.push((l.node.did().to_string(), endpoint, l.since));
            }
            Ok::<_, carechain_state::ViewError>(out)
        })
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let body = html! {
        p.lead { "This node holds no record of yours. The ledger names the nodes that do (your record locator); only their organizations see what the records are." }
        @if nodes.is_empty() {
            p { "No node holds records of yours yet." }
        } @else {
            ul role="list" {
                @for (node, endpoint, since) in &nodes {
                    li { "Node " code { (short_did(node)) } " at " a href=(endpoint) { (endpoint) } ", since block " (since) }
                }
            }
        }
        p { a href="/patient/access" { "Who accessed my data" } ", at every one of them, is here too." }
    };
    page("My records", Some(v), body)
}

pub(crate) fn short_did(did: &str) -> String {
    match did.strip_prefix("did:key:") {
        Some(k) if k.len() > 14 => format!("did:key:{}…{}", &k[..8], &k[k.len() - 4..]),
        _ => did.to_string(),
    }
}

/// Data classes a patient can grant (resource types).
const CLASSES: &[(&str, &str)] = &[
    ("Patient", "Demographics"),
    ("Observation", "Observations (vitals, labs)"),
    ("Condition", "Conditions"),
    ("Encounter", "Encounters"),
    ("MedicationRequest", "Medications"),
    ("Immunization", "Immunizations"),
    ("Procedure", "Procedures"),
    ("AllergyIntolerance", "Allergies"),
    ("DiagnosticReport", "Reports"),
];

async fn consents(State(st): State<Portal>, v: Viewer) -> Result<Response, PageError> {
    let pid = own(&v)?;
    let (svc, s) = (st.service.clone(), v.session.clone());
    let (list, dir) = blocking(move || {
        let params = vec![
            ("patient".to_string(), format!("Patient/{pid}")),
            ("_count".to_string(), "1000".to_string()),
        ];
        let b = svc.search(&s, &purpose("PATRQT", None), "Consent", &params, "")?;
        let mut list: Vec<Value> = b["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| e["resource"].clone())
            .collect();
        list.sort_by(|a, b| b["dateTime"].as_str().cmp(&a["dateTime"].as_str()));
        Ok((list, directory(&svc, &s)))
    })
    .await
    .map_err(|e| e.seen_by(&v))?;
    let body = html! {
        p.lead { "Nobody but you and the organization that wrote a record may read it, unless you allow it here. A change takes effect with the very next request." }
        section aria-labelledby="list-h" {
            h2 id="list-h" { "My consents" }
            @if list.is_empty() {
                p { "You have not granted access to anyone." }
            } @else {
                ul.consents {
                    @for c in &list {
                        @let p = &c["provision"];
                        @let active = c["status"] == "active";
                        @let actors: Vec<String> = p["actor"].as_array().into_iter().flatten().filter_map(|a| {
                            a["reference"]["identifier"]["value"].as_str().map(|d| name_of(&dir, d))
                                .or_else(|| a["reference"]["reference"].as_str().map(str::to_string))
                        }).collect();
                        @let purposes = carechain_fhir::codes(&p["purpose"]);
                        @let classes = carechain_fhir::codes(&p["class"]);
                        li class=(if active { "consent active" } else { "consent inactive" }) {
                            p {
                                strong { @if p["type"] == "deny" { "Deny " } @else { "Allow " } (if actors.is_empty() { "anyone".to_string() } else { actors.join(", ") }) }
                                " — " (if purposes.is_empty() { "any purpose".to_string() } else { purposes.join(", ") })
                                "; " (if classes.is_empty() { "all my records".to_string() } else { classes.join(", ") })
                                @if let Some(end) = p["period"]["end"].as_str() { "; until " (end) }
                            }
                            p.muted { "Status: " (c["status"].as_str().unwrap_or("?")) @if let Some(d) = c["dateTime"].as_str() { " · given " (d.get(..10).unwrap_or(d)) } }
                            @if active {
                                form method="post" action=(format!("/patient/consents/{}/revoke", c["id"].as_str().unwrap_or(""))) {
                                    button.danger type="submit" aria-label=(format!("Revoke access for {}", actors.join(", "))) { "Revoke" }
                                }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="grant-h" {
            h2 id="grant-h" { "Grant access" }
            form.grant method="post" action="/patient/consents" {
                div.field {
                    label for="actor" { "Who" }
                    select id="actor" name="actor" required {
                        option value="" { "Choose a practitioner or organization" }
                        @for e in &dir {
                            option value=(e.did) { (e.name) " (" (e.kind) ")" }
                        }
                    }
                }
                div.field {
                    label for="actor_did" { "…or their did:key" }
                    input id="actor_did" name="actor_did" type="text" inputmode="text" autocomplete="off" placeholder="did:key:z6Mk…";
                }
                div.field {
                    label for="purpose" { "For what purpose" }
                    select id="purpose" name="purpose" {
                        @for (code, name) in super::PURPOSES { option value=(code) { (name) " (" (code) ")" } }
                    }
                }
                fieldset {
                    legend { "Which records (none ticked: all)" }
                    @for (code, name) in CLASSES {
                        label.check { input type="checkbox" name="class" value=(code); " " (name) }
                    }
                }
                div.field {
                    label for="end" { "Until (inclusive)" }
                    input id="end" name="end" type="date";
                }
                button type="submit" { "Grant access" }
            }
        }
    };
    Ok(page("Consents", Some(&v), body))
}

/// The grant form; `class` may repeat, so it is read from the raw pairs.
async fn grant(
    State(st): State<Portal>,
    _: SameOrigin,
    v: Viewer,
    body: axum::body::Bytes,
) -> Result<Response, PageError> {
    let pid = own(&v)?;
    let pairs: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let get = |k: &str| {
        pairs
            .iter()
            .find(|(n, x)| n == k && !x.trim().is_empty())
            .map(|(_, x)| x.trim().to_string())
    };
    let bad = |m: &str| PageError::new(400, "Cannot grant", m).seen_by(&v);
    let actor = get("actor_did")
        .or_else(|| get("actor"))
        .ok_or_else(|| bad("choose who gets access"))?;
    if actor.parse::<carechain_crypto::Did>().is_err() {
        return Err(bad("who gets access must be a did:key"));
    }
    let purpose_code = get("purpose").unwrap_or_else(|| "TREAT".into());
    if !super::PURPOSES.iter().any(|(c, _)| *c == purpose_code) {
        return Err(bad("unknown purpose of use"));
    }
    let classes: Vec<&str> = pairs
        .iter()
        .filter(|(k, _)| k == "class")
        .filter_map(|(_, c)| CLASSES.iter().find(|(x, _)| x == c).map(|(x, _)| *x))
        .collect();
    let end = get("end");
    if let Some(e) = &end
        && !(e.len() == 10 && e.as_bytes()[4] == b'-' && e.as_bytes()[7] == b'-')
    {
        return Err(bad("the end date must be YYYY-MM-DD"));
    }
    let (svc, s) = (st.service.clone(), v.session.clone());
    blocking(move || {
        let name = directory(&svc, &s)
            .into_iter()
            .find(|e| e.did == actor)
            .map(|e| e.name);
        let consent = consent_resource(
            &pid,
            &actor,
            name.as_deref(),
            &purpose_code,
            &classes,
            end.as_deref(),
        );
        svc.write(&s, &purpose("PATRQT", None), "Consent", None, None, consent)
    })
    .await
    .map_err(|e| e.seen_by(&v))?;
    Ok(Redirect::to("/patient/consents").into_response())
}

/// A FHIR R4 Consent (patient-privacy, opt-in) permitting `actor` to access the patient's
/// records for a purpose, limited to resource types and until `end` if given.
fn consent_resource(
    pid: &str,
    actor: &str,
    actor_name: Option<&str>,
    purpose_code: &str,
    classes: &[&str],
    end: Option<&str>,
) -> Value {
    let now = carechain_records::format_instant(carechain_node::now_ms());
    let mut reference = json!({"identifier": {"system": "urn:ietf:rfc:3986", "value": actor}});
    if let Some(n) = actor_name {
        reference["display"] = json!(n);
    }
    let mut provision = json!({
        "type": "permit",
        "period": {"start": now},
        "actor": [{
            "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
            "reference": reference
        }],
        "action": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentaction", "code": "access"}]}],
        "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": purpose_code}]
    });
    if let Some(e) = end {
        provision["period"]["end"] = json!(e);
    }
    if !classes.is_empty() {
        provision["class"] = json!(
            classes
                .iter()
                .map(|c| json!({"system": "http://hl7.org/fhir/resource-types", "code": c}))
                .collect::<Vec<_>>()
        );
    }
    json!({
        "resourceType": "Consent",
        "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": format!("Patient/{pid}")},
        "dateTime": now,
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
        "provision": provision
    })
}

async fn revoke(
    State(st): State<Portal>,
    _: SameOrigin,
    v: Viewer,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    own(&v)?;
    let (svc, s) = (st.service.clone(), v.session.clone());
    blocking(move || {
        let p = purpose("PATRQT", None);
        let cur = svc.read(&s, &p, "Consent", &id, None)?;
        let mut c = cur.resource.unwrap_or(Value::Null);
        c["status"] = json!("inactive");
        // If-Match: a concurrent change makes this fail instead of being overwritten.
        svc.write(&s, &p, "Consent", Some(&id), Some(cur.version), c)
    })
    .await
    .map_err(|e| e.seen_by(&v))?;
    Ok(Redirect::to("/patient/consents").into_response())
}

async fn erase_confirm(
    State(st): State<Portal>,
    v: Viewer,
    Path((rt, id)): Path<(String, String)>,
) -> Result<Response, PageError> {
    own(&v)?;
    let (svc, s) = (st.service.clone(), v.session.clone());
    let (rt2, id2) = (rt.clone(), id.clone());
    let r = blocking(move || svc.read(&s, &purpose("PATRQT", None), &rt2, &id2, None))
        .await
        .map_err(|e| e.seen_by(&v))?;
    let what = r.resource.as_ref().map(chart::summary).unwrap_or_default();
    let body = html! {
        p { "You are about to erase " strong { (rt) " " (what) } " (all " (r.version) " version(s))." }
        ul {
            li { "Every data key and every ciphertext of this record is destroyed: nobody, including this node, can read it again." }
            li { "The ledger keeps only its commitments and a tombstone, so the chain still verifies." }
            li { "You get a signed erasure certificate listing what was destroyed." }
        }
        form.erase-form method="post" action=(format!("/patient/erase/{rt}/{id}")) {
            label.check { input type="checkbox" name="confirm" value="yes" required; " I understand that this cannot be undone" }
            button.danger type="submit" { "Erase permanently" }
            " " a href="/patient" { "Cancel" }
        }
    };
    Ok(page("Erase a record", Some(&v), body))
}

#[derive(Deserialize)]
struct EraseForm {
    confirm: Option<String>,
}

async fn erase(
    State(st): State<Portal>,
    _: SameOrigin,
    v: Viewer,
    Path((rt, id)): Path<(String, String)>,
    Form(f): Form<EraseForm>,
) -> Result<Response, PageError> {
    own(&v)?;
    if f.confirm.as_deref() != Some("yes") {
        return Err(
            PageError::new(400, "Not erased", "tick the confirmation to erase").seen_by(&v),
        );
    }
    let (svc, s) = (st.service.clone(), v.session.clone());
    let (rt2, id2) = (rt.clone(), id.clone());
    let cert: Value = blocking(move || svc.erase(&s, &purpose("PATRQT", None), &rt2, &id2))
        .await
        .map_err(|e| e.seen_by(&v))?;
    let text = serde_json::to_string_pretty(&cert).unwrap_or_default();
    let href = format!(
        "data:application/json;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(&text)
    );
    let body = html! {
        p.notice.ok role="status" { (rt) "/" (id) " is erased. Reads of it now answer 410 Gone." }
        p { a.button href=(href) download=(format!("erasure-{rt}-{id}.json")) { "Download the erasure certificate" } }
        details open {
            summary { "Certificate" }
            pre.cert { (text) }
        }
        p { a href="/patient" { "Back to my records" } }
    };
    Ok(page("Record erased", Some(&v), body))
}
