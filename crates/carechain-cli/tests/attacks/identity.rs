//! Hole 1: Who a patient is: editing `Patient.identifier` never makes anyone her; the link is made
//! only by her own registration or her signed claim with a one-time code.

use carechain_crypto::{Namespace, SecretKey};
use carechain_types::{Payload, Role};
use serde_json::{Value, json};

use crate::*;

fn with_did(mut patient: Value, did: &str) -> Value {
    patient["identifier"] = json!([{"system": "urn:ietf:rfc:3986", "value": did}]);
    patient
}

#[test]
fn a_clinician_naming_himself_in_alices_identifier_gains_nothing() {
    let d = Demo::start();
    let alice_id = d.alice_id();
    let (dan, alice) = (d.dan(), d.alice());
    let dan_t = d.token(&dan);
    let alice_t = d.token(&alice);
    let (_, mine) = fhir(&d, "GET", &format!("Patient/{alice_id}"), &alice_t, None);
    let forged = with_did(mine.clone(), &dan.public().did().to_string());

    // The old hole: 200, then her conditions and her access log were his.
    let (s, b) = fhir(
        &d,
        "PUT",
        &format!("Patient/{alice_id}"),
        &dan_t,
        Some(&forged),
    );
    refused(s, &b, "PUT Patient as a clinician without consent");
    let (s, b) = fhir(
        &d,
        "GET",
        &format!("Condition?patient=Patient/{alice_id}"),
        &dan_t,
        None,
    );
    assert_eq!((s, b["total"].as_u64()), (200, Some(0)), "{b}");
    let (s, b) = get_auth(&format!("{}/patients/{alice_id}/access-log", d.url), &dan_t);
    assert_eq!(s, 403, "{b}");
    assert!(b["entries"].is_null());
    // Nothing changed: still version 1, and the refusal is on her log.
    let (_, now) = fhir(&d, "GET", &format!("Patient/{alice_id}"), &alice_t, None);
    assert_eq!(now["meta"]["versionId"], mine["meta"]["versionId"]);
    assert!(
        d.denied_in_log(&alice, &alice_id, &dan)
            .iter()
            .any(|e| e["event"]["subtype"][0]["code"] == "update"),
        "the attempt is on her log"
    );

    // Dr. Reyes may update Alice's demographics under her consent — naming herself in the
    // identifier is stored, but makes her nobody's patient record.
    let carol = d.carol();
    let carol_t = d.token(&carol);
    let forged = with_did(mine, &carol.public().did().to_string());
    let (s, b) = fhir(
        &d,
        "PUT",
        &format!("Patient/{alice_id}"),
        &carol_t,
        Some(&forged),
    );
    assert_eq!(s, 200, "{b}");
    let (s, _) = get_auth(
        &format!("{}/patients/{alice_id}/access-log", d.url),
        &carol_t,
    );
    assert_eq!(s, 403, "the identifier makes no link");
    assert!(
        !d.access_log(&alice, &alice_id).is_empty(),
        "Alice keeps hers"
    );
}

#[test]
fn a_patient_cannot_lock_another_out_by_naming_her_did() {
    let mut d = Demo::start();
    let alice_id = d.alice_id();
    let (alice, bob) = (d.alice(), d.bob());
    let bob_t = d.token(&bob);
    let alice_did = alice.public().did().to_string();
    // Bob edits Alice's record to name himself, then registers a new record naming her.
    let (_, mine) = fhir(
        &d,
        "GET",
        &format!("Patient/{alice_id}"),
        &d.token(&alice),
        None,
    );
    let forged = with_did(mine, &bob.public().did().to_string());
    let (s, b) = fhir(
        &d,
        "PUT",
        &format!("Patient/{alice_id}"),
        &bob_t,
        Some(&forged),
    );
    refused(s, &b, "Bob PUTs Alice's Patient");
    let decoy = json!({"resourceType": "Patient", "name": [{"family": "Decoy"}]});
    let (s, b) = fhir(
        &d,
        "POST",
        "Patient",
        &bob_t,
        Some(&with_did(decoy.clone(), &alice_did)),
    );
    refused(s, &b, "Bob registers a Patient naming Alice");
    // A fresh patient identity (not yet anyone) naming Alice's did is refused too.
    let stranger = SecretKey::from_seed(&[91; 32]);
    submit(
        &d,
        &stranger,
        Payload::Register {
            subject: stranger.public(),
            role: Role::Patient,
            parent: None,
        },
    );
    let st = token(&d.url, &stranger, "patient/*.cruds");
    let (s, b) = fhir(
        &d,
        "POST",
        "Patient",
        &st,
        Some(&with_did(decoy, &alice_did)),
    );
    refused(s, &b, "a stranger registers a Patient naming Alice");

    // After a restart Alice is still herself (links are not rebuilt from identifiers).
    d.node.stop();
    d.node = common::NodeProc::start(&d.data, &[]);
    d.url = d.node.url.clone();
    assert!(!d.access_log(&alice, &alice_id).is_empty());
    let (s, _) = get_auth(
        &format!("{}/patients/{alice_id}/access-log", d.url),
        &d.token(&bob),
    );
    assert_eq!(s, 403);
}

#[test]
fn a_registered_patient_claims_her_record_with_a_code_and_her_signature() {
    let d = Demo::start();
    let carol_t = d.token(&d.carol());
    // The hospital registers Eve (no key yet): it is her record's custodian.
    let (s, eve) = fhir(
        &d,
        "POST",
        "Patient",
        &carol_t,
        Some(&json!({"resourceType": "Patient", "name": [{"family": "Eve"}]})),
    );
    assert_eq!(s, 201, "{eve}");
    let eve_id = eve["id"].as_str().unwrap().to_string();
    let eve_ref = format!("Patient/{eve_id}");
    let (s, before) = fhir(
        &d,
        "POST",
        "Observation",
        &carol_t,
        Some(&observation(&eve_ref, 70)),
    );
    assert_eq!(s, 201);
    let before_id = before["id"].as_str().unwrap().to_string();
    // Eve's key, registered on the ledger.
    let eve_key = SecretKey::from_seed(&[92; 32]);
    submit(
        &d,
        &eve_key,
        Payload::Register {
            subject: eve_key.public(),
            role: Role::Patient,
            parent: None,
        },
    );
    let eve_t = token(&d.url, &eve_key, "patient/*.cruds");
    // Before claiming she is nobody: her record is not hers.
    let (s, b) = fhir(&d, "GET", &format!("Patient/{eve_id}"), &eve_t, None);
    refused(s, &b, "unclaimed record");
    // Only the custodian issues a code; another organization's staff cannot.
    let (s, b) = fhir(
        &d,
        "POST",
        &format!("Patient/{eve_id}/$activation-code"),
        &d.token(&d.dan()),
        None,
    );
    refused(s, &b, "activation code from another organization");
    let (s, code) = fhir(
        &d,
        "POST",
        &format!("Patient/{eve_id}/$activation-code"),
        &carol_t,
        None,
    );
    assert_eq!(s, 200, "{code}");
    let code = code["code"].as_str().unwrap().to_string();
    let claim = |key: &SecretKey, token: &str, code: &str| {
        let msg = carechain_service::claim_message(
            &format!("{}/auth/token", d.url),
            &eve_ref,
            code,
            &key.public().did().to_string(),
        );
        let sig = key.sign(Namespace::PatientClaim, msg.as_bytes()).to_hex();
        fhir(
            &d,
            "POST",
            &format!("Patient/{eve_id}/$claim"),
            token,
            Some(&json!({"code": code, "signature": sig})),
        )
    };
    // Bob cannot use her code (he is someone already, and the signature is his).
    let (s, b) = claim(&d.bob(), &d.token(&d.bob()), &code);
    assert!(s == 403 || s == 409, "{s} {b}");
    // A wrong code, and a signature by another key, are refused.
    let (s, _) = claim(&eve_key, &eve_t, "AAAAA-AAAAA-AAAAA-AAAAA-AAAAA");
    assert_eq!(s, 403);
    let (s, b) = claim(&d.bob(), &eve_t, &code);
    assert_eq!(s, 401, "{b}");
    // Bob's attempt used the code up (a code works once, whoever tries it): a fresh one.
    let (_, code2) = fhir(
        &d,
        "POST",
        &format!("Patient/{eve_id}/$activation-code"),
        &carol_t,
        None,
    );
    let code2 = code2["code"].as_str().unwrap().to_string();
    let (s, b) = claim(&eve_key, &eve_t, &code2);
    assert_eq!(s, 200, "{b}");
    // Now she is her record: she reads it and her log; the code works once.
    let (s, _) = fhir(&d, "GET", &format!("Patient/{eve_id}"), &eve_t, None);
    assert_eq!(s, 200);
    assert!(!d.access_log(&eve_key, &eve_id).is_empty());
    let (s, _) = claim(&eve_key, &eve_t, &code2);
    assert!(s == 403 || s == 409);
    // The record written before her claim is wrapped to her key too: she decrypts it
    // herself, without the node.
    let (s, env) = fhir(
        &d,
        "GET",
        &format!("Observation/{before_id}/$envelope"),
        &eve_t,
        None,
    );
    assert_eq!(s, 200, "{env}");
    assert_eq!(
        env["wrapped"].as_array().unwrap().len(),
        2,
        "node and Eve: {env}"
    );
    let plain = carechain_service::open_envelope(&env, &eve_key).unwrap();
    assert_eq!(plain["id"], before_id.as_str());
    assert!(carechain_service::open_envelope(&env, &d.bob()).is_err());
}
