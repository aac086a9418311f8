//! Patients' consents as ledger state: only the patient (or a delegate she recorded) grants
//! and revokes her own; a revocation denies from its height on; every node that applies the
//! same blocks answers the same.

use carechain_crypto::{Hash, PublicKey, SecretKey};
use carechain_state::*;
use carechain_types::*;
use proptest::prelude::*;

use crate::{Chain, applied, key, register, tx};

fn rule(grantee: &SecretKey) -> ConsentRule {
    ConsentRule {
        grantee: grantee.public(),
        purposes: vec![ConsentPurpose::Treatment],
        classes: vec!["vital-signs".into()],
        not_before_ms: 1_000,
        not_after_ms: Some(10_000),
    }
}

fn grant_for(patient: &SecretKey, id: u8, rule: ConsentRule) -> Payload {
    Payload::GrantConsent {
        patient: patient.public(),
        id: Hash([id; 32]),
        rule,
    }
}

fn revoke_for(patient: &SecretKey, id: u8) -> Payload {
    Payload::RevokeConsent {
        patient: patient.public(),
        id: Hash([id; 32]),
    }
}

fn delegate(to: &SecretKey, allowed: bool) -> Payload {
    Payload::DelegateConsents {
        delegate: to.public(),
        allowed,
    }
}

/// An operator, a hospital with a practitioner, and two self-registered patients.
fn network() -> (Chain, [SecretKey; 5]) {
    let (op, org, doc, alice, bob) = (key(1), key(2), key(3), key(4), key(5));
    let mut c = Chain::new(&[(&op, Role::Operator)]);
    let out = c.block(&[
        tx(&op, 0, register(&org, Role::Organization, None)),
        tx(&org, 0, register(&doc, Role::Practitioner, Some(&org))),
        tx(&alice, 0, register(&alice, Role::Patient, None)),
        tx(&bob, 0, register(&bob, Role::Patient, None)),
    ]);
    assert!(out.iter().all(applied), "{out:?}");
    (c, [op, org, doc, alice, bob])
}

fn allows(
    c: &Chain,
    height: u64,
    patient: &SecretKey,
    who: &[PublicKey],
    class: &str,
    at: u64,
) -> bool {
    let q = ConsentQuery {
        patient: &patient.public(),
        who,
        purpose: ConsentPurpose::Treatment,
        class: Some(class),
        at_ms: at,
    };
    consent_allows(&c.state, height, &q).unwrap()
}

#[test]
fn a_patients_grant_allows_exactly_what_it_says_until_she_revokes_it() {
    let (mut c, [_, org, doc, alice, bob]) = network();
    // Alice lets the hospital (and so its staff) see her vital signs, from 1 s to 10 s.
    let out = c.block(&[tx(&alice, 1, grant_for(&alice, 7, rule(&org)))]);
    assert!(applied(&out[0]), "{out:?}");
    let granted = c.height;
    let staff = [doc.public(), org.public()];
    assert!(allows(&c, granted, &alice, &staff, "vital-signs", 5_000));
    assert!(
        !allows(&c, granted, &alice, &staff, "laboratory", 5_000),
        "another class"
    );
    assert!(
        !allows(&c, granted, &alice, &staff, "vital-signs", 10_000),
        "after the period"
    );
    assert!(
        !allows(&c, granted, &alice, &staff, "vital-signs", 999),
        "before the period"
    );
    assert!(
        !allows(&c, granted, &alice, &[doc.public()], "vital-signs", 5_000),
        "not for him alone"
    );
    assert!(
        !allows(&c, granted, &bob, &staff, "vital-signs", 5_000),
        "not Bob's consent"
    );
    assert!(
        !allows(&c, granted - 1, &alice, &staff, "vital-signs", 5_000),
        "before its block"
    );
    let research = ConsentQuery {
        patient: &alice.public(),
        who: &staff,
        purpose: ConsentPurpose::Research,
        class: Some("vital-signs"),
        at_ms: 5_000,
    };
    let research = consent_allows(&c.state, granted, &research).unwrap();
    assert!(!research, "another purpose");
    // Bob cannot revoke it (he has no consent 7; hers is not his to revoke); Alice can,
    // once, and it denies from that height on.
    let out = c.block(&[
        tx(&bob, 1, revoke_for(&bob, 7)),
        tx(&bob, 1, revoke_for(&alice, 7)),
    ]);
    assert_eq!(out[0], Outcome::Rejected(RejectReason::UnknownConsent));
    assert_eq!(out[1], Outcome::Rejected(RejectReason::Unauthorized));
    let out = c.block(&[tx(&alice, 2, revoke_for(&alice, 7))]);
    assert!(applied(&out[0]));
    let revoked = c.height;
    assert!(!allows(&c, revoked, &alice, &staff, "vital-signs", 5_000));
    assert!(
        allows(&c, revoked - 1, &alice, &staff, "vital-signs", 5_000),
        "as of before"
    );
    let out = c.block(&[tx(&alice, 3, revoke_for(&alice, 7))]);
    assert_eq!(out[0], Outcome::Rejected(RejectReason::ConsentRevoked));
    let all = consents_of(&c.state, &alice.public()).unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(
        (all[0].granted_at, all[0].revoked_at),
        (granted, Some(revoked))
    );
}

#[test]
fn only_patients_grant_and_only_well_formed_consents_to_known_identities() {
    let (mut c, [_, org, doc, alice, _]) = network();
    let stranger = key(99);
    let no_purpose = ConsentRule {
        purposes: vec![],
        ..rule(&org)
    };
    let twice = ConsentRule {
        classes: vec!["a".into(), "a".into()],
        ..rule(&org)
    };
    let empty_period = ConsentRule {
        not_after_ms: Some(1_000),
        ..rule(&org)
    };
    let out = c.block(&[
        tx(&doc, 0, grant_for(&doc, 1, rule(&org))),
        tx(&alice, 1, grant_for(&alice, 2, rule(&stranger))),
        tx(&alice, 1, grant_for(&alice, 3, no_purpose)),
        tx(&alice, 1, grant_for(&alice, 4, twice)),
        tx(&alice, 1, grant_for(&alice, 5, empty_period)),
        tx(&alice, 1, grant_for(&alice, 6, rule(&org))),
        tx(&alice, 2, grant_for(&alice, 6, rule(&doc))),
    ]);
    assert_eq!(out[0], Outcome::Rejected(RejectReason::Unauthorized));
    assert_eq!(out[1], Outcome::Rejected(RejectReason::UnknownSubject));
    assert_eq!(out[2], Outcome::Rejected(RejectReason::Malformed));
    assert_eq!(out[3], Outcome::Rejected(RejectReason::Malformed));
    assert_eq!(out[4], Outcome::Rejected(RejectReason::Malformed));
    assert!(applied(&out[5]));
    assert_eq!(out[6], Outcome::Rejected(RejectReason::ConsentExists));
}

#[test]
fn a_patient_holds_a_bounded_number_of_consents() {
    let (mut c, [_, org, _, alice, _]) = network();
    let txs: Vec<SignedTx> = (0..=MAX_CONSENTS_PER_PATIENT as u64)
        .map(|i| {
            let mut id = [0u8; 32];
            id[..8].copy_from_slice(&i.to_be_bytes());
            tx(
                &alice,
                i + 1,
                Payload::GrantConsent {
                    patient: alice.public(),
                    id: Hash(id),
                    rule: rule(&org),
                },
            )
        })
        .collect();
    let out = c.block(&txs);
    assert!(out[..MAX_CONSENTS_PER_PATIENT].iter().all(applied));
    assert_eq!(
        out[MAX_CONSENTS_PER_PATIENT],
        Outcome::Rejected(RejectReason::TooManyConsents)
    );
}

#[test]
fn a_delegate_she_recorded_grants_and_revokes_for_her_until_she_withdraws_it() {
    let (mut c, [op, org, doc, alice, bob]) = network();
    let staff = [doc.public(), org.public()];
    // Before she delegates, the hospital cannot sign for her; only a patient delegates, and
    // only to a known identity, once.
    let out = c.block(&[
        tx(&org, 1, grant_for(&alice, 1, rule(&org))),
        tx(&op, 1, delegate(&org, true)),
        tx(&alice, 1, delegate(&key(99), true)),
        tx(&alice, 1, delegate(&alice, true)),
        tx(&alice, 1, delegate(&org, true)),
        tx(&alice, 2, delegate(&org, true)),
    ]);
    assert_eq!(out[0], Outcome::Rejected(RejectReason::Unauthorized));
    assert_eq!(out[1], Outcome::Rejected(RejectReason::Unauthorized));
    assert_eq!(out[2], Outcome::Rejected(RejectReason::UnknownSubject));
    assert_eq!(out[3], Outcome::Rejected(RejectReason::Malformed));
    assert!(applied(&out[4]), "{out:?}");
    assert_eq!(out[5], Outcome::Rejected(RejectReason::Malformed));
    assert_eq!(
        consent_delegates(&c.state, &alice.public()).unwrap(),
        vec![org.public()]
    );
    // Now it grants for her (not for Bob, who delegated nothing); its staff cannot.
    let out = c.block(&[
        tx(&org, 1, grant_for(&alice, 1, rule(&org))),
        tx(&org, 2, grant_for(&bob, 1, rule(&org))),
        tx(&doc, 0, grant_for(&alice, 2, rule(&org))),
    ]);
    assert!(applied(&out[0]), "{out:?}");
    assert_eq!(out[1], Outcome::Rejected(RejectReason::Unauthorized));
    assert_eq!(out[2], Outcome::Rejected(RejectReason::Unauthorized));
    assert!(allows(&c, c.height, &alice, &staff, "vital-signs", 5_000));
    // She revokes what it granted; it revokes nothing twice.
    let out = c.block(&[
        tx(&alice, 2, revoke_for(&alice, 1)),
        tx(&org, 2, revoke_for(&alice, 1)),
    ]);
    assert!(applied(&out[0]));
    assert_eq!(out[1], Outcome::Rejected(RejectReason::ConsentRevoked));
    assert!(!allows(&c, c.height, &alice, &staff, "vital-signs", 5_000));
    // Withdrawn: it signs for her no more; withdrawing twice is refused.
    let out = c.block(&[
        tx(&alice, 3, delegate(&org, false)),
        tx(&org, 2, grant_for(&alice, 3, rule(&org))),
        tx(&alice, 4, delegate(&org, false)),
    ]);
    assert!(applied(&out[0]), "{out:?}");
    assert_eq!(out[1], Outcome::Rejected(RejectReason::Unauthorized));
    assert_eq!(out[2], Outcome::Rejected(RejectReason::UnknownSubject));
    assert!(
        consent_delegates(&c.state, &alice.public())
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_patient_names_a_bounded_number_of_delegates() {
    let (mut c, [op, _, _, alice, _]) = network();
    let delegates: Vec<SecretKey> = (0..=MAX_CONSENT_DELEGATES as u8)
        .map(|i| key(40 + i))
        .collect();
    let regs: Vec<SignedTx> = delegates
        .iter()
        .enumerate()
        .map(|(i, d)| tx(&op, i as u64 + 1, register(d, Role::Organization, None)))
        .collect();
    assert!(c.block(&regs).iter().all(applied));
    let txs: Vec<SignedTx> = delegates
        .iter()
        .enumerate()
        .map(|(i, d)| tx(&alice, i as u64 + 1, delegate(d, true)))
        .collect();
    let out = c.block(&txs);
    assert!(out[..MAX_CONSENT_DELEGATES].iter().all(applied));
    assert_eq!(
        out[MAX_CONSENT_DELEGATES],
        Outcome::Rejected(RejectReason::TooManyEntries)
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Random grants and revocations by two patients, in random blocks: every outcome and
    /// every answer at every height agree with a plain model, and a second node applying the
    /// same blocks reaches the same state root.
    #[test]
    fn consents_match_a_model_and_every_node_agrees(
        ops in proptest::collection::vec((any::<bool>(), 0usize..3, 0u8..4, 0usize..3), 1..30),
    ) {
        let (mut a, keys) = network();
        let (mut b, _) = network();
        let [_, org, doc, alice, bob] = keys;
        // Alice lets the hospital sign for her: signer 2 is the hospital acting for her.
        for c in [&mut a, &mut b] {
            prop_assert!(applied(&c.block(&[tx(&alice, 1, delegate(&org, true))])[0]));
        }
        let patients = [&alice, &bob];
        let signers = [&alice, &bob, &org];
        let mut nonce = [2u64, 1u64, 1u64];
        // (patient, id) → (granted at, revoked at)
        let mut model: std::collections::BTreeMap<(usize, u8), (u64, Option<u64>)> = Default::default();
        let mut block = Vec::new();
        let mut expected = Vec::new();
        let height = |c: &Chain| c.height + 1;
        for (is_grant, signer, id, cut) in ops {
            let p = signer % 2;
            let h = height(&a);
            let (payload, want) = if is_grant {
                let want = match model.entry((p, id)) {
                    std::collections::btree_map::Entry::Occupied(_) => {
                        Outcome::Rejected(RejectReason::ConsentExists)
                    }
                    std::collections::btree_map::Entry::Vacant(v) => {
                        v.insert((h, None));
                        Outcome::Applied { log_index: 0 }
                    }
                };
                (grant_for(patients[p], id, rule(&org)), want)
            } else {
                let want = match model.get_mut(&(p, id)) {
                    None => Outcome::Rejected(RejectReason::UnknownConsent),
                    Some((_, Some(_))) => Outcome::Rejected(RejectReason::ConsentRevoked),
                    Some((_, r)) => {
                        *r = Some(h);
                        Outcome::Applied { log_index: 0 }
                    }
                };
                (revoke_for(patients[p], id), want)
            };
            block.push(tx(signers[signer], nonce[signer], payload));
            if applied(&want) {
                nonce[signer] += 1;
            }
            expected.push(want);
            if cut == 0 {
                let out_a = a.block(&block);
                let out_b = b.block(&block);
                prop_assert_eq!(&out_a, &out_b);
                for (o, w) in out_a.iter().zip(&expected) {
                    prop_assert_eq!(applied(o), applied(w), "{:?} vs {:?}", o, w);
                    if !applied(w) { prop_assert_eq!(o, w); }
                }
                prop_assert_eq!(a.commitment.root(), b.commitment.root());
                block.clear();
                expected.clear();
            }
        }
        let staff = [doc.public(), org.public()];
        for (p, patient) in patients.iter().enumerate() {
            for h in 0..=a.height {
                let want = model.iter().any(|((q, _), (g, r))| {
                    *q == p && *g <= h && r.is_none_or(|r| r > h)
                });
                prop_assert_eq!(allows(&a, h, patient, &staff, "vital-signs", 5_000), want);
            }
        }
    }
}
