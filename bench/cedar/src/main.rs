//! Measures the per-decision cost of `cedar-policy` against carechain's compiled FHIR consent
//! policy on the same rules: a patient's consent permitting one clinic's practitioner to read
//! observations for treatment until an end date, a deny for restricted records, default deny.
//! Prints JSON: decisions per second for each engine, and that both decide alike.

use std::{str::FromStr, time::Instant};

use carechain_fhir::consent::{Action, Actor, Policy, Request};
use cedar_policy::{Authorizer, Context, Entities, EntityUid, PolicySet, Request as CedarRequest};
use serde_json::json;

const N: usize = 200_000;

fn main() {
    let clinic = "did:key:z6MkclinicPractitioner";
    let other = "did:key:z6MkotherPractitioner";
    // The FHIR Consent the patient wrote (what carechain compiles).
    let consent = json!({
        "resourceType": "Consent", "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": "Patient/p1"},
        "provision": {"type": "deny", "provision": [
            {"type": "permit",
             "actor": [{"role": {"text": "clinic"}, "reference": {"identifier": {"system": "urn:ietf:rfc:3986", "value": clinic}}}],
             "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "TREAT"}],
             "class": [{"system": "http://hl7.org/fhir/resource-types", "code": "Observation"}],
             "period": {"end": "2027-12-31"},
             "provision": [{"type": "deny", "securityLabel": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}]}]}
        ]}
    });
    // The same rules in Cedar.
    let cedar = r#"
        permit(principal == Practitioner::"did:key:z6MkclinicPractitioner", action == Action::"access", resource)
        when { context.patient == "Patient/p1" && context.purpose == "TREAT"
               && context.resource_type == "Observation" && context.now <= 1830297599 };
        forbid(principal, action, resource)
        when { context.labels.contains("R") };
    "#;
    let policies = PolicySet::from_str(cedar).expect("cedar policies");
    let entities = Entities::empty();
    let authorizer = Authorizer::new();

    let cases: Vec<(&str, &str, &str, Vec<String>)> = vec![
        (clinic, "TREAT", "Observation", vec![]),
        (clinic, "TREAT", "Observation", vec!["R".into()]),
        (clinic, "HPAYMT", "Observation", vec![]),
        (other, "TREAT", "Observation", vec![]),
        (clinic, "TREAT", "Condition", vec![]),
    ];
    let now = 1_790_000_000i64;
    let actors: Vec<Actor> = cases
        .iter()
        .map(|(who, ..)| Actor {
            reference: who.to_string(),
            organization: None,
            practitioner: true,
        })
        .collect();
    let consents = vec![consent];

    let ours = |i: usize, compile_each: bool, policy: &Policy| -> bool {
        let (_, purpose, rt, labels) = &cases[i % cases.len()];
        let req = Request {
            actor: &actors[i % cases.len()],
            action: Action::Access,
            purpose,
            resource_type: rt,
            categories: &[],
            security_labels: labels,
            patient: "Patient/p1",
            author_organization: None,
            now,
        };
        if compile_each {
            Policy::compile(&consents).expect("compile").decide(&req).permitted()
        } else {
            policy.decide(&req).permitted()
        }
    };
    let cedar_request = |i: usize| -> CedarRequest {
        let (who, purpose, rt, labels) = &cases[i % cases.len()];
        let context = Context::from_json_value(
            json!({"patient": "Patient/p1", "purpose": purpose, "resource_type": rt, "labels": labels, "now": now}),
            None,
        )
        .expect("context");
        CedarRequest::new(
            EntityUid::from_str(&format!("Practitioner::\"{who}\"")).expect("principal"),
            EntityUid::from_str("Action::\"access\"").expect("action"),
            EntityUid::from_str("Observation::\"o1\"").expect("resource"),
            context,
            None,
        )
        .expect("request")
    };
    let cedar_decide = |i: usize| -> bool {
        authorizer.is_authorized(&cedar_request(i), &policies, &entities).decision()
            == cedar_policy::Decision::Allow
    };

    // Same answers on every case.
    let policy = Policy::compile(&consents).expect("compile");
    let agree: Vec<(bool, bool)> = (0..cases.len()).map(|i| (ours(i, false, &policy), cedar_decide(i))).collect();
    assert!(agree.iter().all(|(a, b)| a == b), "engines disagree: {agree:?}");

    let time = |f: &dyn Fn(usize) -> bool| {
        let t = Instant::now();
        let mut allowed = 0usize;
        for i in 0..N {
            allowed += usize::from(f(i));
        }
        (N as f64 / t.elapsed().as_secs_f64(), allowed)
    };
    let (ours_compiled, a1) = time(&|i| ours(i, false, &policy));
    let (ours_per_request, a2) = time(&|i| ours(i, true, &policy));
    let (cedar_rate, a3) = time(&cedar_decide);
    // Cedar without building the request (context parsing) each time.
    let prepared: Vec<CedarRequest> = (0..cases.len()).map(cedar_request).collect();
    let (cedar_prepared, a4) = time(&|i| {
        authorizer.is_authorized(&prepared[i % cases.len()], &policies, &entities).decision()
            == cedar_policy::Decision::Allow
    });
    assert!(a1 == a2 && a2 == a3 && a3 == a4);
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "decisions": N,
            "cases_agree": true,
            "carechain_policy_decide_per_s": ours_compiled.round(),
            "carechain_compile_and_decide_per_s": ours_per_request.round(),
            "cedar_request_and_decide_per_s": cedar_rate.round(),
            "cedar_decide_prepared_request_per_s": cedar_prepared.round(),
        }))
        .expect("json")
    );
}
