//! The network directory as state: organizations register the node that serves them; a node
//! puts itself in a patient's record locator; the patient withdraws any node.

use carechain_crypto::SecretKey;
use carechain_state::*;
use carechain_types::*;
use proptest::prelude::*;

use crate::{Chain, applied, key, register, tx};

/// An operator, two organizations, a validator node for each, a patient.
fn network() -> (Chain, [SecretKey; 6]) {
    let (op, hospital, clinic, n1, n2, alice) = (key(1), key(2), key(3), key(4), key(5), key(6));
    let mut c = Chain::new(&[
        (&op, Role::Operator),
        (&n1, Role::Validator),
        (&n2, Role::Validator),
    ]);
    let out = c.block(&[
        tx(&op, 0, register(&hospital, Role::Organization, None)),
        tx(&op, 1, register(&clinic, Role::Organization, None)),
        tx(&alice, 0, register(&alice, Role::Patient, None)),
    ]);
    assert!(out.iter().all(applied), "{out:?}");
    (c, [op, hospital, clinic, n1, n2, alice])
}

fn reg_node(node: &SecretKey, endpoint: &str) -> Payload {
    Payload::RegisterNode {
        node: node.public(),
        endpoint: endpoint.into(),
    }
}

fn locate(patient: &SecretKey, node: &SecretKey, held: bool) -> Payload {
    Payload::LocateRecords {
        patient: patient.public(),
        held,
        node: node.public(),
    }
}

fn rejected(o: &Outcome) -> RejectReason {
    match o {
        Outcome::Rejected(r) => r.clone(),
        other => panic!("applied: {other:?}"),
    }
}

#[test]
fn organizations_register_their_nodes_and_move_them() {
    let (mut c, [op, hospital, clinic, n1, n2, alice]) = network();
    let out = c.block(&[
        tx(&hospital, 0, reg_node(&n1, "http://127.0.0.1:8081")),
        tx(&clinic, 0, reg_node(&n1, "http://127.0.0.1:8081")),
        // Only organizations register nodes.
        tx(&op, 2, reg_node(&n2, "http://127.0.0.1:8082")),
        tx(&alice, 1, reg_node(&n2, "http://127.0.0.1:8082")),
    ]);
    assert!(applied(&out[0]) && applied(&out[1]), "{out:?}");
    assert_eq!(rejected(&out[2]), RejectReason::Unauthorized);
    assert_eq!(rejected(&out[3]), RejectReason::Unauthorized);
    let e = node_entry(&c.state, &n1.public()).unwrap().unwrap();
    let mut both = vec![hospital.public(), clinic.public()];
    both.sort();
    assert_eq!(e.organizations, both);
    assert_eq!(e.endpoint, "http://127.0.0.1:8081");
    // The clinic moves to its own node: n1 serves the hospital only.
    let out = c.block(&[tx(&clinic, 1, reg_node(&n2, "https://clinic.example:8443"))]);
    assert!(applied(&out[0]), "{out:?}");
    let e1 = node_entry(&c.state, &n1.public()).unwrap().unwrap();
    assert_eq!(e1.organizations, vec![hospital.public()]);
    let e2 = node_of_organization(&c.state, &clinic.public())
        .unwrap()
        .unwrap();
    assert_eq!(e2.node, n2.public());
    assert_eq!(e2.endpoint, "https://clinic.example:8443");
}

#[test]
fn endpoints_must_be_plain_base_urls() {
    let (mut c, [_, hospital, _, n1, _, _]) = network();
    let long = format!("http://{}.example", "a".repeat(MAX_ENDPOINT));
    for (i, bad) in [
        "",
        "ftp://host",
        "http://",
        "http://host/path",
        "http://host?q=1",
        "http://ho st",
        long.as_str(),
    ]
    .iter()
    .enumerate()
    {
        let out = c.block(&[tx(&hospital, i as u64, reg_node(&n1, bad))]);
        // A rejected transaction does not use its nonce: reuse it.
        assert_eq!(rejected(&out[0]), RejectReason::Malformed, "{bad:?}");
        let out = c.block(&[tx(
            &hospital,
            i as u64,
            Payload::Anchor {
                kind: "k".into(),
                commitment: carechain_crypto::Hash([0; 32]),
            },
        )]);
        assert!(applied(&out[0]));
    }
}

#[test]
fn a_node_locates_itself_and_the_patient_withdraws_it() {
    let (mut c, [_, hospital, clinic, n1, n2, alice]) = network();
    let out = c.block(&[
        tx(&hospital, 0, reg_node(&n1, "http://127.0.0.1:8081")),
        // n2 is not registered by any organization yet.
        tx(&n2, 0, locate(&alice, &n2, true)),
    ]);
    assert!(applied(&out[0]), "{out:?}");
    assert_eq!(rejected(&out[1]), RejectReason::UnknownNode);
    let out = c.block(&[
        tx(&n1, 0, locate(&alice, &n1, true)),
        tx(&clinic, 0, reg_node(&n2, "http://127.0.0.1:8082")),
    ]);
    assert!(out.iter().all(applied), "{out:?}");
    let h1 = c.height;
    let out = c.block(&[
        tx(&n2, 0, locate(&alice, &n2, true)),
        // A node speaks for itself only, and only of registered patients.
        tx(&n2, 1, locate(&alice, &n1, false)),
        tx(&n2, 1, locate(&hospital, &n2, true)),
        // The patient cannot put a node in her locator, only take one out.
        tx(&alice, 1, locate(&alice, &n1, true)),
    ]);
    assert!(applied(&out[0]), "{out:?}");
    assert_eq!(rejected(&out[1]), RejectReason::Unauthorized);
    assert_eq!(rejected(&out[2]), RejectReason::UnknownSubject);
    assert_eq!(rejected(&out[3]), RejectReason::Unauthorized);
    let l = locator(&c.state, &alice.public()).unwrap();
    let mut want = vec![(n1.public(), h1), (n2.public(), c.height)];
    want.sort();
    assert_eq!(
        l.iter().map(|x| (x.node, x.since)).collect::<Vec<_>>(),
        want
    );
    let out = c.block(&[tx(&alice, 1, locate(&alice, &n2, false))]);
    assert!(applied(&out[0]), "{out:?}");
    let l = locator(&c.state, &alice.public()).unwrap();
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].node, n1.public());
    // Withdrawing a node that is not there is refused (nothing to withdraw).
    let out = c.block(&[tx(&alice, 2, locate(&alice, &n2, false))]);
    assert_eq!(rejected(&out[0]), RejectReason::UnknownNode);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    /// Whatever order of locator changes, the locator is exactly the set of nodes whose last
    /// word was "held" (and not withdrawn by the patient), sorted, and two chains applying the
    /// same blocks agree on it and on the state root.
    #[test]
    fn the_locator_is_the_last_word_of_each_node(ops in prop::collection::vec((0usize..3, any::<bool>(), any::<bool>()), 1..24)) {
        let (mut c, [_, hospital, _, n1, n2, alice]) = network();
        let n3 = key(9);
        let (mut twin, _) = network();
        let setup = [
            tx(&hospital, 0, reg_node(&n1, "http://a:1")),
        ];
        c.block(&setup);
        twin.block(&setup);
        // n3 becomes an identity (a validator key in real chains; a patient-free role here).
        let op = key(1);
        let setup = [
            tx(&op, 2, register(&n3, Role::Operator, None)),
            tx(&hospital, 1, reg_node(&n2, "http://b:2")),
        ];
        c.block(&setup);
        twin.block(&setup);
        let setup = [tx(&hospital, 2, reg_node(&n3, "http://c:3"))];
        c.block(&setup);
        twin.block(&setup);
        // The hospital moved to n3 last: n1 and n2 serve nobody and may not locate.
        let nodes = [&n1, &n2, &n3];
        let mut nonces = [0u64; 3];
        let mut alice_nonce = 1u64;
        let mut model = std::collections::BTreeSet::new();
        for (i, held, by_patient) in ops {
            let node = nodes[i];
            let t = if by_patient {
                tx(&alice, alice_nonce, locate(&alice, node, false))
            } else {
                tx(node, nonces[i], locate(&alice, node, held))
            };
            let out = c.block(std::slice::from_ref(&t));
            twin.block(std::slice::from_ref(&t));
            let ok = applied(&out[0]);
            let expect_ok = if by_patient {
                model.contains(&node.public())
            } else {
                i == 2 && (held || model.contains(&node.public()))
            };
            prop_assert_eq!(ok, expect_ok);
            if ok {
                if by_patient { alice_nonce += 1 } else { nonces[i] += 1 }
                if held && !by_patient { model.insert(node.public()); } else { model.remove(&node.public()); }
            }
        }
        let got: Vec<_> = locator(&c.state, &alice.public()).unwrap().iter().map(|l| l.node).collect();
        prop_assert_eq!(got, model.into_iter().collect::<Vec<_>>());
        prop_assert_eq!(c.commitment.root(), twin.commitment.root());
    }
}
