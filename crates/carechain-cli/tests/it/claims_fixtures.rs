//! The claim bundles and the insurer's plan of the claims story (`claims.rs`).

use carechain_crypto::SecretKey;
use serde_json::{Value, json};

pub(crate) fn plan(hospital: &SecretKey, node_did: &str) -> Value {
    json!({
        "plan": {
            "name": "Acme Silver", "period_ms": 31_536_000_000u64,
            "benefits": [
                {"code": "99213", "price": 10_000, "max_units": 4, "pays_percent": 80},
                {"code": "85025", "price": 2_500, "max_units": 2, "pays_percent": 100},
                {"code": "70450", "price": 90_000, "max_units": 1, "pays_percent": 100, "review": true},
            ]
        },
        "providers": [hospital.public().did().to_string()],
        "submitters": [node_did],
    })
}

pub(crate) fn bundle(pid: &str, contract: &str, identifier: &str, items: Value) -> Value {
    json!({
        "resourceType": "Bundle", "type": "collection",
        "entry": [
            {"fullUrl": "urn:uuid:claim-1", "resource": {
                "resourceType": "Claim", "status": "active", "use": "claim",
                "identifier": [{"system": "https://cityhospital.example/claims", "value": identifier}],
                "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]},
                "patient": {"reference": format!("Patient/{pid}")},
                "created": "2026-11-30",
                "provider": {"reference": "urn:uuid:org-1"},
                "insurer": {"reference": "urn:uuid:payer-1"},
                "priority": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/processpriority", "code": "normal"}]},
                "insurance": [{"sequence": 1, "focal": true, "coverage": {"reference": "urn:uuid:cov-1"}}],
                "item": items,
            }},
            {"fullUrl": "urn:uuid:cov-1", "resource": {
                "resourceType": "Coverage", "status": "active", "subscriberId": "ACME-0042",
                "beneficiary": {"reference": format!("Patient/{pid}")},
                "payor": [{"reference": "urn:uuid:payer-1"}],
            }},
            {"fullUrl": "urn:uuid:payer-1", "resource": {
                "resourceType": "Organization", "name": "Acme Health Insurance",
                "identifier": [{"system": "urn:carechain:contract", "value": contract}],
            }},
            {"fullUrl": "urn:uuid:org-1", "resource": {"resourceType": "Organization", "name": "City Hospital"}},
        ]
    })
}

pub(crate) fn item(seq: u32, code: &str, qty: u32, price: f64) -> Value {
    json!({"sequence": seq, "servicedDate": "2026-11-30",
        "productOrService": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": code}]},
        "quantity": {"value": qty}, "unitPrice": {"value": price, "currency": "USD"}})
}

pub(crate) fn benefit(item: &Value) -> f64 {
    item["adjudication"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["category"]["coding"][0]["code"] == "benefit" && a["amount"].is_object())
        .unwrap()["amount"]["value"]
        .as_f64()
        .unwrap()
}
