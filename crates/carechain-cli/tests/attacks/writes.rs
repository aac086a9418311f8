//! Hole 2: Writes are decided on the record as stored and on the new version; hole 3: a Bundle audits
//! every patient it touches.

use serde_json::json;

use crate::*;

#[test]
fn a_practitioner_without_consent_cannot_overwrite_and_so_gains_no_authorship() {
    let d = Demo::start();
    let alice_id = d.alice_id();
    let (alice, dan) = (d.alice(), d.dan());
    let dan_t = d.token(&dan);
    let obs = d.alice_record("Observation");
    let alice_t = d.token(&alice);
    let (_, before) = fhir(&d, "GET", &format!("Observation/{obs}"), &alice_t, None);
    let mut changed = before.clone();
    changed["valueQuantity"]["value"] = json!(199);
    let (s, b) = fhir(
        &d,
        "PUT",
        &format!("Observation/{obs}"),
        &dan_t,
        Some(&changed),
    );
    refused(s, &b, "PUT over Alice's Observation without consent");
    let (s, b) = fhir(
        &d,
        "GET",
        &format!("Observation/{obs}/_history"),
        &dan_t,
        None,
    );
    refused(s, &b, "history without consent");
    assert!(b["entry"].is_null());
    let (s, b) = fhir(&d, "DELETE", &format!("Observation/{obs}"), &dan_t, None);
    refused(s, &b, "DELETE without consent");
    // A conditional update that would match her record sees nothing and so creates
    // nothing in her compartment either.
    let (s, b) = fhir(
        &d,
        "PUT",
        &format!("Observation?_id={obs}"),
        &dan_t,
        Some(&changed),
    );
    refused(s, &b, "conditional update into her compartment");
    let (_, after) = fhir(&d, "GET", &format!("Observation/{obs}"), &alice_t, None);
    assert_eq!(after, before, "nothing changed");
    let denials = d.denied_in_log(&alice, &alice_id, &dan);
    assert!(
        denials.len() >= 3,
        "each attempt is on her log: {denials:?}"
    );
}

#[test]
fn a_revoked_practitioner_cannot_write_and_history_decides_each_version() {
    let d = Demo::start();
    let alice_id = d.alice_id();
    let alice_ref = format!("Patient/{alice_id}");
    let (alice, dan) = (d.alice(), d.dan());
    let (alice_t, dan_t, carol_t) = (d.token(&alice), d.token(&dan), d.token(&d.carol()));
    let clinic = d.key("clinic").public().did().to_string();
    // Alice lets Riverside Clinic treat her, except her psychiatric records.
    let grant = consent_for(
        &alice_ref,
        &clinic,
        json!({"provision": [{"type": "deny", "securityLabel": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PSY"}]}]}),
    );
    let (s, grant) = fhir(&d, "POST", "Consent", &alice_t, Some(&grant));
    assert_eq!(s, 201, "{grant}");
    let consent_id = grant["id"].as_str().unwrap().to_string();
    // City Hospital writes an observation, then labels it PSY in a second version.
    let (s, o) = fhir(
        &d,
        "POST",
        "Observation",
        &carol_t,
        Some(&observation(&alice_ref, 80)),
    );
    assert_eq!(s, 201);
    let oid = o["id"].as_str().unwrap().to_string();
    let mut v2 = o.clone();
    v2["meta"] = json!({"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PSY"}]});
    let (s, b) = fhir(
        &d,
        "PUT",
        &format!("Observation/{oid}"),
        &carol_t,
        Some(&v2),
    );
    assert_eq!(s, 200, "{b}");
    // Dan's history shows version 1 only; the current (PSY) version is refused.
    let (s, h) = fhir(
        &d,
        "GET",
        &format!("Observation/{oid}/_history"),
        &dan_t,
        None,
    );
    assert_eq!(s, 200, "{h}");
    let versions: Vec<&str> = h["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["resource"]["meta"]["versionId"].as_str())
        .collect();
    assert_eq!(versions, ["1"], "{h}");
    let (s, _) = fhir(&d, "GET", &format!("Observation/{oid}"), &dan_t, None);
    assert_eq!(s, 403);
    let (s, h) = fhir(&d, "GET", "Observation/_history", &dan_t, None);
    assert_eq!(s, 200);
    assert!(
        !h["entry"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["resource"]["meta"]["versionId"] == "2"
                && e["resource"]["id"] == oid.as_str()),
        "type history withholds the PSY version"
    );
    // Another patient cannot overwrite or delete Alice's consent.
    let bob_t = d.token(&d.bob());
    let mut takeover = grant.clone();
    takeover["status"] = json!("inactive");
    let (s, b) = fhir(
        &d,
        "PUT",
        &format!("Consent/{consent_id}"),
        &bob_t,
        Some(&takeover),
    );
    refused(s, &b, "Bob PUTs Alice's Consent");
    let (s, b) = fhir(&d, "DELETE", &format!("Consent/{consent_id}"), &bob_t, None);
    refused(s, &b, "Bob deletes Alice's Consent");
    // Nor can Dan, whom it names, widen it.
    let (s, b) = fhir(
        &d,
        "PUT",
        &format!("Consent/{consent_id}"),
        &dan_t,
        Some(&takeover),
    );
    refused(s, &b, "Dan PUTs the consent naming him");
    // Dan may write under the consent; once Alice revokes it he may not.
    let (s, _) = fhir(
        &d,
        "POST",
        "Observation",
        &dan_t,
        Some(&observation(&alice_ref, 71)),
    );
    assert_eq!(s, 201);
    let (s, _) = fhir(
        &d,
        "DELETE",
        &format!("Consent/{consent_id}"),
        &alice_t,
        None,
    );
    assert_eq!(s, 204);
    let (s, b) = fhir(
        &d,
        "POST",
        "Observation",
        &dan_t,
        Some(&observation(&alice_ref, 72)),
    );
    refused(s, &b, "a write after the revocation");
    let mut moved = o;
    moved["valueQuantity"]["value"] = json!(1);
    let (s, b) = fhir(
        &d,
        "PUT",
        &format!("Observation/{oid}"),
        &dan_t,
        Some(&moved),
    );
    refused(s, &b, "an update after the revocation");
}

#[test]
fn a_record_cannot_be_moved_into_a_compartment_the_writer_may_not_write() {
    let d = Demo::start();
    let alice_id = d.alice_id();
    let carol_t = d.token(&d.carol());
    // Bob's Patient id (Bob reads his own).
    let bob_t = d.token(&d.bob());
    let (_, b) = fhir(&d, "GET", "Patient?name=Bob", &bob_t, None);
    let bob_id = b["entry"][0]["resource"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let obs = d.alice_record("Observation");
    let (_, mut o) = fhir(&d, "GET", &format!("Observation/{obs}"), &carol_t, None);
    o["subject"] = json!({"reference": format!("Patient/{bob_id}")});
    let (s, b) = fhir(&d, "PUT", &format!("Observation/{obs}"), &carol_t, Some(&o));
    refused(s, &b, "moving Alice's record into Bob's compartment");
    // Nor may a record name Bob beside Alice.
    let (_, mut o) = fhir(&d, "GET", &format!("Observation/{obs}"), &carol_t, None);
    o["performer"] = json!([{"reference": format!("Patient/{bob_id}")}]);
    let (s, b) = fhir(&d, "PUT", &format!("Observation/{obs}"), &carol_t, Some(&o));
    refused(s, &b, "naming Bob in Alice's record");
    assert!(
        !d.denied_in_log(&d.bob(), &bob_id, &d.carol()).is_empty(),
        "Bob sees the attempts"
    );
    let _ = alice_id;
}

#[test]
fn a_transaction_puts_its_writes_on_every_patients_log() {
    let d = Demo::start();
    let alice_id = d.alice_id();
    let carol = d.carol();
    let carol_t = d.token(&carol);
    // A decoy Patient first, then a change to Alice's chart.
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:7f1c0e3a-0000-4000-8000-000000000001",
         "resource": {"resourceType": "Patient", "name": [{"family": "Decoy"}]},
         "request": {"method": "POST", "url": "Patient"}},
        {"fullUrl": "urn:uuid:7f1c0e3a-0000-4000-8000-000000000002",
         "resource": observation(&format!("Patient/{alice_id}"), 77),
         "request": {"method": "POST", "url": "Observation"}}]});
    let (s, b) = fhir(&d, "POST", "", &carol_t, Some(&bundle));
    assert_eq!(s, 200, "{b}");
    let did = carol.public().did().to_string();
    let logged = d.access_log(&d.alice(), &alice_id).into_iter().any(|e| {
        e["event"]["subtype"][0]["code"] == "transaction"
            && e["event"]["agent"][0]["who"]["identifier"]["value"] == did.as_str()
    });
    assert!(logged, "the transaction is on Alice's log");
    // A transaction with one entry the caller may not write writes nothing at all.
    let dan_t = d.token(&d.dan());
    let bad = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:7f1c0e3a-0000-4000-8000-000000000003",
         "resource": {"resourceType": "Patient", "name": [{"family": "Innocent"}]},
         "request": {"method": "POST", "url": "Patient"}},
        {"fullUrl": "urn:uuid:7f1c0e3a-0000-4000-8000-000000000004",
         "resource": observation(&format!("Patient/{alice_id}"), 1),
         "request": {"method": "POST", "url": "Observation"}}]});
    let (s, b) = fhir(&d, "POST", "", &dan_t, Some(&bad));
    refused(
        s,
        &b,
        "a transaction writing into Alice's chart without consent",
    );
    let (_, found) = fhir(&d, "GET", "Patient?name=Innocent", &dan_t, None);
    assert_eq!(found["total"], 0, "nothing of it was written");
    assert!(!d.denied_in_log(&d.alice(), &alice_id, &d.dan()).is_empty());
    // Bundles keep the core rules: fullUrls absolute and unique.
    let dup = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "Patient/x", "resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}}]});
    let (s, b) = fhir(&d, "POST", "", &carol_t, Some(&dup));
    assert_eq!(s, 422, "{b}");
}
