//! `carechain consent` against a running demo node: a patient grants a consent on the ledger
//! with her key, lists it, revokes it; nobody else can revoke it; the ledger answers the same
//! through `/v1/identities/{did}/consents`.

use serde_json::Value;

use crate::common::*;

fn did_of(key_file: &std::path::Path) -> String {
    let v: Value = serde_json::from_slice(&std::fs::read(key_file).unwrap()).unwrap();
    v["did"].as_str().unwrap().to_string()
}

#[test]
fn a_patient_grants_lists_and_revokes_a_consent_on_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("node");
    let node = NodeProc::start(&data, &["--demo"]);
    let url = node.url.as_str();
    let alice = data.join("demo-keys/patient-alice.key");
    let bob = data.join("demo-keys/patient-bob.key");
    let doctor = data.join("demo-keys/clinic-clinician.key");
    let (alice_did, doctor_did) = (did_of(&alice), did_of(&doctor));
    let id = "11".repeat(32);
    carechain_ok(&[
        "consent",
        "grant",
        "--url",
        url,
        "--key",
        alice.to_str().unwrap(),
        "--grantee",
        &doctor_did,
        "--purpose",
        "TREAT",
        "--class",
        "vital-signs",
        "--id",
        &id,
    ]);
    let list = |who: &str| -> Value {
        serde_json::from_str(&carechain_ok(&["consent", "list", "--url", url, who])).unwrap()
    };
    let l = list(&alice_did);
    let c = &l["consents"][0];
    assert_eq!(c["id"], id.as_str(), "{l}");
    assert_eq!(c["grantee"], doctor_did.as_str());
    assert_eq!(c["purposes"][0], "TREAT");
    assert_eq!(c["classes"][0], "vital-signs");
    assert_eq!(c["in_force"], true);
    // Bob cannot revoke Alice's consent (he has none with this id); a practitioner cannot
    // grant at all.
    let out = carechain(&[
        "consent",
        "revoke",
        "--url",
        url,
        "--key",
        bob.to_str().unwrap(),
        "--id",
        &id,
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("unknown_consent"));
    let out = carechain(&[
        "consent",
        "grant",
        "--url",
        url,
        "--key",
        doctor.to_str().unwrap(),
        "--grantee",
        &alice_did,
        "--purpose",
        "TREAT",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("unauthorized"));
    // Alice revokes it: no longer in force, with the revoking height.
    carechain_ok(&[
        "consent",
        "revoke",
        "--url",
        url,
        "--key",
        alice.to_str().unwrap(),
        "--id",
        &id,
    ]);
    let l = list(&alice_did);
    assert_eq!(l["consents"][0]["in_force"], false, "{l}");
    assert!(
        l["consents"][0]["revoked_at"].as_u64().unwrap()
            > l["consents"][0]["granted_at"].as_u64().unwrap()
    );
    let (s, v) = get(&format!("{url}/v1/identities/{alice_did}/consents"));
    assert_eq!(s, 200);
    // (The height may have moved on: the demo node anchors audit batches meanwhile.)
    assert_eq!(v["consents"], l["consents"]);
    let (s, _) = get(&format!("{url}/v1/identities/nonsense/consents"));
    assert_eq!(s, 400);
}
