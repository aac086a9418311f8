//! The FHIRPath invariants of the core definitions: each kind is caught, named by its key, at
//! the element it is defined on; everything the official examples and Synthea contain passes
//! (see `all_72_official_examples_are_accepted`, `synthea_bundles_are_accepted`).

use serde_json::{Value, json};

use crate::{issues, patient};

/// The issues of `v` that name invariant `key`.
fn violations(v: Value, key: &str) -> Vec<String> {
    issues(v)
        .into_iter()
        .filter(|i| i.contains(&format!("{key}:")))
        .collect()
}

fn observation() -> Value {
    json!({
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
        "subject": {"reference": "Patient/p1"},
        "valueQuantity": {"value": 72, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}
    })
}

#[test]
fn every_error_invariant_of_the_table_compiles() {
    let (checked, not_compiled) = carechain_fhir::invariant_coverage();
    assert!(
        not_compiled.is_empty(),
        "invariants the engine does not compile: {not_compiled:?}"
    );
    assert!(checked >= 190, "only {checked} invariants checked");
}

#[test]
fn a_valid_observation_meets_every_invariant() {
    assert_eq!(issues(observation()), Vec::<String>::new());
}

#[test]
fn data_type_invariants_are_checked_wherever_the_type_appears() {
    // per-1 on a Period inside a backbone element of a resource.
    let mut p = patient();
    p["contact"][0]["period"] = json!({"start": "2020-05-01", "end": "2019-01-01"});
    let v = violations(p, "per-1");
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(
        v[0].starts_with("Patient.contact[0].period: per-1"),
        "{v:?}"
    );
    // The same Period in the right order passes.
    let mut p = patient();
    p["contact"][0]["period"] = json!({"start": "2019-01-01", "end": "2020-05-01"});
    assert!(violations(p, "per-1").is_empty());

    // qty-3: a code needs its system.
    let mut o = observation();
    o["valueQuantity"] = json!({"value": 1, "code": "kg"});
    assert!(!violations(o, "qty-3").is_empty());

    // ref-1: a local reference needs the contained resource.
    let mut o = observation();
    o["performer"] = json!([{"reference": "#nobody"}]);
    assert!(!violations(o.clone(), "ref-1").is_empty());
    o["contained"] = json!([{"resourceType": "Practitioner", "id": "nobody"}]);
    assert!(violations(o.clone(), "ref-1").is_empty());
    // ... and a contained resource that is referred to meets dom-3.
    assert!(violations(o, "dom-3").is_empty());
}

#[test]
fn resource_and_backbone_invariants_are_checked() {
    // obs-6: dataAbsentReason only without a value.
    let mut o = observation();
    o["dataAbsentReason"] = json!({"text": "not measured"});
    assert!(!violations(o, "obs-6").is_empty());
    // dom-2 / dom-3: contained resources neither nest nor float unreferenced.
    let mut o = observation();
    o["contained"] = json!([{"resourceType": "Practitioner", "id": "pr"}]);
    assert!(!violations(o, "dom-3").is_empty());
    // bdl-7: fullUrl unique (a Bundle invariant on its entries).
    let bundle = json!({
        "resourceType": "Bundle", "type": "collection",
        "entry": [
            {"fullUrl": "urn:uuid:0b3a6c5e-1111-4d7a-9c59-0e5b6f0d1a01", "resource": patient()},
            {"fullUrl": "urn:uuid:0b3a6c5e-1111-4d7a-9c59-0e5b6f0d1a01", "resource": patient()}
        ]
    });
    assert!(!violations(bundle, "bdl-7").is_empty());
    // bdl-3: a request only in batch, transaction or history bundles.
    let bundle = json!({
        "resourceType": "Bundle", "type": "collection",
        "entry": [{"resource": patient(), "request": {"method": "POST", "url": "Patient"}}]
    });
    assert!(!violations(bundle, "bdl-3").is_empty());
    // Invariants of resources inside a Bundle are checked too (obs-6 in an entry).
    let mut o = observation();
    o["dataAbsentReason"] = json!({"text": "not measured"});
    let bundle =
        json!({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": o}]});
    let v = violations(bundle, "obs-6");
    assert!(
        v.iter()
            .any(|i| i.starts_with("Bundle.entry[0].resource(Observation)")),
        "{v:?}"
    );
}

#[test]
fn natively_checked_invariants() {
    // ele-1: an element with nothing but an id.
    let mut p = patient();
    p["name"][0] = json!({"id": "n1"});
    assert!(!violations(p, "ele-1").is_empty());
    // ext-1: an extension with both a value and extensions.
    let mut p = patient();
    p["extension"] = json!([{"url": "http://example.org/x", "valueString": "a",
        "extension": [{"url": "y", "valueString": "b"}]}]);
    assert!(!violations(p, "ext-1").is_empty());
    let mut p = patient();
    p["extension"] = json!([{"url": "http://example.org/x"}]);
    assert!(!violations(p, "ext-1").is_empty());
    // que-2: linkIds unique at any depth.
    let q = json!({
        "resourceType": "Questionnaire", "status": "active",
        "item": [{"linkId": "1", "type": "group", "item": [{"linkId": "1", "type": "string"}]}]
    });
    assert!(!violations(q, "que-2").is_empty());
}

#[test]
fn attachment_size_and_hash_describe_the_data() {
    // "hello" — 5 bytes; SHA-1 base64 "qvTGHdzF6KLavt4PO0gs2a6pQ00=".
    let report = |att: Value| {
        issues(json!({
            "resourceType": "DocumentReference", "status": "current",
            "content": [{"attachment": att}]
        }))
    };
    let ok = json!({"contentType": "text/plain", "data": "aGVsbG8=", "size": 5,
        "hash": "qvTGHdzF6KLavt4PO0gs2a6pQ00="});
    assert_eq!(report(ok.clone()), Vec::<String>::new());
    let mut wrong_size = ok.clone();
    wrong_size["size"] = json!(6);
    let v = report(wrong_size);
    assert!(
        v.iter()
            .any(|i| i.starts_with("DocumentReference.content[0].attachment.size")),
        "{v:?}"
    );
    let mut wrong_hash = ok.clone();
    wrong_hash["hash"] = json!("AAAAAAAAAAAAAAAAAAAAAAAAAAA=");
    assert!(
        report(wrong_hash)
            .iter()
            .any(|i| i.contains("attachment.hash"))
    );
    // att-1 (FHIRPath): data needs a contentType.
    let mut untyped = ok;
    untyped.as_object_mut().unwrap().remove("contentType");
    assert!(report(untyped).iter().any(|i| i.contains("att-1:")));
}

#[test]
fn coding_system_is_an_absolute_uri() {
    let mut o = observation();
    o["code"]["coding"][0]["system"] = json!("loinc");
    let v = issues(o);
    assert!(
        v.iter()
            .any(|i| i.starts_with("Observation.code.coding[0].system")),
        "{v:?}"
    );
    let mut o = observation();
    o["code"]["coding"][0]["system"] = json!("urn:oid:2.16.840.1.113883.6.1");
    assert_eq!(issues(o), Vec::<String>::new());
}

#[test]
fn a_bundle_to_process_defers_its_entries_invariants_to_their_writes() {
    let mut o = observation();
    o["dataAbsentReason"] = json!({"text": "not measured"});
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": o.clone(), "request": {"method": "POST", "url": "Observation"}}]});
    // The entry's obs-6 is found when the entry itself is validated (as it is written)...
    assert!(carechain_fhir::validate_bundle(&bundle).is_ok());
    assert!(!violations(o, "obs-6").is_empty());
    // ...while the Bundle's own invariants and everyone's structure are checked up front.
    let mut bad = bundle.clone();
    bad["type"] = json!("collection");
    assert!(carechain_fhir::validate_bundle(&bad).is_err(), "bdl-3");
    let mut broken = bundle;
    broken["entry"][0]["resource"]["status"] = json!(7);
    assert!(carechain_fhir::validate_bundle(&broken).is_err());
}
