//! The access layer against a small reference model of the rules: random callers × actions ×
//! records × consents × break-glass grants, the decision must equal the model's.

use std::sync::Arc;

use carechain_crypto::{Did, SecretKey};
use carechain_fhir::consent::Policy;
use carechain_service::{
    Purpose, Scope, Session,
    access::{Action, Caller, Facts, PolicyState, Record, decide},
};
use carechain_types::Role;
use proptest::prelude::*;
use serde_json::{Value, json};

const P1: &str = "Patient/p1";
const P2: &str = "Patient/p2";

fn did(i: u8) -> Did {
    SecretKey::from_seed(&[i; 32]).public().did()
}

/// The two organizations.
fn org(i: u8) -> String {
    did(100 + i).to_string()
}

/// Callers: 0 = P1 herself, 1 = P2, 2/3 = practitioners of org 0/1, 4 = a device of org 0,
/// 5 = an operator.
fn session(who: u8) -> (Session, Option<String>) {
    let (role, organization, patient) = match who {
        0 => (Role::Patient, None, Some(P1.to_string())),
        1 => (Role::Patient, None, Some(P2.to_string())),
        2 => (Role::Practitioner, Some(did(100)), None),
        3 => (Role::Practitioner, Some(did(101)), None),
        4 => (Role::Device, Some(did(100)), None),
        _ => (Role::Operator, None, None),
    };
    let scope = if role == Role::Patient {
        "patient/*.cruds"
    } else {
        "user/*.cruds"
    };
    let k = SecretKey::from_seed(&[who + 1; 32]);
    (
        Session {
            did: k.public().did(),
            role,
            organization,
            scopes: vec![Scope::parse(scope).unwrap()],
            expires_ms: u64::MAX,
            key: k.public(),
            origin: Default::default(),
        },
        patient,
    )
}

/// A consent of P1: permit or deny, to org `o`, for `purpose` (permits only).
#[derive(Clone, Debug)]
struct Grant {
    deny: bool,
    org: u8,
    purpose: &'static str,
}

fn consent(i: usize, g: &Grant) -> Value {
    let mut provision = json!({"type": if g.deny { "deny" } else { "permit" },
        "actor": [{"role": {"text": "x"}, "reference": {"identifier": {"system": "urn:ietf:rfc:3986", "value": org(g.org)}}}]});
    if !g.deny {
        provision["purpose"] = json!([{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": g.purpose}]);
    }
    json!({"resourceType": "Consent", "id": format!("c{i}"), "status": "active",
        "patient": {"reference": P1}, "provision": provision})
}

struct TestFacts {
    policy: Arc<Policy>,
    custodian: Option<String>,
    glass: bool,
}

impl Facts for TestFacts {
    fn policy(&self, _: &str) -> PolicyState {
        PolicyState::Active(self.policy.clone())
    }
    fn custodian(&self, _: &str) -> Option<String> {
        self.custodian.clone()
    }
    fn break_glass(&self, _: &Did, _: &str) -> bool {
        self.glass
    }
    fn now_s(&self) -> i64 {
        1_800_000_000
    }
}

/// The reference model for an Observation in P1's compartment.
fn model(
    who: u8,
    action: Action,
    grants: &[Grant],
    author: Option<u8>,
    custodian: Option<u8>,
    purpose: &str,
    glass: bool,
) -> bool {
    match who {
        0 => matches!(
            action,
            Action::Read | Action::Search | Action::Delete | Action::Erase | Action::Envelope
        ),
        1 => false,
        4 => action == Action::Create,
        5 => matches!(action, Action::Delete | Action::Erase),
        _ => {
            let o = who - 2;
            if matches!(action, Action::Erase | Action::Envelope) {
                return false;
            }
            let denied = grants.iter().any(|g| g.deny && g.org == o);
            let permitted = grants
                .iter()
                .any(|g| !g.deny && g.org == o && g.purpose == purpose);
            let who_wrote = if action == Action::Create {
                custodian
            } else {
                author
            };
            let as_author = who_wrote == Some(o) && (purpose == "TREAT" || purpose == "ETREAT");
            let consent = !denied && (permitted || as_author);
            match action {
                Action::Read | Action::Search => consent || (purpose == "ETREAT" && glass),
                Action::Create | Action::Update => consent,
                Action::Delete => who_wrote == Some(o) && consent,
                _ => false,
            }
        }
    }
}

fn grant() -> impl Strategy<Value = Grant> {
    (
        any::<bool>(),
        0u8..2,
        prop::sample::select(vec!["TREAT", "HPAYMT"]),
    )
        .prop_map(|(deny, org, purpose)| Grant { deny, org, purpose })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    #[test]
    fn the_access_layer_agrees_with_the_reference_model(
        who in 0u8..6,
        action in prop::sample::select(vec![Action::Read, Action::Search, Action::Create, Action::Update, Action::Delete, Action::Erase, Action::Envelope]),
        grants in prop::collection::vec(grant(), 0..4),
        author in prop::option::of(0u8..2),
        custodian in prop::option::of(0u8..2),
        purpose in prop::sample::select(vec!["TREAT", "ETREAT", "HPAYMT"]),
        glass in any::<bool>(),
    ) {
        let consents: Vec<Value> = grants.iter().enumerate().map(|(i, g)| consent(i, g)).collect();
        let facts = TestFacts {
            policy: Arc::new(Policy::compile(&consents).unwrap()),
            custodian: custodian.map(org),
            glass,
        };
        let (s, patient) = session(who);
        let p = Purpose { code: purpose.into(), break_glass_reason: None };
        let caller = Caller { session: &s, patient, purpose: &p };
        let patients = vec![P1.to_string()];
        let author_did = author.map(org);
        let record = Record {
            resource_type: "Observation",
            patients: &patients,
            author: author_did.as_deref(),
            categories: &[],
            labels: &[],
            delegated: false,
            names_caller: false,
        };
        let (stored, new) = match action {
            Action::Create => (None, Some(&record)),
            Action::Update => (Some(&record), Some(&record)),
            _ => (Some(&record), None),
        };
        let got = decide(&facts, &caller, action, stored, new);
        let want = model(who, action, &grants, author, custodian, purpose, glass);
        prop_assert_eq!(got.permitted(), want, "{:?}", got);
        // A record that also names P2 (no consents, not the caller's) is never more open.
        let both = vec![P1.to_string(), P2.to_string()];
        let shared = Record { patients: &both, ..record };
        let (stored, new) = match action {
            Action::Create => (None, Some(&shared)),
            Action::Update => (Some(&shared), Some(&shared)),
            _ => (Some(&shared), None),
        };
        let wider = decide(&facts, &caller, action, stored, new);
        prop_assert!(!wider.permitted() || got.permitted());
    }
}
