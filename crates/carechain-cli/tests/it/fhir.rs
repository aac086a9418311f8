//! The records story over HTTP, black-box against the real binary: tokens from
//! private_key_jwt assertions, a practitioner's write, consent granted / revoked and enforced on
//! the next request, break-glass, the patient's access log with verifiable receipts, erasure,
//! FHIR errors as OperationOutcome — and the chain still verifies.

use carechain_crypto::SecretKey;
use carechain_log::NoteVerifier;
use carechain_types::{Payload, Role, TxBody};
use serde_json::{Value, json};

use crate::common::*;

pub(crate) fn register(
    url: &str,
    signer: &SecretKey,
    nonce: u64,
    subject: &SecretKey,
    role: Role,
    parent: Option<&SecretKey>,
) {
    let tx = TxBody {
        chain_id: "test-chain".into(),
        signer: signer.public(),
        nonce,
        payload: Payload::Register {
            subject: subject.public(),
            role,
            parent: parent.map(SecretKey::public),
        },
    }
    .sign(signer);
    let (s, v) = post_raw(&format!("{url}/v1/txs"), &raw(&tx));
    assert_eq!(
        (s, v["receipt"]["outcome"].as_str()),
        (200, Some("applied")),
        "{v}"
    );
}

/// Registers `doc` as a practitioner of `org` (the organization's first transaction).
pub(crate) fn register_practitioner(url: &str, org: &SecretKey, doc: &SecretKey) {
    register(url, org, 0, doc, Role::Practitioner, Some(org));
}

/// Writes `k` as a CLI key file (`{"did", "secret_key"}`) named `name` under `dir`.
pub(crate) fn key_file(dir: &std::path::Path, name: &str, k: &SecretKey) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(
        &p,
        json!({"did": k.public().did().to_string(), "secret_key": hex::encode(*k.seed())})
            .to_string(),
    )
    .unwrap();
    p
}

/// The patient's `$envelope` of `path` (`Type/id`), checked to be wrapped to the node and
/// the patient, written to `file`.
pub(crate) fn envelope(url: &str, path: &str, token: &str, file: &std::path::Path) -> Value {
    let (s, env, _) = call(
        "GET",
        &format!("{url}/fhir/{path}/$envelope"),
        token,
        None,
        None,
    );
    assert_eq!(s, 200, "{env}");
    assert_eq!(
        env["wrapped"].as_array().unwrap().len(),
        2,
        "node and patient"
    );
    std::fs::write(file, env.to_string()).unwrap();
    env
}

/// `carechain decrypt --key key envelope`: the decrypted resource.
fn decrypt(key: &std::path::Path, envelope: &std::path::Path) -> Value {
    let out = carechain_ok(&[
        "decrypt",
        "--key",
        key.to_str().unwrap(),
        envelope.to_str().unwrap(),
    ]);
    serde_json::from_str(&out).unwrap()
}

/// The patient (`t_pat`) lets `org` treat her (`Patient/{pid}`): a Consent, created.
pub(crate) fn grant_treatment(url: &str, t_pat: &str, pid: &str, org: &SecretKey) -> Value {
    let treat = json!({
        "resourceType": "Consent", "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": format!("Patient/{pid}")},
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
        "provision": {"type": "permit",
            "actor": [{"role": {"text": "treating organization"}, "reference": {"identifier": {"system": "urn:ietf:rfc:3986", "value": org.public().did().to_string()}}}],
            "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "TREAT"}]}
    });
    let (s, v, _) = call(
        "POST",
        &format!("{url}/fhir/Consent"),
        t_pat,
        None,
        Some(&treat),
    );
    assert_eq!(s, 201, "{v}");
    v
}

/// A Consent of `Patient/{pid}` denying all but `purpose` access by `actor` (a did) to
/// resources of type `class`.
pub(crate) fn permit_only(pid: &str, actor: &str, purpose: &str, class: &str) -> Value {
    json!({
        "resourceType": "Consent", "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": format!("Patient/{pid}")},
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
        "provision": {"type": "deny", "provision": [{"type": "permit",
            "actor": [{"role": {"text": "grantee"}, "reference": {"identifier": {"system": "urn:ietf:rfc:3986", "value": actor}}}],
            "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": purpose}],
            "class": [{"system": "http://hl7.org/fhir/resource-types", "code": class}]}]}
    })
}

pub(crate) fn token(url: &str, key: &SecretKey, scope: &str) -> String {
    let aud = format!("{url}/auth/token");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let assertion = carechain_service::make_assertion(key, &aud, now);
    let form = [
        ("grant_type", "client_credentials"),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ),
        ("client_assertion", assertion.as_str()),
        ("scope", scope),
    ];
    let mut r = agent().post(&aud).send_form(form).unwrap();
    let v: Value = serde_json::from_slice(&r.body_mut().read_to_vec().unwrap()).unwrap();
    assert_eq!(r.status().as_u16(), 200, "{v}");
    v["access_token"].as_str().unwrap().to_string()
}

pub(crate) fn call(
    method: &str,
    url: &str,
    token: &str,
    purpose: Option<(&str, Option<&str>)>,
    body: Option<&Value>,
) -> (u16, Value, Option<String>) {
    let a = agent();
    let mut req = match method {
        "GET" => a
            .get(url)
            .header("authorization", format!("Bearer {token}"))
            .header("x-none", "1")
            .force_send_body(),
        "DELETE" => a
            .delete(url)
            .header("authorization", format!("Bearer {token}"))
            .force_send_body(),
        "PUT" => a
            .put(url)
            .header("authorization", format!("Bearer {token}")),
        _ => a
            .post(url)
            .header("authorization", format!("Bearer {token}")),
    };
    if let Some((p, reason)) = purpose {
        req = req.header("x-purpose-of-use", p);
        if let Some(r) = reason {
            req = req.header("x-break-glass-reason", r);
        }
    }
    let mut resp = match body {
        Some(b) => req
            .header("content-type", "application/fhir+json")
            .send(b.to_string())
            .unwrap(),
        None => req.send_empty().unwrap(),
    };
    let status = resp.status().as_u16();
    let bg = resp
        .headers()
        .get("x-carechain-break-glass")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = resp.body_mut().read_to_vec().unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        bg,
    )
}

/// The live blobs of the node's blob store (pack files: `"CCB1" | len u32 LE | id 32 |
/// bytes`; an erased record has an all-zero id), by id.
pub(crate) fn blobs(dir: &std::path::Path) -> std::collections::BTreeMap<Vec<u8>, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    for e in std::fs::read_dir(dir.join("records/blobs")).unwrap() {
        let b = std::fs::read(e.unwrap().path()).unwrap();
        let mut at = 0;
        while at + 40 <= b.len() {
            assert_eq!(&b[at..at + 4], b"CCB1");
            let len = u32::from_le_bytes(b[at + 4..at + 8].try_into().unwrap()) as usize;
            let id = b[at + 8..at + 40].to_vec();
            if id != [0u8; 32] {
                out.insert(id, b[at + 40..at + 40 + len].to_vec());
            }
            at += 40 + len;
        }
    }
    out
}

/// Whether any file under `dir` holds `needle`.
fn on_disk(dir: &std::path::Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).unwrap().any(|e| {
        let p = e.unwrap().path();
        if p.is_dir() {
            on_disk(&p, needle)
        } else {
            std::fs::read(&p)
                .unwrap()
                .windows(needle.len())
                .any(|w| w == needle)
        }
    })
}

#[test]
fn consent_audit_break_glass_and_erasure_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let (hospital, clinic) = (key(30), key(31));
    init_chain(dir.path(), &[hospital.clone(), clinic.clone()]);
    // Every answer waits for its audit event, so the blob store can be compared before and
    // after a request.
    let mut node = NodeProc::start(dir.path(), &["--block-interval-ms", "2", "--audit-durable"]);
    let url = node.url.clone();
    let (doc_h, doc_c, patient) = (key(32), key(33), key(34));
    register_practitioner(&url, &hospital, &doc_h);
    register_practitioner(&url, &clinic, &doc_c);
    register(&url, &patient, 0, &patient, Role::Patient, None);

    // Tokens. A forged assertion (signed by another key) gets none.
    let t_pat = token(&url, &patient, "patient/*.cruds");
    let t_doc_h = token(&url, &doc_h, "user/*.cruds");
    let t_doc_c = token(&url, &doc_c, "user/*.rs");
    let forged =
        carechain_service::make_assertion(&key(99), &format!("{url}/auth/token"), 4_000_000_000);
    let mut r = agent()
        .post(&format!("{url}/auth/token"))
        .send_form([
            ("grant_type", "client_credentials"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", forged.as_str()),
            ("scope", "user/*.rs"),
        ])
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        401,
        "{}",
        r.body_mut().read_to_string().unwrap()
    );

    // The patient creates their Patient resource, linked to their did.
    let p = json!({"resourceType": "Patient", "identifier": [{"system": "urn:ietf:rfc:3986", "value": patient.public().did().to_string()}], "name": [{"family": "Quixote", "given": ["Alonso"]}], "birthDate": "1950-03-04"});
    let (s, pv, _) = call(
        "POST",
        &format!("{url}/fhir/Patient"),
        &t_pat,
        None,
        Some(&p),
    );
    assert_eq!(s, 201, "{pv}");
    let pid = pv["id"].as_str().unwrap().to_string();

    // The patient lets the hospital treat them (no one writes into a patient's record
    // without her consent, or being the custodian that registered her).
    grant_treatment(&url, &t_pat, &pid, &hospital);

    // A hospital practitioner writes an observation for them.
    let obs = json!({"resourceType": "Observation", "status": "final", "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}, "subject": {"reference": format!("Patient/{pid}")}, "valueQuantity": {"value": 72, "unit": "/min"}});
    let (s, ov, _) = call(
        "POST",
        &format!("{url}/fhir/Observation"),
        &t_doc_h,
        None,
        Some(&obs),
    );
    assert_eq!(s, 201, "{ov}");
    let oid = ov["id"].as_str().unwrap().to_string();
    let obs_url = format!("{url}/fhir/Observation/{oid}");

    // The data key is wrapped to the patient too: their envelope decrypts offline with their
    // own identity key (not with anyone else's), and only they may take it.
    let env_file = dir.path().join("envelope.json");
    envelope(&url, &format!("Observation/{oid}"), &t_pat, &env_file);
    let mine = key_file(dir.path(), "patient.key", &patient);
    let decrypted = decrypt(&mine, &env_file);
    assert_eq!(decrypted["valueQuantity"]["value"], 72);
    assert_eq!(decrypted["id"].as_str(), Some(oid.as_str()));
    let theirs = key_file(dir.path(), "doctor.key", &doc_h);
    let out = carechain(&[
        "decrypt",
        "--key",
        theirs.to_str().unwrap(),
        env_file.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not wrapped to this key"));
    assert_eq!(
        call("GET", &format!("{obs_url}/$envelope"), &t_doc_h, None, None).0,
        403
    );

    // Authoring organization: allowed. Other clinic without consent: denied.
    assert_eq!(call("GET", &obs_url, &t_doc_h, None, None).0, 200);
    let (s, oo, _) = call("GET", &obs_url, &t_doc_c, None, None);
    assert_eq!(
        (s, oo["resourceType"].as_str()),
        (403, Some("OperationOutcome")),
        "{oo}"
    );

    // The patient grants the clinic (by its did) treatment access to observations.
    let consent = permit_only(
        &pid,
        &clinic.public().did().to_string(),
        "TREAT",
        "Observation",
    );
    let (s, cv, _) = call(
        "POST",
        &format!("{url}/fhir/Consent"),
        &t_pat,
        None,
        Some(&consent),
    );
    assert_eq!(s, 201, "{cv}");
    // Nobody but the patient writes their consents.
    assert_eq!(
        call(
            "POST",
            &format!("{url}/fhir/Consent"),
            &t_doc_h,
            None,
            Some(&consent)
        )
        .0,
        403
    );
    // Effective for the very next request; wrong purpose still denied.
    assert_eq!(
        call("GET", &obs_url, &t_doc_c, Some(("TREAT", None)), None).0,
        200
    );
    assert_eq!(
        call("GET", &obs_url, &t_doc_c, Some(("HPAYMT", None)), None).0,
        403
    );

    // Revoke: the next request is denied.
    let mut revoked = cv.clone();
    revoked["status"] = json!("inactive");
    let cid = cv["id"].as_str().unwrap();
    let (s, _, _) = call(
        "PUT",
        &format!("{url}/fhir/Consent/{cid}"),
        &t_pat,
        None,
        Some(&revoked),
    );
    assert_eq!(s, 200);
    assert_eq!(call("GET", &obs_url, &t_doc_c, None, None).0, 403);

    // Search is filtered by consent, not just blocked: the hospital sees the observation, the
    // clinic (consent revoked) gets an empty result.
    let q = format!("{url}/fhir/Observation?patient=Patient/{pid}&code=http://loinc.org|8867-4");
    let (s, b, _) = call("GET", &q, &t_doc_h, None, None);
    assert_eq!((s, b["total"].as_u64()), (200, Some(1)), "{b}");
    let (s, b, _) = call("GET", &q, &t_doc_c, None, None);
    assert_eq!((s, b["total"].as_u64()), (200, Some(0)), "{b}");
    assert_eq!(
        call(
            "GET",
            &format!("{url}/fhir/Observation?nonsense=1"),
            &t_doc_h,
            None,
            None
        )
        .0,
        400
    );

    // Break-glass: requires a reason; then allowed and marked.
    assert_eq!(
        call("GET", &obs_url, &t_doc_c, Some(("ETREAT", None)), None).0,
        403
    );
    let (s, _, bg) = call(
        "GET",
        &obs_url,
        &t_doc_c,
        Some(("ETREAT", Some("unconscious in ER"))),
        None,
    );
    assert_eq!((s, bg.as_deref()), (200, Some("true")));

    // Scopes narrow: the clinic's read-only token cannot write.
    assert_eq!(
        call(
            "POST",
            &format!("{url}/fhir/Observation"),
            &t_doc_c,
            None,
            Some(&obs)
        )
        .0,
        403
    );

    // The patient's lists: `access-log` (its `entries`) and `alerts` (its `alerts`).
    let patient_list = |what: &str, key: &str| -> Vec<Value> {
        let (s, b, _) = call(
            "GET",
            &format!("{url}/patients/{pid}/{what}"),
            &t_pat,
            None,
            None,
        );
        assert_eq!(s, 200, "{b}");
        b[key].as_array().unwrap().clone()
    };
    // The patient's access log holds the denials and the break-glass, each verifiable.
    let entries = patient_list("access-log", "entries");
    assert!(entries.iter().any(|e| e["event"]["outcome"] == "4"
        && e["event"]["agent"][0]["who"]["identifier"]["value"]
            == doc_c.public().did().to_string()));
    // Audit events are stored like any record: wrapped to the patient too, so their envelope
    // decrypts offline with the patient's key to the very event in the log.
    let denial = entries
        .iter()
        .find(|e| e["event"]["outcome"] == "4")
        .unwrap();
    let eid = denial["event"]["id"].as_str().unwrap();
    let audit_file = dir.path().join("audit-envelope.json");
    envelope(&url, &format!("AuditEvent/{eid}"), &t_pat, &audit_file);
    assert_eq!(decrypt(&mine, &audit_file), denial["event"]);
    let alerts_now = || patient_list("alerts", "alerts");
    let alerts = alerts_now();
    assert_eq!(alerts.len(), 1);
    let (_, status) = get(&format!("{url}/v1/status"));
    let verifier = NoteVerifier::parse(status["checkpoint_key"].as_str().unwrap()).unwrap();
    carechain_service::verify_receipt(&alerts[0], &verifier, &Default::default()).unwrap();
    // A tampered receipt fails.
    let mut tampered = alerts[0].clone();
    tampered["event"]["outcomeDesc"] = json!("allowed");
    assert!(carechain_service::verify_receipt(&tampered, &verifier, &Default::default()).is_err());
    // Audit events are anchored in batches: the receipt leads from the event's commitment to
    // the batch root its transaction carries. Without that path, or with a longer one, or at
    // another place in the batch, it does not verify.
    let batch = &alerts[0]["batch"];
    let size = batch["size"].as_u64().expect("a batch receipt");
    assert!(batch["index"].as_u64().unwrap() < size, "{batch}");
    let mut unbatched = alerts[0].clone();
    unbatched.as_object_mut().unwrap().remove("batch");
    assert!(carechain_service::verify_receipt(&unbatched, &verifier, &Default::default()).is_err());
    let mut longer = alerts[0].clone();
    longer["batch"]["proof"]
        .as_array_mut()
        .unwrap()
        .push(json!("00".repeat(32)));
    assert!(carechain_service::verify_receipt(&longer, &verifier, &Default::default()).is_err());
    let mut moved = alerts[0].clone();
    moved["batch"]["index"] = json!((batch["index"].as_u64().unwrap() + 1) % (size + 1));
    moved["batch"]["size"] = json!(size + 1);
    assert!(carechain_service::verify_receipt(&moved, &verifier, &Default::default()).is_err());
    // Every entry of the access log verifies, whatever batch it was written in.
    let entries = patient_list("access-log", "entries");
    assert!(entries.len() > 5, "{entries:?}");
    for e in &entries {
        carechain_service::verify_receipt(e, &verifier, &Default::default())
            .unwrap_or_else(|err| panic!("{err}: {e}"));
    }
    // Through the CLI, offline.
    let f = dir.path().join("receipt.json");
    std::fs::write(&f, alerts[0].to_string()).unwrap();
    let out = carechain_ok(&[
        "verify-receipt",
        "--file",
        f.to_str().unwrap(),
        "--checkpoint-key",
        status["checkpoint_key"].as_str().unwrap(),
    ]);
    assert!(out.contains("\"ok\": true"), "{out}");
    std::fs::write(&f, tampered.to_string()).unwrap();
    assert!(
        !carechain(&[
            "verify-receipt",
            "--file",
            f.to_str().unwrap(),
            "--checkpoint-key",
            status["checkpoint_key"].as_str().unwrap()
        ])
        .status
        .success()
    );
    // A search across patients that finds this patient (here by name, with break-glass) is in
    // *their* access log too, not only in the searcher's audit trail: one more alert, and a
    // plain search without consent finds nothing and discloses nothing.
    let by_name = format!("{url}/fhir/Patient?name=quixote");
    let (s, b, _) = call("GET", &by_name, &t_doc_c, None, None);
    assert_eq!((s, b["total"].as_u64()), (200, Some(0)), "{b}");
    let (s, b, _) = call(
        "GET",
        &by_name,
        &t_doc_c,
        Some(("ETREAT", Some("found unconscious, no ID"))),
        None,
    );
    assert_eq!((s, b["total"].as_u64()), (200, Some(1)), "{b}");
    let alerts = alerts_now();
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    let found = alerts
        .iter()
        .find(|a| a["event"]["subtype"][0]["code"] == "search-type")
        .unwrap_or_else(|| panic!("no alert for the search: {alerts:?}"));
    let desc = found["event"]["outcomeDesc"].as_str().unwrap();
    assert!(
        desc.contains("found unconscious, no ID") && desc.contains("1 of this patient's records"),
        "{desc}"
    );
    carechain_service::verify_receipt(found, &verifier, &Default::default()).unwrap();

    // Only the patient reads their access log.
    assert_eq!(
        call(
            "GET",
            &format!("{url}/patients/{pid}/access-log"),
            &t_doc_h,
            None,
            None
        )
        .0,
        403
    );

    // FHIR errors.
    assert_eq!(
        call(
            "GET",
            &format!("{url}/fhir/Unicorn/1"),
            &t_doc_h,
            None,
            None
        )
        .0,
        404
    );
    let (s, oo, _) = call(
        "POST",
        &format!("{url}/fhir/Observation"),
        &t_doc_h,
        None,
        Some(&json!({"resourceType": "Observation", "status": "final"})),
    );
    assert_eq!(
        (s, oo["resourceType"].as_str()),
        (422, Some("OperationOutcome")),
        "{oo}"
    );
    assert_eq!(call("GET", &obs_url, "not-a-token", None, None).0, 401);
    let huge = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x".repeat(5 * 1024 * 1024)}});
    let (s, oo, _) = call(
        "POST",
        &format!("{url}/fhir/Observation"),
        &t_doc_h,
        None,
        Some(&huge),
    );
    assert_eq!(
        (s, oo["resourceType"].as_str()),
        (413, Some("OperationOutcome")),
        "{oo}"
    );
    let mut r = agent()
        .post(&format!("{url}/fhir/Observation"))
        .header("authorization", format!("Bearer {t_doc_h}"))
        .header("content-type", "application/fhir+json")
        .send("{not json")
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(
        r.body_mut()
            .read_to_string()
            .unwrap()
            .contains("OperationOutcome")
    );
    let mut stale = ov.clone();
    stale["status"] = json!("amended");
    let mut r = agent()
        .put(&obs_url)
        .header("authorization", format!("Bearer {t_doc_h}"))
        .header("if-match", "W/\"7\"")
        .header("content-type", "application/fhir+json")
        .send(stale.to_string())
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        412,
        "{}",
        r.body_mut().read_to_string().unwrap()
    );
    let (_, meta) = get_text(&format!("{url}/fhir/metadata"));
    assert!(meta.contains("CapabilityStatement") && meta.contains("4.0.1"));

    // Erasure by the patient: ciphertext gone, reads 410, a certificate.
    let before = blobs(dir.path());
    let (s, cert, _) = call("POST", &format!("{obs_url}/$erase"), &t_pat, None, None);
    assert_eq!(s, 200, "{cert}");
    assert_eq!(
        cert["certificate"]["destroyed_commitments"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Exactly one ciphertext disappeared (the observation's only version); the one new blob is
    // the audit event of the erasure.
    let after = blobs(dir.path());
    let gone: Vec<_> = before.keys().filter(|k| !after.contains_key(*k)).collect();
    assert_eq!(gone.len(), 1);
    assert!(
        !on_disk(dir.path(), &before[gone[0]][..64]),
        "ciphertext bytes left on disk"
    );
    assert_eq!(after.keys().filter(|k| !before.contains_key(*k)).count(), 1);
    assert_eq!(call("GET", &obs_url, &t_doc_h, None, None).0, 410);

    // The ledger and log still verify end to end.
    node.stop();
    let out = carechain_ok(&["verify", "--data", dir.path().to_str().unwrap()]);
    assert!(out.contains("\"ok\": true"), "{out}");
}

fn synthea_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/data/fhir/synthea-r4"
    ))
}

/// Removes what the server assigns (`id`, `meta`) for comparison.
fn strip(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("id");
        o.remove("meta");
    }
    v
}

#[test]
fn synthea_transactions_round_trip_and_no_identifier_leaks() {
    let dir = tempfile::tempdir().unwrap();
    let hospital = key(40);
    init_chain(dir.path(), std::slice::from_ref(&hospital));
    let log = dir.path().join("node.log");
    let mut node = NodeProc::start_logged(
        dir.path(),
        &["--block-interval-ms", "1", "--audit-durable"],
        &log,
    );
    let url = node.url.clone();
    let doc = key(41);
    register_practitioner(&url, &hospital, &doc);
    let t = token(&url, &doc, "user/*.cruds");

    let mut files: Vec<_> = std::fs::read_dir(synthea_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 7);
    let mut secrets: Vec<String> = Vec::new();
    let mut created: Vec<(String, Option<String>)> = Vec::new();
    let mut checked = 0;
    for f in &files {
        let bundle: Value = serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap();
        let (s, resp, _) = call("POST", &format!("{url}/fhir"), &t, None, Some(&bundle));
        assert_eq!(s, 200, "{}: {resp}", f.display());
        let entries = bundle["entry"].as_array().unwrap();
        let out = resp["entry"].as_array().unwrap();
        assert_eq!(out.len(), entries.len());
        // fullUrl → Type/id as the server assigned them.
        let map: std::collections::BTreeMap<String, String> = entries
            .iter()
            .zip(out)
            .map(|(e, o)| {
                let loc = o["response"]["location"].as_str().unwrap();
                let type_id: Vec<&str> = loc.split('/').take(2).collect();
                (
                    e["fullUrl"].as_str().unwrap().to_string(),
                    type_id.join("/"),
                )
            })
            .collect();
        for (e, o) in entries.iter().zip(out) {
            assert_eq!(o["response"]["status"], "201 Created");
            let loc = o["response"]["location"].as_str().unwrap();
            let path: Vec<&str> = loc.split('/').take(2).collect();
            let (s, back, _) = call(
                "GET",
                &format!("{url}/fhir/{}/{}", path[0], path[1]),
                &t,
                None,
                None,
            );
            assert_eq!(s, 200, "{loc}: {back}");
            // The patient whose compartment it is in (the resource itself, or its subject,
            // patient or beneficiary).
            let patient = if path[0] == "Patient" {
                Some(format!("Patient/{}", path[1]))
            } else {
                ["subject", "patient", "beneficiary"]
                    .iter()
                    .filter_map(|f| back[*f]["reference"].as_str())
                    .find(|r| r.starts_with("Patient/"))
                    .map(str::to_string)
            };
            created.push((path[0].to_string(), patient));
            // Equal to what was sent, references resolved, apart from id and meta.
            let mut sent = e["resource"].clone();
            let text = serde_json::to_string(&sent).unwrap();
            let mut resolved = text.clone();
            for (full, new) in &map {
                resolved = resolved.replace(&format!("\"{full}\""), &format!("\"{new}\""));
            }
            sent = serde_json::from_str(&resolved).unwrap();
            assert_eq!(strip(back), strip(sent), "{loc} differs");
            checked += 1;
            if e["resource"]["resourceType"] == "Patient" {
                let p = &e["resource"];
                for n in p["name"].as_array().unwrap() {
                    secrets.push(n["family"].as_str().unwrap().to_string());
                    for g in n["given"].as_array().into_iter().flatten() {
                        secrets.push(g.as_str().unwrap().to_string());
                    }
                }
                secrets.push(p["birthDate"].as_str().unwrap().to_string());
                for a in p["address"].as_array().into_iter().flatten() {
                    for l in a["line"].as_array().into_iter().flatten() {
                        secrets.push(l.as_str().unwrap().to_string());
                    }
                }
                for i in p["identifier"].as_array().into_iter().flatten() {
                    if i["type"]["coding"][0]["code"] == "MR" {
                        secrets.push(i["value"].as_str().unwrap().to_string());
                    }
                }
            }
        }
    }
    assert!(checked > 400, "only {checked} resources checked");
    // Search over the loaded data: a patient's observations, paged, and patients by name.
    let first: Value = serde_json::from_slice(&std::fs::read(&files[0]).unwrap()).unwrap();
    let n_obs = first["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["resource"]["resourceType"] == "Observation")
        .count();
    let family = first["entry"][0]["resource"]["name"][0]["family"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, pb, _) = call(
        "GET",
        &format!("{url}/fhir/Patient?name={family}"),
        &t,
        None,
        None,
    );
    assert_eq!(pb["total"].as_u64(), Some(1), "{pb}");
    let pid = pb["entry"][0]["resource"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, ob, _) = call(
        "GET",
        &format!("{url}/fhir/Observation?patient={pid}&_count=5"),
        &t,
        None,
        None,
    );
    assert_eq!(ob["total"].as_u64(), Some(n_obs as u64), "{ob}");
    assert_eq!(ob["entry"].as_array().unwrap().len(), 5.min(n_obs));
    assert!(
        n_obs <= 5
            || ob["link"]
                .as_array()
                .unwrap()
                .iter()
                .any(|l| l["relation"] == "next")
    );
    let (_, later, _) = call(
        "GET",
        &format!("{url}/fhir/Observation?patient={pid}&date=ge3000-01-01"),
        &t,
        None,
        None,
    );
    assert_eq!(later["total"].as_u64(), Some(0));
    // Strings shorter than 5 bytes would match random ciphertext and hashes by chance (a
    // 3-byte name appears in a megabyte of random bytes with probability ~6%).
    secrets.retain(|s| s.len() >= 5);
    assert!(secrets.len() >= 20, "{secrets:?}");

    // A transaction with one invalid entry leaves no trace of the valid ones.
    let before = blobs(dir.path());
    let bad = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa", "resource": {"resourceType": "Patient", "active": true}, "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Observation", "status": "final", "subject": {"reference": "urn:uuid:aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa"}}, "request": {"method": "POST", "url": "Observation"}}
    ]});
    let (s, oo, _) = call("POST", &format!("{url}/fhir"), &t, None, Some(&bad));
    assert_eq!(
        (s, oo["resourceType"].as_str()),
        (422, Some("OperationOutcome")),
        "{oo}"
    );
    assert!(
        oo["issue"][0]["expression"][0]
            .as_str()
            .unwrap()
            .contains("entry[1]")
    );
    // Only the audit event of the refused transaction was written.
    let after = blobs(dir.path());
    assert_eq!(after.keys().filter(|k| !before.contains_key(*k)).count(), 1);

    // Every record version has its own ledger transaction carrying only the salted commitment,
    // the resource type, the version and a patient pseudonym: one pseudonym per patient, shared
    // by all of that patient's records, and not a plain hash of anything a reader could guess.
    let (_, status) = get(&format!("{url}/v1/status"));
    let mut tagged: Vec<Value> = Vec::new();
    let mut shown = None;
    for h in 1..=status["height"].as_u64().unwrap() {
        let (_, b) = get(&format!("{url}/v1/blocks/{h}"));
        for tx in b["transactions"].as_array().unwrap() {
            if tx["payload"]["type"] == "tagged_anchor" && tx["payload"]["kind"] == "record" {
                tagged.push(tx["payload"].clone());
                shown.get_or_insert((h, tx["payload"].clone()));
            }
        }
    }
    // The explorer shows the same public tags, and nothing more.
    let (h, p) = shown.unwrap();
    let (s, html) = get_text(&format!("{url}/explorer/blocks/{h}"));
    assert_eq!(s, 200);
    let tag = format!(
        "record {} v1, subject <code>{}",
        p["label"].as_str().unwrap(),
        &p["subject"].as_str().unwrap()[..16]
    );
    assert!(html.contains(&tag), "{tag} not in the block page");
    let explorer_html = html;
    assert_eq!(
        tagged.len(),
        created.len(),
        "one anchor per created version"
    );
    let count = |items: Vec<String>| {
        let mut m = std::collections::BTreeMap::<String, usize>::new();
        for i in items {
            *m.entry(i).or_default() += 1;
        }
        m
    };
    // Types: the same resource types, as often.
    assert_eq!(
        count(
            tagged
                .iter()
                .map(|p| p["label"].as_str().unwrap().to_string())
                .collect()
        ),
        count(created.iter().map(|(rt, _)| rt.clone()).collect())
    );
    assert!(tagged.iter().all(|p| p["version"] == 1));
    // Pseudonyms: zero outside any compartment; otherwise one per patient, as many records
    // under each as that patient has, and none a plain hash of the patient's reference.
    let zero = "0".repeat(64);
    let subjects = count(
        tagged
            .iter()
            .map(|p| p["subject"].as_str().unwrap().to_string())
            .collect(),
    );
    let patients = count(
        created
            .iter()
            .map(|(_, p)| p.clone().unwrap_or_default())
            .collect(),
    );
    assert_eq!(subjects.get(&zero), patients.get(""));
    let mut per_subject: Vec<usize> = subjects
        .iter()
        .filter(|(s, _)| **s != zero)
        .map(|(_, n)| *n)
        .collect();
    let mut per_patient: Vec<usize> = patients
        .iter()
        .filter(|(p, _)| !p.is_empty())
        .map(|(_, n)| *n)
        .collect();
    per_subject.sort_unstable();
    per_patient.sort_unstable();
    assert_eq!(per_patient.len(), 5);
    assert_eq!(per_subject, per_patient, "one pseudonym per patient");
    for p in patients.keys().filter(|p| !p.is_empty()) {
        assert!(!subjects.contains_key(&carechain_crypto::sha256(p.as_bytes()).to_hex()));
    }

    node.stop();
    carechain_ok(&["verify", "--data", dir.path().to_str().unwrap()]);
    for secret in &secrets {
        assert!(
            !explorer_html.contains(secret.as_str()),
            "the explorer shows {secret:?}"
        );
    }
    // No name, birth date, address line or MRN in the ledger (blocks, state, log, checkpoints),
    // in the record metadata, or in the node's log output.
    for file in [
        dir.path().join("ledger.redb"),
        dir.path().join("records/records.redb"),
        log,
    ] {
        let bytes = std::fs::read(&file).unwrap();
        for secret in &secrets {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{} contains {secret:?}",
                file.display()
            );
        }
    }
}

#[test]
fn import_loads_bundles_with_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let hospital = key(50);
    init_chain(dir.path(), std::slice::from_ref(&hospital));
    let mut node = NodeProc::start(dir.path(), &["--block-interval-ms", "1"]);
    let doc = key(51);
    register_practitioner(&node.url, &hospital, &doc);
    let keyfile = key_file(dir.path(), "doc.key", &doc);
    let s = synthea_dir();
    let patient = std::fs::read_dir(&s)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("Ned_"))
        .unwrap();
    let out = carechain_ok(&[
        "import",
        patient.to_str().unwrap(),
        s.join("hospitalInformation1559319163815.json")
            .to_str()
            .unwrap(),
        "--key",
        keyfile.to_str().unwrap(),
        "--url",
        &node.url,
    ]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["imported"], 2, "{v}");
    assert_eq!(v["resources"], 71 + 102);
    // A bundle that is not FHIR is reported, and the command fails.
    let junk = dir.path().join("junk.json");
    std::fs::write(
        &junk,
        "{\"resourceType\": \"Bundle\", \"type\": \"transaction\", \"entry\": [{}]}",
    )
    .unwrap();
    let out = carechain(&[
        "import",
        junk.to_str().unwrap(),
        "--key",
        keyfile.to_str().unwrap(),
        "--url",
        &node.url,
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("junk.json: HTTP 422"));
    // A whole Synthea directory on three connections: the shared hospital and practitioner
    // bundles first, then the patients in parallel; every bundle lands.
    let bundles = std::fs::read_dir(&s).unwrap().count();
    let out = carechain_ok(&[
        "import",
        s.to_str().unwrap(),
        "--jobs",
        "3",
        "--key",
        keyfile.to_str().unwrap(),
        "--url",
        &node.url,
    ]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["imported"], bundles, "{v}");
    assert_eq!(v["failed"], json!([]));
    node.stop();
}
