//! The patient's consents page: every consent of hers on the ledger (enforced at every node,
//! with the heights that granted and revoked it) and those of this node alone; granting (who,
//! purpose, data classes, end date) and revoking. With her key file chosen, the browser signs
//! the grant or revocation itself (`portal.js`) and submits it to the ledger; without it, the
//! grant is a FHIR Consent this node signs on the ledger as the delegate she recorded.

use axum::{
    Router,
    extract::{Path, Query, State},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use carechain_crypto::Hash;
use maud::html;
use serde_json::{Value, json};

use super::patient::{name_of, own};
use super::{PageError, Portal, SameOrigin, Viewer, blocking, directory, page, purpose};

pub(crate) fn routes() -> Router<Portal> {
    Router::new()
        .route("/patient/consents", get(consents).post(grant))
        .route("/patient/consents/{id}/revoke", post(revoke))
        .route("/patient/consents/ledger/{id}/revoke", post(revoke_ledger))
}

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

#[derive(serde::Deserialize)]
struct ConsentsQuery {
    /// The hash of a transaction the browser just signed and submitted: confirmed on the page.
    signed: Option<String>,
}

async fn consents(
    State(st): State<Portal>,
    v: Viewer,
    Query(q): Query<ConsentsQuery>,
) -> Result<Response, PageError> {
    let pid = own(&v)?;
    let (svc, s) = (st.service.clone(), v.session.clone());
    let signed = q.signed.as_deref().and_then(|h| Hash::from_hex(h).ok());
    let node = st.node.clone();
    let (list, dir, ledger, recorded) = blocking(move || {
        let params = vec![
            ("patient".to_string(), format!("Patient/{pid}")),
            ("_count".to_string(), "1000".to_string()),
        ];
        let b = svc.search(&s, &purpose("PATRQT", None), "Consent", &params, "")?;
        let mut list: Vec<Value> = super::chart::resources(&b);
        list.sort_by(|a, b| b["dateTime"].as_str().cmp(&a["dateTime"].as_str()));
        // Those the ledger holds are listed from the ledger.
        list.retain(|c| {
            !c["meta"]["tag"]
                .to_string()
                .contains(carechain_service::LEDGER_SYSTEM)
        });
        let ledger = svc.ledger_consents(&s.did)?;
        // Only a transaction the ledger holds is confirmed; anything else is not mentioned.
        let recorded = match signed {
            Some(h) => node
                .snapshot()
                .ok()
                .and_then(|snap| snap.tx_location(&h).ok().flatten())
                .map(|loc| (h, loc.height)),
            None => None,
        };
        Ok((list, directory(&svc, &s), ledger, recorded))
    })
    .await
    .map_err(|e| e.seen_by(&v))?;
    let body = html! {
        @if let Some((h, height)) = recorded {
            p.notice.ok role="status" data-signed-tx=(h.to_hex()) {
                "Signed with your key and recorded on the ledger at height " (height)
                " (transaction " code { (h.to_hex().get(..12).unwrap_or("")) "…" } ")."
            }
        }
        p.lead { "Nobody but you and the organization that wrote a record may read it, unless you allow it here. A change takes effect with the very next request, at every node of the network." }
        section.sign aria-labelledby="sign-h" {
            h2 id="sign-h" { "Sign with my key" }
            p.muted { "Choose your key file to sign grants and revocations yourself, in this browser (the key never leaves it). Without it, this node signs them for you, as the delegate you recorded." }
            div.field {
                label for="consent-keyfile" { "Key file" }
                input id="consent-keyfile" type="file" accept=".key,.json,application/json" data-did=(v.session.did.to_string());
            }
            p id="consent-status" role="status" aria-live="polite" {}
        }
        section aria-labelledby="ledger-h" {
            h2 id="ledger-h" { "My consents on the network" }
            p.muted { "On the ledger at height " (ledger.0) ": every node enforces these." }
            @if ledger.1.is_empty() {
                p { "You have not granted access to anyone on the network." }
            } @else {
                ul.consents {
                    @for c in ledger.1.iter().rev() {
                        @let active = c.in_force_at(ledger.0);
                        @let who = name_of(&dir, &c.rule.grantee.did().to_string());
                        li class=(if active { "consent active" } else { "consent inactive" }) data-ledger-consent=(c.id.to_hex()) {
                            p {
                                strong { "Allow " (who) }
                                " — " (c.rule.purposes.iter().map(|p| p.code()).collect::<Vec<_>>().join(", "))
                                "; " (if c.rule.classes.is_empty() { "all my records".to_string() } else { c.rule.classes.join(", ") })
                                @if let Some(end) = c.rule.not_after_ms { "; until " (carechain_records::format_instant(end.saturating_sub(1)).get(..10).unwrap_or("")) }
                            }
                            p.muted {
                                @if active { "In force" } @else { "Revoked" }
                                " · granted at height " (c.granted_at)
                                @if let Some(r) = c.revoked_at { " · revoked at height " (r) }
                                " · id " code { (c.id.to_hex().get(..12).unwrap_or("")) "…" }
                            }
                            @if active {
                                form.ledger-revoke method="post" action=(format!("/patient/consents/ledger/{}/revoke", c.id.to_hex())) data-id=(c.id.to_hex()) {
                                    button.danger type="submit" aria-label=(format!("Revoke access for {who}")) { "Revoke" }
                                }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="list-h" {
            h2 id="list-h" { "My consents at this node only" }
            @if list.is_empty() {
                p { "None: every consent of yours is on the network." }
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
            form.grant id="grant-form" method="post" action="/patient/consents" {
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

async fn revoke_ledger(
    State(st): State<Portal>,
    _: SameOrigin,
    v: Viewer,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    own(&v)?;
    let id = Hash::from_hex(&id)
        .map_err(|_| PageError::new(400, "Cannot revoke", "not a consent id").seen_by(&v))?;
    let (svc, s) = (st.service.clone(), v.session.clone());
    blocking(move || svc.revoke_on_ledger(&s, &purpose("PATRQT", None), id))
        .await
        .map_err(|e| e.seen_by(&v))?;
    Ok(Redirect::to("/patient/consents").into_response())
}
