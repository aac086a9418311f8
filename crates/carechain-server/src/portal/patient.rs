//! The patient portal: my records (timeline and charts), erasure with a downloadable
//! certificate, and, at a node holding nothing of hers, where her records are. My consents
//! are `consents.rs`; who accessed my data is `access.rs`.

use axum::{
    Form, Router,
    extract::{Path, State},
    response::Response,
    routing::get,
};
use base64::Engine;
use maud::html;
use serde::Deserialize;
use serde_json::Value;

use super::{
    DirectoryEntry, PageError, Portal, SameOrigin, Viewer, blocking, chart, page, purpose,
};

pub(crate) fn routes() -> Router<Portal> {
    Router::new()
        .route("/patient", get(records))
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
    let (c, flags) = blocking(move || {
        let p = purpose("PATRQT", None);
        let flags = svc
            .search(
                &s,
                &p,
                "Flag",
                &[("subject".to_string(), format!("Patient/{p2}"))],
                "",
            )
            .map(|b| chart::resources(&b))
            .unwrap_or_default()
            .into_iter()
            .filter(|f| f["status"] == "active")
            .collect::<Vec<_>>();
        Ok((chart::load(&svc, &s, &p, &p2), flags))
    })
    .await
    .map_err(|e| e.seen_by(&v))?;
    let body = html! {
        @for f in &flags {
            div.notice.bad.safety role="alert" {
                strong { "Safety alert: " }
                (f["code"]["text"].as_str().unwrap_or("a safety flag was placed on your record"))
            }
        }
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
