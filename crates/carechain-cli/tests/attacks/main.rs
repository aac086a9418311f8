//! The attack suite: every authorization hole found against `carechain up --demo`, and
//! variants, run black-box over HTTP against the real binary. Each attack must be refused
//! (403 or 404 as designed), return no data, change nothing, and — where it touches a
//! patient's record — be on that patient's access log as a denial.
//!
//! The demo: City Hospital (its clinician Dr. Carol Reyes) treats Alice under her consent
//! and wrote her chart; Riverside Clinic (Dr. Dan Okafor) has no consent; Bob is another
//! patient; the wearable is a device of the hospital.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

#[path = "../it/common.rs"]
#[allow(dead_code)]
mod common;

mod breakglass;
mod compartment;
mod fhir_consent;
mod identity;
mod ledger_consent;
mod receipts;
mod tokens;
mod writes;

use std::path::{Path, PathBuf};

use carechain_crypto::SecretKey;
use common::*;
use serde_json::{Value, json};

/// A demo node and its demo keys.
pub(crate) struct Demo {
    pub(crate) node: NodeProc,
    pub(crate) url: String,
    pub(crate) data: PathBuf,
    _dir: tempfile::TempDir,
}

impl Demo {
    pub(crate) fn start() -> Demo {
        Demo::start_with(&[])
    }

    pub(crate) fn start_with(extra: &[&str]) -> Demo {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("node");
        let mut args = vec!["--demo"];
        args.extend_from_slice(extra);
        let node = NodeProc::start(&data, &args);
        let url = node.url.clone();
        Demo {
            node,
            url,
            data,
            _dir: dir,
        }
    }

    /// The node's identity (from `/v1/status`).
    pub(crate) fn node_did(&self) -> carechain_crypto::Did {
        let (_, st) = get(&format!("{}/v1/status", self.url));
        st["node_key"].as_str().unwrap().parse().unwrap()
    }

    pub(crate) fn key(&self, name: &str) -> SecretKey {
        read_key(&self.data.join(format!("demo-keys/{name}.key")))
    }

    pub(crate) fn alice(&self) -> SecretKey {
        self.key("patient-alice")
    }
    pub(crate) fn bob(&self) -> SecretKey {
        self.key("patient-bob")
    }
    /// Dr. Dan Okafor, Riverside Clinic: no consent from anyone.
    pub(crate) fn dan(&self) -> SecretKey {
        self.key("clinic-clinician")
    }
    /// Dr. Carol Reyes, City Hospital: Alice's consent, author of her chart.
    pub(crate) fn carol(&self) -> SecretKey {
        self.key("clinician")
    }

    /// A token with all of a role's usual scopes.
    pub(crate) fn token(&self, k: &SecretKey) -> String {
        let (_, ident) = get(&format!("{}/v1/identities/{}", self.url, k.public().did()));
        let scope = if ident["role"] == "patient" {
            "patient/*.cruds"
        } else {
            "user/*.cruds"
        };
        token(&self.url, k, scope)
    }

    /// Alice's Patient id (she reads her own record).
    pub(crate) fn alice_id(&self) -> String {
        let t = self.token(&self.alice());
        let (s, b) = fhir(self, "GET", "Patient?name=Alice", &t, None);
        assert_eq!(s, 200, "{b}");
        let id = b["entry"][0]["resource"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(b["total"], 1, "{b}");
        id
    }

    /// One of Alice's records of `rt` (as Alice reads them), its id.
    pub(crate) fn alice_record(&self, rt: &str) -> String {
        let t = self.token(&self.alice());
        let (s, b) = fhir(
            self,
            "GET",
            &format!("{rt}?patient=Patient/{}", self.alice_id()),
            &t,
            None,
        );
        assert_eq!(s, 200, "{b}");
        b["entry"][0]["resource"]["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Alice's access log (as Alice).
    pub(crate) fn access_log(&self, patient: &SecretKey, id: &str) -> Vec<Value> {
        let t = self.token(patient);
        let (s, b) = get_auth(&format!("{}/patients/{id}/access-log", self.url), &t);
        assert_eq!(s, 200, "{b}");
        b["entries"].as_array().unwrap().clone()
    }

    /// Whether Alice's log holds a denial by `who` whose note contains `note`.
    pub(crate) fn denied_in_log(
        &self,
        patient: &SecretKey,
        id: &str,
        who: &SecretKey,
    ) -> Vec<Value> {
        let did = who.public().did().to_string();
        self.access_log(patient, id)
            .into_iter()
            .filter(|e| {
                e["event"]["outcome"] == "4"
                    && e["event"]["agent"][0]["who"]["identifier"]["value"] == did.as_str()
            })
            .collect()
    }
}

pub(crate) fn read_key(path: &Path) -> SecretKey {
    let v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let seed = hex::decode(v["secret_key"].as_str().unwrap()).unwrap();
    SecretKey::from_seed_slice(&seed).unwrap()
}

/// A client assertion for the token endpoint.
pub(crate) fn assertion(url: &str, key: &SecretKey) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    carechain_service::make_assertion(key, &format!("{url}/auth/token"), now)
}

/// Exchanges an assertion: (status, body).
pub(crate) fn exchange(url: &str, assertion: &str, scope: &str) -> (u16, Value) {
    let form = [
        ("grant_type", "client_credentials"),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ),
        ("client_assertion", assertion),
        ("scope", scope),
    ];
    let mut r = agent()
        .post(&format!("{url}/auth/token"))
        .send_form(form)
        .unwrap();
    let status = r.status().as_u16();
    let v = serde_json::from_slice(&r.body_mut().read_to_vec().unwrap()).unwrap_or(Value::Null);
    (status, v)
}

pub(crate) fn token(url: &str, key: &SecretKey, scope: &str) -> String {
    let (s, v) = exchange(url, &assertion(url, key), scope);
    assert_eq!(s, 200, "{v}");
    v["access_token"].as_str().unwrap().to_string()
}

pub(crate) fn get_auth(url: &str, token: &str) -> (u16, Value) {
    let mut r = agent()
        .get(url)
        .header("authorization", format!("Bearer {token}"))
        .call()
        .unwrap();
    let status = r.status().as_u16();
    let v = serde_json::from_slice(&r.body_mut().read_to_vec().unwrap()).unwrap_or(Value::Null);
    (status, v)
}

/// A FHIR call: `path` after `/fhir/`.
pub(crate) fn fhir(
    d: &Demo,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    fhir_as(d, method, path, token, body, None)
}

/// A FHIR call with a purpose of use and break-glass reason.
pub(crate) fn fhir_as(
    d: &Demo,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&Value>,
    purpose: Option<(&str, Option<&str>)>,
) -> (u16, Value) {
    let url = format!("{}/fhir/{path}", d.url);
    let a = agent();
    let mut req = match method {
        "GET" => a.get(&url).force_send_body(),
        "DELETE" => a.delete(&url).force_send_body(),
        "PUT" => a.put(&url),
        _ => a.post(&url),
    }
    .header("authorization", format!("Bearer {token}"));
    if let Some((p, reason)) = purpose {
        req = req.header("x-purpose-of-use", p);
        if let Some(r) = reason {
            req = req.header("x-break-glass-reason", r);
        }
    }
    let mut r = match body {
        Some(b) => req
            .header("content-type", "application/fhir+json")
            .send(b.to_string())
            .unwrap(),
        None => req.send_empty().unwrap(),
    };
    let status = r.status().as_u16();
    let v = serde_json::from_slice(&r.body_mut().read_to_vec().unwrap()).unwrap_or(Value::Null);
    (status, v)
}

/// The ids of a search result's entries.
pub(crate) fn ids(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            Some(format!(
                "{}/{}",
                e["resource"]["resourceType"].as_str()?,
                e["resource"]["id"].as_str()?
            ))
        })
        .collect()
}

/// Asserts a refusal that returns no resource.
pub(crate) fn refused(status: u16, body: &Value, what: &str) {
    assert!(
        status == 403 || status == 404,
        "{what}: expected a refusal, got {status}: {body}"
    );
    assert_eq!(
        body["resourceType"], "OperationOutcome",
        "{what}: a refusal is an OperationOutcome: {body}"
    );
}

/// A ledger transaction submitted by `signer` with its next nonce; the receipt.
pub(crate) fn submit(d: &Demo, signer: &SecretKey, payload: carechain_types::Payload) -> Value {
    let (_, ident) = get(&format!(
        "{}/v1/identities/{}",
        d.url,
        signer.public().did()
    ));
    let nonce = ident["identity"]["next_nonce"]
        .as_u64()
        .or_else(|| ident["next_nonce"].as_u64())
        .unwrap_or(0);
    let tx = carechain_types::TxBody {
        chain_id: "carechain-demo".into(),
        signer: signer.public(),
        nonce,
        payload,
    }
    .sign(signer);
    let (s, v) = post_raw(&format!("{}/v1/txs", d.url), &raw(&tx));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["receipt"]["outcome"], "applied", "{v}");
    v
}

/// An observation about `patient` (a `Patient/<id>` reference).
pub(crate) fn observation(patient: &str, bpm: u32) -> Value {
    json!({"resourceType": "Observation", "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}], "text": "Heart rate"},
        "subject": {"reference": patient},
        "valueQuantity": {"value": bpm, "unit": "/min"}})
}

/// Alice's consent for `org` (a did) with `provision` extras.
pub(crate) fn consent_for(patient: &str, org: &str, extra: Value) -> Value {
    let mut provision = json!({"type": "permit",
        "actor": [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
            "reference": {"identifier": {"system": "urn:ietf:rfc:3986", "value": org}}}],
        "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "TREAT"}]});
    if let (Some(p), Some(e)) = (provision.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            p.insert(k.clone(), v.clone());
        }
    }
    json!({"resourceType": "Consent", "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": patient},
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
        "provision": provision})
}
