//! A FHIR `Consent` Alice writes (she is a ledger identity and let her node sign for her) is
//! the ledger's: the create grants on the ledger, a revocation signed anywhere ends it here,
//! an update, a deletion or an erasure revokes it; nobody else can make the node sign for
//! her, and without her delegation nothing reaches the ledger.

use carechain_crypto::Hash;
use carechain_types::Payload;
use serde_json::{Value, json};

use crate::*;

/// Alice's consents on the ledger.
fn on_ledger(d: &Demo) -> Vec<Value> {
    let (s, v) = get(&format!(
        "{}/v1/identities/{}/consents",
        d.url,
        d.alice().public().did()
    ));
    assert_eq!(s, 200, "{v}");
    v["consents"].as_array().cloned().unwrap_or_default()
}

fn in_force(d: &Demo) -> Vec<Value> {
    on_ledger(d)
        .into_iter()
        .filter(|c| c["in_force"] == true)
        .collect()
}

/// Alice's read-only consent for Dan's vital signs.
fn vitals_for_dan(d: &Demo) -> Value {
    let patient = format!("Patient/{}", d.alice_id());
    consent_for(
        &patient,
        &d.dan().public().did().to_string(),
        json!({
            "action": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentaction", "code": "access"}]}],
            "class": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]
        }),
    )
}

/// Alice's first record of `category`.
fn first(d: &Demo, category: &str) -> String {
    let (s, b) = fhir(
        d,
        "GET",
        &format!(
            "Observation?patient=Patient/{}&category={category}",
            d.alice_id()
        ),
        &d.token(&d.alice()),
        None,
    );
    assert_eq!(s, 200, "{b}");
    ids(&b).into_iter().next().expect("a record")
}

fn create(d: &Demo, token: &str, consent: &Value) -> (u16, Value) {
    fhir(d, "POST", "Consent", token, Some(consent))
}

#[test]
fn a_fhir_consent_is_granted_and_revoked_on_the_ledger() {
    let d = Demo::start();
    let (alice_t, dan_t) = (d.token(&d.alice()), d.token(&d.dan()));
    let (vital, lab) = (first(&d, "vital-signs"), first(&d, "laboratory"));
    let before = on_ledger(&d).len();
    let (s, b) = fhir(&d, "GET", &vital, &dan_t, None);
    refused(s, &b, "a vital sign before any consent");

    // Created through FHIR: one ledger consent, for Dan, of exactly what it says.
    let (s, c) = create(&d, &alice_t, &vitals_for_dan(&d));
    assert_eq!(s, 201, "{c}");
    let cid = c["id"].as_str().unwrap().to_string();
    let live = in_force(&d);
    assert_eq!(on_ledger(&d).len(), before + 1);
    assert_eq!(live.len(), 1, "{live:?}");
    assert_eq!(live[0]["grantee"], d.dan().public().did().to_string());
    assert_eq!(live[0]["classes"], json!(["vital-signs"]));
    assert_eq!(live[0]["purposes"], json!(["TREAT"]));
    let (s, b) = fhir(&d, "GET", &vital, &dan_t, None);
    assert_eq!(s, 200, "{b}");
    let (s, b) = fhir(&d, "GET", &lab, &dan_t, None);
    refused(s, &b, "a lab result the consent does not name");
    let log = d.access_log(&d.alice(), &d.alice_id());
    assert!(
        log.iter().any(|e| e["event"]["outcomeDesc"]
            .as_str()
            .is_some_and(|n| n.contains("ledger consent"))),
        "the read names the ledger consent"
    );
    // Read back, it is the FHIR resource, marked as the ledger's.
    let (s, r) = fhir(&d, "GET", &format!("Consent/{cid}"), &alice_t, None);
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["status"], "active");
    assert!(r["meta"]["tag"].to_string().contains("ledger"), "{r}");

    // Alice revokes it on the ledger with her own key (as at any other node): denied here at
    // once, and the FHIR resource reads inactive.
    let id = Hash::from_hex(live[0]["id"].as_str().unwrap()).unwrap();
    let alice = d.alice();
    submit(
        &d,
        &alice,
        Payload::RevokeConsent {
            patient: alice.public(),
            id,
        },
    );
    let (s, b) = fhir(&d, "GET", &vital, &dan_t, None);
    refused(s, &b, "a vital sign after the revocation on the ledger");
    let (_, r) = fhir(&d, "GET", &format!("Consent/{cid}"), &alice_t, None);
    assert_eq!(r["status"], "inactive", "{r}");

    // An update that ends a consent revokes it on the ledger.
    let (s, c) = create(&d, &alice_t, &vitals_for_dan(&d));
    assert_eq!(s, 201, "{c}");
    assert_eq!(in_force(&d).len(), 1);
    let cid = c["id"].as_str().unwrap().to_string();
    let mut ended = c.clone();
    ended["status"] = json!("inactive");
    let (s, b) = fhir(&d, "PUT", &format!("Consent/{cid}"), &alice_t, Some(&ended));
    assert_eq!(s, 200, "{b}");
    assert!(in_force(&d).is_empty(), "the update revoked it");
    let (s, b) = fhir(&d, "GET", &vital, &dan_t, None);
    refused(s, &b, "a vital sign after the update");

    // So do a deletion and an erasure.
    for how in ["delete", "erase"] {
        let (s, c) = create(&d, &alice_t, &vitals_for_dan(&d));
        assert_eq!(s, 201, "{c}");
        assert_eq!(in_force(&d).len(), 1, "{how}");
        let path = format!("Consent/{}", c["id"].as_str().unwrap());
        let (s, b) = match how {
            "delete" => fhir(&d, "DELETE", &path, &alice_t, None),
            _ => fhir(&d, "POST", &format!("{path}/$erase"), &alice_t, None),
        };
        assert!(s == 200 || s == 204, "{how}: {s} {b}");
        assert!(in_force(&d).is_empty(), "the {how} revoked it");
        let (s, b) = fhir(&d, "GET", &vital, &dan_t, None);
        refused(s, &b, how);
    }
}

#[test]
fn nobody_else_makes_the_node_sign_for_her_and_without_her_delegation_nothing_is_signed() {
    let d = Demo::start();
    let alice_t = d.token(&d.alice());
    let before = on_ledger(&d).len();
    // Dan writes himself a consent of hers: refused, nothing on the ledger.
    let dan_t = d.token(&d.dan());
    let (s, b) = create(&d, &dan_t, &vitals_for_dan(&d));
    refused(s, &b, "a clinician granting himself her consent");
    assert_eq!(on_ledger(&d).len(), before);
    // A consent naming an identity the ledger does not know is a bad request.
    let patient = format!("Patient/{}", d.alice_id());
    let stranger = carechain_crypto::SecretKey::generate().unwrap();
    let mut bad = vitals_for_dan(&d);
    bad["provision"]["actor"][0]["reference"]["identifier"]["value"] =
        json!(stranger.public().did().to_string());
    let (s, b) = create(&d, &alice_t, &bad);
    assert_eq!(s, 400, "{b}");
    assert_eq!(on_ledger(&d).len(), before);
    // She withdraws her delegation: her FHIR consent is refused, saying what to do, and
    // nothing reaches the ledger; a consent the ledger cannot say stays this node's.
    let alice = d.alice();
    let node = d.node_did();
    submit(
        &d,
        &alice,
        Payload::DelegateConsents {
            delegate: node.public_key(),
            allowed: false,
        },
    );
    let (s, b) = create(&d, &alice_t, &vitals_for_dan(&d));
    assert_eq!(s, 403, "{b}");
    assert!(b.to_string().contains("consent delegate"), "{b}");
    assert_eq!(on_ledger(&d).len(), before);
    let deny = consent_for(
        &patient,
        &d.dan().public().did().to_string(),
        json!({"type": "deny"}),
    );
    let (s, b) = create(&d, &alice_t, &deny);
    assert_eq!(s, 201, "a deny is this node's: {b}");
    assert_eq!(on_ledger(&d).len(), before);
}
