//! Hole 4: Every record that names a patient anywhere is in her compartment (the official
//! definition: `Task.for`, Appointment participants, absolute references); audit events are
//! hers and the auditors'. Hole 9: no existence oracle: out of scope is refused before any lookup.

use serde_json::json;

use crate::*;

#[test]
fn records_naming_a_patient_anywhere_are_hers_to_consent() {
    let d = Demo::start();
    let alice_id = d.alice_id();
    let carol_t = d.token(&d.carol());
    let dan_t = d.token(&d.dan());
    let task = json!({"resourceType": "Task", "status": "requested", "intent": "order",
        "for": {"reference": format!("Patient/{alice_id}")}, "description": "call back"});
    let (s, t) = fhir(&d, "POST", "Task", &carol_t, Some(&task));
    assert_eq!(s, 201, "{t}");
    let appt = json!({"resourceType": "Appointment", "status": "booked",
        "start": "2026-12-10T09:00:00Z", "end": "2026-12-10T09:30:00Z", "participant": [
        {"actor": {"reference": format!("{}/fhir/Patient/{alice_id}", d.url)}, "status": "accepted"}]});
    let (s, a) = fhir(&d, "POST", "Appointment", &carol_t, Some(&appt));
    assert_eq!(s, 201, "{a}");
    for (rt, r) in [("Task", &t), ("Appointment", &a)] {
        let id = r["id"].as_str().unwrap();
        let (s, b) = fhir(&d, "GET", &format!("{rt}/{id}"), &dan_t, None);
        refused(s, &b, &format!("{rt} naming Alice"));
        let (s, b) = fhir(&d, "GET", rt, &dan_t, None);
        assert_eq!(s, 200);
        assert!(
            !ids(&b).contains(&format!("{rt}/{id}")),
            "{rt} found by search: {b}"
        );
        // Her own: she reads them.
        let (s, _) = fhir(&d, "GET", &format!("{rt}/{id}"), &d.token(&d.alice()), None);
        assert_eq!(s, 200, "{rt} is in Alice's compartment");
    }
    // An include cannot reach them either.
    let (s, b) = fhir(
        &d,
        "GET",
        "Practitioner?_revinclude=Task:owner&_revinclude=Appointment:actor",
        &dan_t,
        None,
    );
    assert_eq!(s, 200);
    assert!(
        !ids(&b)
            .iter()
            .any(|i| i.starts_with("Task/") || i.starts_with("Appointment/"))
    );
}

#[test]
fn audit_events_are_readable_by_their_patient_and_auditors_only() {
    let d = Demo::start();
    let alice_id = d.alice_id();
    // Break-glass by Dr. Okafor: its reason is on Alice's log, and nowhere else.
    let dan_t = d.token(&d.dan());
    let obs = d.alice_record("Observation");
    let (s, _) = fhir_as(
        &d,
        "GET",
        &format!("Observation/{obs}"),
        &dan_t,
        None,
        Some(("ETREAT", Some("collapsed at reception"))),
    );
    assert_eq!(s, 200);
    let bob_t = d.token(&d.bob());
    let (s, b) = fhir(&d, "GET", "AuditEvent", &bob_t, None);
    assert_eq!(s, 200, "{b}");
    assert!(
        !b.to_string().contains("collapsed at reception"),
        "Bob sees no one else's audit events: {b}"
    );
    for e in b["entry"].as_array().unwrap() {
        let who = &e["resource"]["entity"];
        assert!(who.to_string().contains("Patient/"), "only his own: {e}");
    }
    // Nor do practitioners — even the one who broke the glass — or searches of other types.
    let (_, b) = fhir(&d, "GET", "AuditEvent", &dan_t, None);
    assert!(b["entry"].as_array().is_none_or(|e| e.is_empty()), "{b}");
    let (_, b) = fhir(&d, "GET", "AuditEvent/_history", &d.token(&d.carol()), None);
    assert!(!b.to_string().contains("collapsed at reception"));
    // Alice reads hers; the operator (auditor) reads all.
    let (_, b) = fhir(
        &d,
        "GET",
        &format!("AuditEvent?patient=Patient/{alice_id}"),
        &d.token(&d.alice()),
        None,
    );
    assert!(b.to_string().contains("collapsed at reception"), "{b}");
    let operator = read_key(&d.data.join("operator.key"));
    let op_t = token(&d.url, &operator, "system/*.rs");
    let (_, b) = fhir(&d, "GET", "AuditEvent?_count=1000", &op_t, None);
    assert!(b.to_string().contains("collapsed at reception"));
    // No one writes an audit event.
    let (s, b) = fhir(
        &d,
        "POST",
        "AuditEvent",
        &op_t,
        Some(&b["entry"][0]["resource"]),
    );
    assert!(s == 403, "{s} {b}");
}

#[test]
fn out_of_scope_is_refused_alike_whether_or_not_the_record_exists() {
    let d = Demo::start();
    let condition = d.alice_record("Condition");
    let narrow = token(&d.url, &d.alice(), "patient/Observation.rs");
    let (s1, b1) = fhir(&d, "GET", &format!("Condition/{condition}"), &narrow, None);
    let (s2, b2) = fhir(&d, "GET", "Condition/does-not-exist", &narrow, None);
    assert_eq!((s1, s2), (403, 403), "{b1} {b2}");
    assert_eq!(b1, b2, "the same answer: no existence oracle");
    // The same for the practitioner without consent and a read-only token's writes.
    let dan_ro = token(&d.url, &d.dan(), "user/Patient.rs");
    let (s1, b1) = fhir(
        &d,
        "DELETE",
        &format!("Condition/{condition}"),
        &dan_ro,
        None,
    );
    let (s2, b2) = fhir(&d, "DELETE", "Condition/does-not-exist", &dan_ro, None);
    assert_eq!((s1, s2), (403, 403));
    assert_eq!(b1, b2);
    // Ids in URLs follow FHIR id syntax.
    let t = d.token(&d.carol());
    let (s, _) = fhir(
        &d,
        "GET",
        &format!("Condition/{}", "x".repeat(65)),
        &t,
        None,
    );
    assert_eq!(s, 400);
}
