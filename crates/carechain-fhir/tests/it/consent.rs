//! The consent matrix: owner, authoring organization, other organization with and without
//! consent, after revocation, wrong purpose, expired period, data class and label limits,
//! nested exceptions, deny overriding permit; ETREAT is no consent rule.

use carechain_fhir::{
    consent::{Action, Actor, Basis, Decision, Policy, Request},
    fhir_time_range, validate_resource,
};
use serde_json::{Value, json};

const PATIENT: &str = "Patient/p1";
const NOW: &str = "2026-11-23T12:00:00Z";

fn now() -> i64 {
    fhir_time_range(NOW).unwrap().0
}

fn doctor(org: &str) -> Actor {
    Actor {
        reference: "Practitioner/dr-who".into(),
        organization: Some(org.into()),
    }
}

fn request<'a>(
    actor: &'a Actor,
    purpose: &'a str,
    rt: &'a str,
    labels: &'a [String],
) -> Request<'a> {
    Request {
        actor,
        action: Action::Access,
        purpose,
        resource_type: rt,
        categories: &[],
        security_labels: labels,
        patient: PATIENT,
        author_organization: Some("Organization/home-hospital"),
        now: now(),
    }
}

fn consent(id: &str, status: &str, provision: Value) -> Value {
    let c = json!({
        "resourceType": "Consent",
        "id": id,
        "status": status,
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": PATIENT},
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
        "provision": provision,
    });
    validate_resource(&c).unwrap_or_else(|e| panic!("test consent is not valid FHIR: {e:?}"));
    c
}

fn grant_to(org: &str, purpose: &str, end: &str) -> Value {
    consent(
        "grant",
        "active",
        json!({
            "type": "deny",
            "provision": [{
                "type": "permit",
                "period": {"start": "2026-01-01", "end": end},
                "actor": [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "PRCP"}]}, "reference": {"reference": org}}],
                "action": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentaction", "code": "access"}]}],
                "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": purpose}],
                "class": [{"system": "http://hl7.org/fhir/resource-types", "code": "Observation"}]
            }]
        }),
    )
}

fn decide(p: &Policy, r: &Request<'_>) -> Decision {
    p.decide(r)
}

#[test]
fn consent_matrix() {
    let other = doctor("Organization/other-clinic");
    let home = doctor("Organization/home-hospital");
    let me = Actor {
        reference: PATIENT.into(),
        organization: None,
    };
    let none: Vec<String> = vec![];
    let empty = Policy::compile(&[]).unwrap();

    // The patient, always.
    assert_eq!(
        decide(&empty, &request(&me, "TREAT", "Observation", &none)),
        Decision::Permit(Basis::Owner)
    );
    // The authoring organization, for treatment.
    assert_eq!(
        decide(&empty, &request(&home, "TREAT", "Observation", &none)),
        Decision::Permit(Basis::Author)
    );
    assert!(!decide(&empty, &request(&home, "HPAYMT", "Observation", &none)).permitted());
    // Another organization without consent.
    assert_eq!(
        decide(&empty, &request(&other, "TREAT", "Observation", &none)),
        Decision::Deny(Basis::NoConsent)
    );

    // With consent: that organization, that purpose, that class, that period.
    let granted =
        Policy::compile(&[grant_to("Organization/other-clinic", "TREAT", "2027-01-01")]).unwrap();
    assert_eq!(
        decide(&granted, &request(&other, "TREAT", "Observation", &none)),
        Decision::Permit(Basis::Consent("grant".into()))
    );
    // Wrong purpose, other class: the root deny applies.
    assert!(!decide(&granted, &request(&other, "HRESCH", "Observation", &none)).permitted());
    assert!(!decide(&granted, &request(&other, "TREAT", "Condition", &none)).permitted());
    // "Deny all, except …" does not take the authoring organization's access away.
    assert_eq!(
        decide(&granted, &request(&home, "TREAT", "Condition", &none)),
        Decision::Permit(Basis::Author)
    );
    // A third organization is not covered.
    assert!(
        !decide(
            &granted,
            &request(&doctor("Organization/third"), "TREAT", "Observation", &none)
        )
        .permitted()
    );

    // Expired period.
    let expired =
        Policy::compile(&[grant_to("Organization/other-clinic", "TREAT", "2026-06-30")]).unwrap();
    assert!(!decide(&expired, &request(&other, "TREAT", "Observation", &none)).permitted());

    // Revoked (status inactive): as if never granted.
    let mut revoked = grant_to("Organization/other-clinic", "TREAT", "2027-01-01");
    revoked["status"] = json!("inactive");
    let revoked = Policy::compile(&[revoked]).unwrap();
    assert_eq!(
        decide(&revoked, &request(&other, "TREAT", "Observation", &none)),
        Decision::Deny(Basis::NoConsent)
    );

    // Break-glass is not a consent rule (the service grants it per patient): ETREAT alone
    // permits nothing consent does not, for anyone, reading or writing.
    let insurer = Actor {
        reference: "Organization/insurer".into(),
        organization: None,
    };
    assert_eq!(
        decide(&granted, &request(&other, "ETREAT", "Condition", &none)),
        Decision::Deny(Basis::NoConsent)
    );
    assert!(!decide(&granted, &request(&insurer, "ETREAT", "Condition", &none)).permitted());
    let mut write = request(&other, "ETREAT", "Condition", &none);
    write.action = Action::Correct;
    assert!(!decide(&granted, &write).permitted());
}

#[test]
fn deny_overrides_permit_and_labels_narrow() {
    let other = doctor("Organization/other-clinic");
    let home = doctor("Organization/home-hospital");
    let none: Vec<String> = vec![];
    let psy = vec!["PSY".to_string()];
    // Permit everything to the other clinic, but deny psychiatric records to everyone.
    let permit_all = consent(
        "all",
        "active",
        json!({"type": "permit", "actor": [{"role": {"text": "clinic"}, "reference": {"reference": "Organization/other-clinic"}}]}),
    );
    let deny_psy = consent(
        "no-psy",
        "active",
        json!({"type": "deny", "securityLabel": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PSY"}]}),
    );
    let p = Policy::compile(&[permit_all, deny_psy]).unwrap();
    assert!(decide(&p, &request(&other, "TREAT", "Condition", &none)).permitted());
    assert_eq!(
        decide(&p, &request(&other, "TREAT", "Condition", &psy)),
        Decision::Deny(Basis::Consent("no-psy".into()))
    );
    // The explicit deny reaches the authoring organization too.
    assert!(!decide(&p, &request(&home, "TREAT", "Condition", &psy)).permitted());
    assert!(decide(&p, &request(&home, "TREAT", "Condition", &none)).permitted());
}

#[test]
fn official_consent_example_compiles() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/data/fhir/r4-examples/consent-example.json"
    );
    let v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    validate_resource(&v).unwrap();
    Policy::compile(&[v]).unwrap();
    assert!(Policy::compile(&[json!({"resourceType": "Patient"})]).is_err());
    let bad =
        json!({"resourceType": "Consent", "status": "active", "provision": {"type": "maybe"}});
    assert!(Policy::compile(&[bad]).is_err());
}
