//! A consent Alice grants on the ledger (signed with her key) lets a clinician of another
//! organization read exactly the data class it names, audited with the height the decision
//! read; her revocation on the ledger denies again at once.

use carechain_crypto::Hash;
use carechain_types::{ConsentPurpose, ConsentRule, Payload};

use crate::*;

/// Alice's records of `category`, as Alice finds them.
fn alice_records(d: &Demo, category: &str) -> Vec<String> {
    let t = d.token(&d.alice());
    let (s, b) = fhir(
        d,
        "GET",
        &format!(
            "Observation?patient=Patient/{}&category={category}",
            d.alice_id()
        ),
        &t,
        None,
    );
    assert_eq!(s, 200, "{b}");
    ids(&b)
}

#[test]
fn a_ledger_consent_opens_one_data_class_to_one_clinician_until_revoked() {
    let d = Demo::start();
    let (alice, dan) = (d.alice(), d.dan());
    let dan_t = d.token(&dan);
    let vitals = alice_records(&d, "vital-signs");
    let labs = alice_records(&d, "laboratory");
    assert!(!vitals.is_empty() && !labs.is_empty());
    // Without consent Dan reads nothing of hers.
    let (s, b) = fhir(&d, "GET", &vitals[0], &dan_t, None);
    refused(s, &b, "a vital sign before any consent");
    // Alice grants him her vital signs, for treatment, on the ledger.
    let id = Hash([0x5a; 32]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let rule = ConsentRule {
        grantee: dan.public(),
        purposes: vec![ConsentPurpose::Treatment],
        classes: vec!["vital-signs".into()],
        not_before_ms: now - 60_000,
        not_after_ms: None,
    };
    submit(
        &d,
        &alice,
        Payload::GrantConsent {
            patient: alice.public(),
            id,
            rule,
        },
    );
    let (s, b) = fhir(&d, "GET", &vitals[0], &dan_t, None);
    assert_eq!(s, 200, "{b}");
    // Only that class, only for that purpose.
    let (s, b) = fhir(&d, "GET", &labs[0], &dan_t, None);
    refused(s, &b, "a lab result the consent does not name");
    let (s, b) = fhir_as(&d, "GET", &vitals[0], &dan_t, None, Some(("HRESCH", None)));
    refused(s, &b, "research, which the consent does not name");
    // Her access log says which consent allowed it, and at which height.
    let alice_id = d.alice_id();
    let log = d.access_log(&alice, &alice_id);
    let notes: Vec<&str> = log
        .iter()
        .filter_map(|e| e["event"]["outcomeDesc"].as_str())
        .collect();
    let by_ledger = log
        .iter()
        .filter(|e| {
            e["event"]["outcomeDesc"]
                .as_str()
                .is_some_and(|n| n.contains(&format!("ledger consent {} at height", id.to_hex())))
        })
        .count();
    assert_eq!(
        by_ledger, 1,
        "one read allowed by the ledger consent: {notes:?}"
    );
    // She revokes it on the ledger: denied again from that block on.
    submit(
        &d,
        &alice,
        Payload::RevokeConsent {
            patient: alice.public(),
            id,
        },
    );
    let (s, b) = fhir(&d, "GET", &vitals[0], &dan_t, None);
    refused(s, &b, "a vital sign after the revocation");
}
