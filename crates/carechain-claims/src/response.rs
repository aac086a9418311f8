//! The FHIR views of a decision: the `ClaimResponse` the provider gets (outcome, adjudication
//! per line with CARC reasons, the payment, and the evidence that verifies it offline) and
//! the `ExplanationOfBenefit` the patient sees.

use base64::Engine;
use serde_json::{Value, json};

use crate::ClaimBundle;
use crate::evidence::Evidence;

/// The extension carrying a decision's evidence (JSON, base64 in an Attachment).
pub const EVIDENCE_URL: &str = "https://carechain.dev/fhir/StructureDefinition/decision-evidence";

/// X12 Claim Adjustment Reason Codes.
pub const CARC_SYSTEM: &str = "https://x12.org/codes/claim-adjustment-reason-codes";

const ADJUDICATION: &str = "http://terminology.hl7.org/CodeSystem/adjudication";

fn money(minor: u64, decimals: u8) -> Value {
    json!({ "value": minor as f64 / 10f64.powi(i32::from(decimals)) })
}

fn category(code: &str, minor: u64, decimals: u8) -> Value {
    json!({
        "category": { "coding": [{ "system": ADJUDICATION, "code": code }] },
        "amount": money(minor, decimals),
    })
}

fn reasons(codes: &Value) -> Vec<Value> {
    codes
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|c| json!({ "coding": [{ "system": CARC_SYSTEM, "code": c }] }))
        .collect()
}

/// The adjudication of each line.
fn items(decision: &Value, decimals: u8) -> Vec<Value> {
    decision["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            let amount = |f: &str| i[f].as_u64().unwrap_or(0);
            let mut adj = vec![
                category("submitted", amount("submitted"), decimals),
                category("eligible", amount("eligible"), decimals),
                category("benefit", amount("benefit"), decimals),
            ];
            for r in reasons(&i["reasons"]) {
                adj.push(json!({
                    "category": { "coding": [{ "system": ADJUDICATION, "code": "benefit" }] },
                    "reason": r,
                }));
            }
            let mut v = json!({ "itemSequence": i["sequence"], "adjudication": adj });
            if i["pended"] == true {
                v["noteNumber"] = json!([1]);
            }
            v
        })
        .collect()
}

fn units(minor: &Value, decimals: u8) -> String {
    let n = minor.as_u64().unwrap_or(0);
    let scale = 10u64.pow(u32::from(decimals));
    format!("{}.{:0w$}", n / scale, n % scale, w = decimals as usize)
}

fn disposition(decision: &Value, decimals: u8) -> String {
    let (paid, pended) = (
        units(&decision["paid"], decimals),
        units(&decision["pended"], decimals),
    );
    match decision["outcome"].as_str() {
        Some("complete") => format!("Adjudicated: {paid} paid"),
        Some("partial") => format!("Adjudicated in part: {paid} paid, {pended} pended for review"),
        Some("queued") => "Pended for the insurer's review".into(),
        _ => "Not adjudicated: see the errors".into(),
    }
}

fn totals(decision: &Value, decimals: u8) -> Vec<Value> {
    let n = |f: &str| decision[f].as_u64().unwrap_or(0);
    vec![
        category("submitted", n("submitted"), decimals),
        category("benefit", n("benefit"), decimals),
    ]
}

fn payment(decision: &Value, evidence: &Evidence, decimals: u8) -> Option<Value> {
    let paid = decision["paid"].as_u64().filter(|p| *p > 0)?;
    let kind = if decision["pended"].as_u64().unwrap_or(0) > 0 {
        "partial"
    } else {
        "complete"
    };
    Some(json!({
        "type": { "coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/ex-paymenttype", "code": kind,
        }]},
        "date": evidence.day(),
        "amount": money(paid, decimals),
        "identifier": { "system": "urn:carechain:tx", "value": evidence.tx_hash() },
    }))
}

/// Common parts of both views.
struct View<'a> {
    claim: &'a ClaimBundle,
    decision: &'a Value,
    evidence: &'a Evidence,
    decimals: u8,
}

/// The ClaimResponse of `decision` for the stored `Claim/<claim_id>`.
pub fn claim_response(
    claim: &ClaimBundle,
    claim_id: &str,
    decision: &Value,
    evidence: &Evidence,
    decimals: u8,
) -> Value {
    let v = View {
        claim,
        decision,
        evidence,
        decimals,
    };
    let c = &claim.claim;
    let mut r = base("ClaimResponse", &v);
    r["requestor"] = c["provider"].clone();
    r["request"] = json!({ "reference": format!("Claim/{claim_id}") });
    r["item"] = json!(items(decision, decimals));
    r["extension"] = json!([evidence_extension(evidence)]);
    common(&mut r, &v, false);
    r
}

/// What both views say alike: the claim's type, patient, insurer, outcome and totals.
fn base(resource_type: &str, v: &View<'_>) -> Value {
    let c = &v.claim.claim;
    json!({
        "resourceType": resource_type,
        "status": "active",
        "type": c["type"],
        "use": "claim",
        "patient": { "reference": v.claim.patient },
        "created": v.evidence.date(),
        "insurer": c["insurer"],
        "outcome": v.decision["outcome"],
        "disposition": disposition(v.decision, v.decimals),
        "total": totals(v.decision, v.decimals),
    })
}

fn common(r: &mut Value, v: &View<'_>, eob: bool) {
    prune(r);
    let codes: Vec<&str> = v.decision["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let mut notes = Vec::new();
    if !codes.is_empty() {
        if eob {
            // An ExplanationOfBenefit has no errors: it says them in a note.
            notes.push(format!("Not adjudicated (CARC {})", codes.join(", ")));
        } else {
            let errors: Vec<Value> = reasons(&v.decision["errors"])
                .into_iter()
                .map(|code| json!({ "code": code }))
                .collect();
            r["error"] = json!(errors);
        }
    }
    if let Some(p) = payment(v.decision, v.evidence, v.decimals) {
        r["payment"] = p;
    }
    if v.decision["pended"].as_u64().unwrap_or(0) > 0 {
        notes.push("Pended for the insurer's review (CARC 133)".into());
    }
    if !notes.is_empty() {
        let notes: Vec<Value> = notes
            .iter()
            .enumerate()
            .map(|(i, t)| json!({ "number": i + 1, "type": "display", "text": t }))
            .collect();
        r["processNote"] = json!(notes);
    }
    if let Some(p) = &v.claim.preauth {
        r["preAuthRef"] = if eob { json!([p]) } else { json!(p) };
    }
}

/// FHIR has no empty arrays or nulls: drops them (a claim in error has no adjudicated items).
fn prune(r: &mut Value) {
    if let Some(o) = r.as_object_mut() {
        o.retain(|_, v| !(v.is_null() || v.as_array().is_some_and(Vec::is_empty)));
    }
}

fn evidence_extension(evidence: &Evidence) -> Value {
    let data = base64::engine::general_purpose::STANDARD.encode(evidence.to_json().to_string());
    json!({
        "url": EVIDENCE_URL,
        "valueAttachment": { "contentType": "application/json", "data": data },
    })
}

/// The evidence carried by a ClaimResponse, if any.
pub fn evidence_of(claim_response: &Value) -> Result<Evidence, String> {
    let ext = claim_response["extension"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["url"] == EVIDENCE_URL)
        .ok_or("the ClaimResponse carries no decision evidence")?;
    let data = ext["valueAttachment"]["data"]
        .as_str()
        .ok_or("the evidence has no data")?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|_| "the evidence is not base64")?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| "the evidence is not JSON")?;
    Evidence::from_json(&v)
}

/// The patient's view: an ExplanationOfBenefit of the claim and its response.
pub fn explanation_of_benefit(
    claim: &ClaimBundle,
    claim_id: &str,
    response_id: &str,
    decision: &Value,
    evidence: &Evidence,
    decimals: u8,
) -> Value {
    let v = View {
        claim,
        decision,
        evidence,
        decimals,
    };
    let c = &claim.claim;
    let mut items: Vec<Value> = items(decision, decimals);
    for (item, line) in items
        .iter_mut()
        .zip(c["item"].as_array().into_iter().flatten())
    {
        let seq = item
            .as_object_mut()
            .and_then(|o| o.remove("itemSequence"))
            .unwrap_or(Value::Null);
        item["sequence"] = seq;
        item["productOrService"] = line["productOrService"].clone();
        if let Some(d) = line.get("servicedDate") {
            item["servicedDate"] = d.clone();
        }
    }
    let mut r = base("ExplanationOfBenefit", &v);
    r["provider"] = c["provider"].clone();
    r["claim"] = json!({ "reference": format!("Claim/{claim_id}") });
    r["claimResponse"] = json!({ "reference": format!("ClaimResponse/{response_id}") });
    r["insurance"] = json!([{ "focal": true, "coverage": c["insurance"][0]["coverage"] }]);
    r["item"] = json!(items);
    common(&mut r, &v, true);
    r
}
