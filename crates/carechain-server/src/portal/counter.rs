//! The pharmacy counter: a member of an organization scans (or types) a pack's Digital Link
//! and sees at once whether to dispense it, and why not — from ledger state, as `/verify`
//! answers; below, the organization's alerts (suspected clones and diversions, recalls).

use axum::{
    Router,
    extract::{Query, State},
    response::Response,
    routing::get,
};
use maud::html;
use serde::Deserialize;
use serde_json::Value;

use super::{PageError, Portal, Viewer, page};

pub(crate) fn routes() -> Router<Portal> {
    Router::new().route("/supply", get(counter))
}

#[derive(Deserialize)]
struct Scan {
    pack: Option<String>,
}

/// What a status means for the person at the counter.
fn meaning(status: &str) -> &'static str {
    match status {
        "ok" => "Genuine and in your custody: dispense.",
        "unknown_gtin" => {
            "No manufacturer on this network owns this product code: do not dispense."
        }
        "not_commissioned" => {
            "The manufacturer never commissioned this serial: do not dispense (possibly counterfeit)."
        }
        "mismatch" => {
            "The lot or expiry printed on the pack is not the commissioned one: do not dispense."
        }
        "already_dispensed" => {
            "This serial was already dispensed: this pack is a suspected clone. Do not dispense; it has been reported."
        }
        "decommissioned" => {
            "This serial was taken out of use: do not dispense; it has been reported."
        }
        "recalled" => "Its lot is recalled: do not dispense; return it.",
        "expired" => "Past its expiry date: do not dispense.",
        "not_in_custody" => {
            "This pack was never delivered to your organization (suspected diversion): do not dispense; it has been reported."
        }
        _ => "Not verified: do not dispense.",
    }
}

async fn counter(
    State(st): State<Portal>,
    v: Viewer,
    Query(q): Query<Scan>,
) -> Result<Response, PageError> {
    let Some(supply) = st.supply.clone() else {
        return Err(PageError::new(
            503,
            "Unavailable",
            "the supply chain service is not running on this node",
        )
        .seen_by(&v));
    };
    let session = v.session.clone();
    let pack = q.pack.filter(|p| !p.trim().is_empty());
    let scan = pack.clone();
    let (verdict, alerts): (Option<Result<Value, String>>, Vec<Value>) =
        tokio::task::spawn_blocking(move || {
            let actor = supply.actor(&session).map_err(|e| e.to_string())?;
            let verdict = scan.map(|p| {
                supply
                    .verify_pack(&actor, p.trim())
                    .map_err(|e| e.to_string())
            });
            let alerts = supply.alerts(&actor, 50).unwrap_or_default();
            Ok::<_, String>((verdict, alerts))
        })
        .await
        .map_err(|_| PageError::new(500, "Something went wrong", "internal error"))?
        .map_err(|e| PageError::new(403, "Organizations only", e).seen_by(&v))?;
    let body = html! {
        p.lead { "Scan a pack's 2D code (or type its GS1 Digital Link) to check it against the ledger before you hand it over." }
        form method="get" action="/supply" {
            label for="pack" { "Pack (GS1 Digital Link)" }
            input id="pack" name="pack" type="text" size="70" autofocus value=(pack.clone().unwrap_or_default()) placeholder="https://id.gs1.org/01/09506000134352/21/S2?17=280630&10=NW2026-11";
            " " button type="submit" { "Check" }
        }
        @match &verdict {
            Some(Ok(r)) => {
                @let status = r["carechain"]["status"].as_str().unwrap_or("");
                @let ok = r["carechain"]["dispensable"] == true;
                div class=(if ok { "notice ok verdict" } else { "notice bad verdict" }) role="status" data-status=(status) {
                    strong { (if ok { "Dispense" } else { "Do not dispense" }) } " — " (meaning(status))
                }
                dl.facts {
                    dt { "Pack" } dd { code { (r["carechain"]["pack"].as_str().unwrap_or("")) } }
                    dt { "Verified (GS1)" } dd { (r["data"]["verified"].as_bool().unwrap_or(false)) }
                    @if let Some(f) = r["data"]["verificationFailureReason"].as_str() { dt { "Failure reason" } dd { (f) } }
                    @if let Some(a) = r["data"]["additionalInfo"].as_str() { dt { "Additional information" } dd { (a) } }
                    @if let Some(l) = r["carechain"]["record"]["lot"].as_str() { dt { "Lot" } dd { (l) } }
                }
                p { a href=(format!("/explorer/products?pack={}", form_urlencoded::byte_serialize(r["carechain"]["pack"].as_str().unwrap_or("").as_bytes()).collect::<String>())) { "This pack's journey" } }
            }
            Some(Err(e)) => { div.notice.bad role="alert" { (e) } }
            None => {}
        }
        h2 { "Alerts for your organization" }
        @if alerts.is_empty() { p.muted { "None." } }
        ul.alerts {
            @for a in &alerts {
                li.alert data-kind=(a["kind"].as_str().unwrap_or("")) {
                    @match a["kind"].as_str().unwrap_or("") {
                        "suspect" => { "Suspected " (a["reason"].as_str().unwrap_or("")) ": " code { (a["pack"].as_str().unwrap_or("a pack")) } ", block " (a["height"]) }
                        "recall" => { "Recall of GTIN " (a["gtin"].as_str().unwrap_or("")) " lot " (a["lot"].as_str().unwrap_or("")) @if let Some(n) = a["packs_held"].as_u64() { " — you hold " (n) " pack(s)" } ", block " (a["height"]) }
                        "recall_patients" => { "Recall of lot " (a["lot"].as_str().unwrap_or("")) ": " (a["patients_told"]) " patient(s) you dispensed it to were told in their records" }
                        other => { (other) }
                    }
                }
            }
        }
    };
    Ok(page("Pharmacy counter", Some(&v), body))
}
