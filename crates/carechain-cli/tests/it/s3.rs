//! A node keeping record ciphertexts in S3-compatible object storage (`--s3-bucket`): records
//! round-trip through a real S3 server (moto), nothing lands in the data directory's blob
//! store, and erasure deletes the object.

use carechain_objectstore::testing::MotoServer;
use carechain_types::Role;
use serde_json::json;

use crate::common::*;
use crate::fhir::{call, grant_treatment, register, register_practitioner, token};

fn keys(s3: &MotoServer, bucket: &str) -> std::collections::BTreeSet<String> {
    let (s, body) = get_text(&format!("{}/{bucket}?list-type=2", s3.endpoint));
    assert_eq!(s, 200, "{body}");
    body.split("<Key>")
        .skip(1)
        .filter_map(|k| k.split("</Key>").next())
        .map(str::to_string)
        .collect()
}

#[test]
fn records_live_in_s3_and_erasure_deletes_the_object() {
    let s3 = MotoServer::start();
    s3.create_bucket("carechain-records");
    let dir = tempfile::tempdir().unwrap();
    let hospital = key(70);
    init_chain(dir.path(), std::slice::from_ref(&hospital));
    let env = s3.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut node = NodeProc::start_with_env(
        dir.path(),
        &[
            "--block-interval-ms",
            "2",
            "--audit-durable",
            "--s3-bucket",
            "carechain-records",
        ],
        &env,
    );
    let url = node.url.clone();
    let (doc, patient) = (key(71), key(72));
    register_practitioner(&url, &hospital, &doc);
    register(&url, &patient, 0, &patient, Role::Patient, None);
    let t = token(&url, &doc, "user/*.cruds");
    let t_pat = token(&url, &patient, "patient/*.cruds");
    let p = json!({"resourceType": "Patient", "identifier": [{"system": "urn:ietf:rfc:3986", "value": patient.public().did().to_string()}]});
    let (s, pv, _) = call(
        "POST",
        &format!("{url}/fhir/Patient"),
        &t_pat,
        None,
        Some(&p),
    );
    assert_eq!(s, 201, "{pv}");
    grant_treatment(&url, &t_pat, pv["id"].as_str().unwrap(), &hospital);
    let obs = json!({"resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": format!("Patient/{}", pv["id"].as_str().unwrap())},
        "valueQuantity": {"value": 64, "unit": "/min"}});
    let (s, created, _) = call(
        "POST",
        &format!("{url}/fhir/Observation"),
        &t,
        None,
        Some(&obs),
    );
    assert_eq!(s, 201, "{created}");
    let path = format!("/fhir/Observation/{}", created["id"].as_str().unwrap());
    let (s, back, _) = call("GET", &format!("{url}{path}"), &t, None, None);
    assert_eq!((s, &back["valueQuantity"]["value"]), (200, &json!(64)));
    // The ciphertexts are objects in the bucket; none is in the data directory.
    let before = keys(&s3, "carechain-records");
    assert!(
        before.len() >= 3,
        "patient, observation, audit events: {before:?}"
    );
    assert!(before.iter().all(|k| k.starts_with("carechain/")));
    assert!(!dir.path().join("records/blobs").exists());

    // After a restart the node reads them back from the bucket.
    node.stop();
    let mut node = NodeProc::start_with_env(
        dir.path(),
        &["--audit-durable", "--s3-bucket", "carechain-records"],
        &env,
    );
    let url = node.url.clone();
    let t = token(&url, &doc, "user/*.cruds");
    let t_pat = token(&url, &patient, "patient/*.cruds");
    let (s, back, _) = call("GET", &format!("{url}{path}"), &t, None, None);
    assert_eq!(s, 200, "{back}");

    // Erasure by the patient deletes exactly one object (the version's ciphertext); the only
    // new ones are audit events.
    let before = keys(&s3, "carechain-records");
    let (s, cert, _) = call("POST", &format!("{url}{path}/$erase"), &t_pat, None, None);
    assert_eq!(s, 200, "{cert}");
    let after = keys(&s3, "carechain-records");
    assert_eq!(before.difference(&after).count(), 1);
    assert_eq!(call("GET", &format!("{url}{path}"), &t, None, None).0, 410);
    node.stop();
}
