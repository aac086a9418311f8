//! Hole 7: Operations honour the token's scopes; hole 8: break-glass is per patient, time-boxed,
//! bounded, and never widens a search; a device reads nothing.

use crate::*;

#[test]
fn erase_envelope_access_log_and_alerts_honour_the_scopes() {
    let d = Demo::start();
    let alice_id = d.alice_id();
    let condition = d.alice_record("Condition");
    let narrow = token(&d.url, &d.alice(), "patient/Observation.rs");
    let (s, b) = fhir(
        &d,
        "POST",
        &format!("Condition/{condition}/$erase"),
        &narrow,
        None,
    );
    refused(s, &b, "$erase with patient/Observation.rs");
    let (s, b) = fhir(
        &d,
        "GET",
        &format!("Condition/{condition}/$envelope"),
        &narrow,
        None,
    );
    refused(s, &b, "$envelope with patient/Observation.rs");
    for what in ["access-log", "alerts"] {
        let (s, b) = get_auth(&format!("{}/patients/{alice_id}/{what}", d.url), &narrow);
        assert_eq!(s, 403, "{what}: {b}");
    }
    // The condition is intact.
    let (s, _) = fhir(
        &d,
        "GET",
        &format!("Condition/{condition}"),
        &d.token(&d.alice()),
        None,
    );
    assert_eq!(s, 200);
}

#[test]
fn break_glass_opens_one_patient_for_a_while_and_never_a_search_across_patients() {
    let d = Demo::start();
    let alice_id = d.alice_id();
    let alice_ref = format!("Patient/{alice_id}");
    let dan_t = d.token(&d.dan());
    let reason = Some("unconscious in the emergency room");
    // Bob's record, written by City Hospital with Bob's consent absent: Bob registers with
    // the hospital by consenting, the hospital writes his chart.
    let bob_t = d.token(&d.bob());
    let (_, b) = fhir(&d, "GET", "Patient?name=Bob", &bob_t, None);
    let bob_ref = format!(
        "Patient/{}",
        b["entry"][0]["resource"]["id"].as_str().unwrap()
    );
    let hospital = d.key("hospital").public().did().to_string();
    let (s, _) = fhir(
        &d,
        "POST",
        "Consent",
        &bob_t,
        Some(&consent_for(&bob_ref, &hospital, serde_json::json!({}))),
    );
    assert_eq!(s, 201);
    let (s, _) = fhir(
        &d,
        "POST",
        "Observation",
        &d.token(&d.carol()),
        Some(&observation(&bob_ref, 90)),
    );
    assert_eq!(s, 201);

    // One ETREAT search across patients: nothing consent does not allow.
    let (s, b) = fhir_as(
        &d,
        "GET",
        "Observation",
        &dan_t,
        None,
        Some(("ETREAT", reason)),
    );
    assert_eq!((s, b["total"].as_u64()), (200, Some(0)), "{b}");
    // A reason is bounded.
    let long = "x".repeat(501);
    let obs = d.alice_record("Observation");
    let (s, _) = fhir_as(
        &d,
        "GET",
        &format!("Observation/{obs}"),
        &dan_t,
        None,
        Some(("ETREAT", Some(&long))),
    );
    assert_eq!(s, 400);
    // Breaking the glass for Alice's record opens Alice for him, for a while: her other
    // records (also without a reason) — still never Bob's.
    let (s, _) = fhir_as(
        &d,
        "GET",
        &format!("Observation/{obs}"),
        &dan_t,
        None,
        Some(("ETREAT", reason)),
    );
    assert_eq!(s, 200);
    let (s, b) = fhir_as(
        &d,
        "GET",
        &format!("Condition?patient={alice_ref}"),
        &dan_t,
        None,
        Some(("ETREAT", None)),
    );
    assert_eq!(s, 200);
    assert!(b["total"].as_u64().unwrap() >= 1, "{b}");
    let (s, b) = fhir_as(
        &d,
        "GET",
        "Observation",
        &dan_t,
        None,
        Some(("ETREAT", reason)),
    );
    assert_eq!(s, 200);
    let found = ids(&b);
    assert!(!found.is_empty());
    let bobs: Vec<_> = found
        .iter()
        .filter(|i| {
            let (_, r) = fhir(&d, "GET", i, &bob_t, None);
            r["subject"]["reference"] == bob_ref.as_str()
        })
        .collect();
    assert!(bobs.is_empty(), "Bob's records stay closed: {bobs:?}");
    // Without ETREAT the grant does nothing: consent alone.
    let (s, _) = fhir(&d, "GET", &format!("Observation/{obs}"), &dan_t, None);
    assert_eq!(s, 403);
    // Every access under the grant is on Alice's log as break-glass, with the reason.
    let alerts = get_auth(
        &format!("{}/patients/{alice_id}/alerts", d.url),
        &d.token(&d.alice()),
    )
    .1;
    assert!(
        alerts
            .to_string()
            .contains("unconscious in the emergency room"),
        "{alerts}"
    );
    // Break-glass never lets a write through.
    let (s, b) = fhir_as(
        &d,
        "POST",
        "Observation",
        &dan_t,
        Some(&observation(&alice_ref, 1)),
        Some(("ETREAT", reason)),
    );
    refused(s, &b, "a write by break-glass");
}

#[test]
fn a_device_reads_nothing() {
    let d = Demo::start();
    let alice_id = d.alice_id();
    let wearable = d.key("wearable");
    let t = token(&d.url, &wearable, "user/*.cruds");
    let obs = d.alice_record("Observation");
    let (s, b) = fhir(&d, "GET", &format!("Observation/{obs}"), &t, None);
    refused(s, &b, "a device reading a record its organization wrote");
    let (s, b) = fhir(
        &d,
        "GET",
        &format!("Observation?patient=Patient/{alice_id}"),
        &t,
        None,
    );
    refused(s, &b, "a device searching");
    let (s, b) = fhir(&d, "GET", &format!("Observation/{obs}/_history"), &t, None);
    refused(s, &b, "a device reading history");
}
