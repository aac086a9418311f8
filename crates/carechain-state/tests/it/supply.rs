//! The supply chain as state, block by block: only a GTIN's owner commissions and recalls;
//! custody moves by ship and receive; packed products travel with their container; dispensed
//! products are gone; events at another organization's location are refused; a non-atomic
//! batch skips what fails and says so, an atomic one rejects whole; suspicions are recorded.

use carechain_crypto::{Hash, SecretKey, sha256};
use carechain_state::*;
use carechain_types::*;
use proptest::prelude::*;

use crate::{Chain, applied, key, register, tx};

const GTIN: u64 = 9_506_000_134_352; // 09506000134352, prefix 9506000
const MAKER_GLN: u64 = 9_506_000_000_008;
const PHARMACY_GLN: u64 = 4_012_345_000_009;

fn item(n: u32) -> ItemId {
    sha256(&n.to_be_bytes())
}

fn ev(n: u8, location: Option<u64>, step: SupplyStep) -> SupplyEvent {
    SupplyEvent {
        hash: Hash([n; 32]),
        time_ms: 1_700_000_000_000 + i64::from(n),
        location,
        step,
    }
}

fn supply(org: &SecretKey, events: Vec<SupplyEvent>, atomic: bool) -> Payload {
    Payload::Supply {
        organization: org.public(),
        events,
        atomic,
    }
}

fn commission(n: u8, items: Vec<ItemId>) -> SupplyEvent {
    ev(
        n,
        Some(MAKER_GLN),
        SupplyStep::Commission {
            gtin: GTIN,
            lot: "L1".into(),
            expiry: Some(20271231),
            items,
        },
    )
}

/// An operator; a manufacturer owning prefix 9506000, a pharmacy owning 4012345, a
/// wholesaler with none; a node the pharmacy registered.
struct Net {
    c: Chain,
    op: SecretKey,
    maker: SecretKey,
    pharmacy: SecretKey,
    wholesaler: SecretKey,
    node: SecretKey,
}

fn net() -> Net {
    let (op, maker, pharmacy, wholesaler, node) = (key(1), key(2), key(3), key(4), key(5));
    let mut c = Chain::new(&[(&op, Role::Operator), (&node, Role::Validator)]);
    let assign = |p: &str, org: &SecretKey| Payload::AssignCompanyPrefix {
        prefix: p.into(),
        organization: Some(org.public()),
    };
    let out = c.block(&[
        tx(&op, 0, register(&maker, Role::Organization, None)),
        tx(&op, 1, register(&pharmacy, Role::Organization, None)),
        tx(&op, 2, register(&wholesaler, Role::Organization, None)),
        tx(&op, 3, assign("9506000", &maker)),
        tx(&op, 4, assign("4012345", &pharmacy)),
        tx(
            &pharmacy,
            0,
            Payload::RegisterNode {
                node: node.public(),
                endpoint: "http://127.0.0.1:8081".into(),
            },
        ),
    ]);
    assert!(out.iter().all(applied), "{out:?}");
    Net {
        c,
        op,
        maker,
        pharmacy,
        wholesaler,
        node,
    }
}

fn rejected(o: &Outcome) -> RejectReason {
    match o {
        Outcome::Rejected(r) => r.clone(),
        other => panic!("applied: {other:?}"),
    }
}

fn custody(c: &Chain, id: &ItemId) -> (PublicKey, ItemStatus) {
    let (_, root) = supply_root(&c.state, id).unwrap().unwrap();
    (root.custodian, root.status)
}

use carechain_crypto::PublicKey;

#[test]
fn only_operators_assign_prefixes_and_only_owners_commission() {
    let mut n = net();
    let out = n.c.block(&[
        tx(
            &n.maker,
            0,
            Payload::AssignCompanyPrefix {
                prefix: "4012345".into(),
                organization: Some(n.maker.public()),
            },
        ),
        tx(
            &n.op,
            5,
            Payload::AssignCompanyPrefix {
                prefix: "12a45".into(),
                organization: None,
            },
        ),
        // The wholesaler does not own 9506000.
        tx(
            &n.wholesaler,
            0,
            supply(
                &n.wholesaler,
                vec![SupplyEvent {
                    location: None,
                    ..commission(1, vec![item(1)])
                }],
                true,
            ),
        ),
        // The maker at the pharmacy's location.
        tx(
            &n.maker,
            0,
            supply(
                &n.maker,
                vec![ev(2, Some(PHARMACY_GLN), SupplyStep::Observe)],
                true,
            ),
        ),
        tx(
            &n.maker,
            0,
            supply(&n.maker, vec![commission(3, vec![item(1), item(2)])], true),
        ),
        // Twice is once too many.
        tx(
            &n.maker,
            1,
            supply(&n.maker, vec![commission(4, vec![item(2)])], true),
        ),
    ]);
    assert_eq!(rejected(&out[0]), RejectReason::Unauthorized);
    assert_eq!(rejected(&out[1]), RejectReason::Malformed);
    let supply_reason = |o: &Outcome| match rejected(o) {
        RejectReason::SupplyEvent { reason, .. } => reason,
        r => panic!("{r:?}"),
    };
    assert_eq!(supply_reason(&out[2]), SupplyReject::NotGtinOwner);
    assert_eq!(supply_reason(&out[3]), SupplyReject::NotLocationOwner);
    assert!(applied(&out[4]));
    assert_eq!(supply_reason(&out[5]), SupplyReject::AlreadyCommissioned);
    let it = supply_item(&n.c.state, &item(1)).unwrap().unwrap();
    assert_eq!(
        (it.gtin, it.lot.as_str(), it.expiry),
        (Some(GTIN), "L1", Some(20271231))
    );
    assert_eq!(it.commissioner, n.maker.public());
    assert_eq!(
        gtin_prefix_owner(&n.c.state, GTIN).unwrap(),
        Some(n.maker.public())
    );
}

#[test]
fn custody_moves_with_the_outermost_container_until_dispensed() {
    let mut n = net();
    let case = item(100);
    let (m, p) = (n.maker.public(), n.pharmacy.public());
    let out = n.c.block(&[tx(
        &n.maker,
        0,
        supply(
            &n.maker,
            vec![
                commission(1, vec![item(1), item(2)]),
                ev(
                    2,
                    None,
                    SupplyStep::Pack {
                        parent: case,
                        children: vec![item(1), item(2)],
                    },
                ),
                ev(
                    3,
                    None,
                    SupplyStep::Ship {
                        to: Some(n.pharmacy.public()),
                        items: vec![case],
                    },
                ),
            ],
            true,
        ),
    )]);
    assert!(applied(&out[0]), "{out:?}");
    assert_eq!(
        custody(&n.c, &item(1)),
        (m, ItemStatus::InTransit { to: Some(p) })
    );
    let out = n.c.block(&[
        // A packed product cannot go alone.
        tx(
            &n.maker,
            1,
            supply(
                &n.maker,
                vec![ev(
                    4,
                    None,
                    SupplyStep::Ship {
                        to: None,
                        items: vec![item(1)],
                    },
                )],
                true,
            ),
        ),
        // The wholesaler is not who it was shipped to.
        tx(
            &n.wholesaler,
            0,
            supply(
                &n.wholesaler,
                vec![ev(5, None, SupplyStep::Receive { items: vec![case] })],
                true,
            ),
        ),
        // The pharmacy's node captures for it.
        tx(
            &n.node,
            0,
            supply(
                &n.pharmacy,
                vec![
                    ev(
                        6,
                        Some(PHARMACY_GLN),
                        SupplyStep::Receive { items: vec![case] },
                    ),
                    ev(
                        7,
                        None,
                        SupplyStep::Unpack {
                            parent: case,
                            children: vec![item(1)],
                        },
                    ),
                    ev(
                        8,
                        None,
                        SupplyStep::Dispense {
                            items: vec![item(1)],
                        },
                    ),
                ],
                true,
            ),
        ),
    ]);
    assert!(matches!(
        rejected(&out[0]),
        RejectReason::SupplyEvent {
            reason: SupplyReject::Packed,
            ..
        }
    ));
    assert!(matches!(
        rejected(&out[1]),
        RejectReason::SupplyEvent {
            reason: SupplyReject::NotInTransit,
            ..
        }
    ));
    assert!(applied(&out[2]), "{out:?}");
    let h = n.c.height;
    assert_eq!(
        custody(&n.c, &item(1)),
        (p, ItemStatus::Dispensed { height: h })
    );
    assert_eq!(custody(&n.c, &item(2)), (p, ItemStatus::Active));
    // The case's shipping and receiving are the case's; the product's own history is its own.
    let steps: Vec<String> = supply_item(&n.c.state, &item(1))
        .unwrap()
        .unwrap()
        .history
        .iter()
        .map(|c| c.step.clone())
        .collect();
    assert_eq!(steps, ["commission", "pack", "unpack", "dispense"]);
    // Dispensed is gone: dispensing it again fails.
    let out = n.c.block(&[tx(
        &n.pharmacy,
        1,
        supply(
            &n.pharmacy,
            vec![ev(
                9,
                None,
                SupplyStep::Dispense {
                    items: vec![item(1)],
                },
            )],
            true,
        ),
    )]);
    assert!(matches!(
        rejected(&out[0]),
        RejectReason::SupplyEvent {
            reason: SupplyReject::Inactive,
            ..
        }
    ));
}

#[test]
fn a_batch_skips_what_fails_unless_atomic_and_recalls_and_suspicions_are_recorded() {
    let mut n = net();
    let out = n.c.block(&[tx(
        &n.maker,
        0,
        supply(
            &n.maker,
            vec![
                commission(1, vec![item(1)]),
                // Not commissioned: skipped.
                ev(
                    2,
                    None,
                    SupplyStep::Ship {
                        to: None,
                        items: vec![item(9)],
                    },
                ),
                ev(
                    3,
                    None,
                    SupplyStep::Recall {
                        gtin: GTIN,
                        lot: "L1".into(),
                    },
                ),
            ],
            false,
        ),
    )]);
    assert!(applied(&out[0]), "{out:?}");
    let receipts = n.c.receipts(&[tx(
        &n.pharmacy,
        1,
        supply(
            &n.pharmacy,
            vec![ev(
                4,
                None,
                SupplyStep::Suspect {
                    item: item(1),
                    reason: SuspectReason::Diverted,
                },
            )],
            false,
        ),
    )]);
    assert!(applied(&receipts[0].outcome));
    assert_eq!(receipts[0].events[0].kind, "supply.suspect");
    let r = supply_recall(&n.c.state, GTIN, "L1").unwrap().unwrap();
    assert_eq!(r.by, n.maker.public());
    let it = supply_item(&n.c.state, &item(1)).unwrap().unwrap();
    assert_eq!(it.suspicions[0].reason, SuspectReason::Diverted);
    assert_eq!(it.suspicions[0].reporter, n.pharmacy.public());
    // Only the owner recalls; the skipped event is in the receipt's data.
    let receipts = n.c.receipts(&[
        tx(
            &n.pharmacy,
            2,
            supply(
                &n.pharmacy,
                vec![ev(
                    5,
                    None,
                    SupplyStep::Recall {
                        gtin: GTIN,
                        lot: "L2".into(),
                    },
                )],
                true,
            ),
        ),
        tx(
            &n.maker,
            1,
            supply(
                &n.maker,
                vec![commission(6, vec![item(2)]), commission(7, vec![item(2)])],
                false,
            ),
        ),
    ]);
    assert!(matches!(
        rejected(&receipts[0].outcome),
        RejectReason::SupplyEvent {
            reason: SupplyReject::NotGtinOwner,
            ..
        }
    ));
    let skipped: Skipped = borsh::from_slice(&receipts[1].data).unwrap();
    assert_eq!(skipped, vec![(1, SupplyReject::AlreadyCommissioned)]);
}

#[test]
fn nobody_else_captures_for_an_organization() {
    let mut n = net();
    // The node serves the pharmacy, not the maker; the wholesaler is not the maker.
    let out = n.c.block(&[
        tx(
            &n.node,
            0,
            supply(&n.maker, vec![commission(1, vec![item(1)])], true),
        ),
        tx(
            &n.wholesaler,
            0,
            supply(&n.maker, vec![commission(1, vec![item(1)])], false),
        ),
    ]);
    for o in &out {
        assert!(matches!(
            rejected(o),
            RejectReason::SupplyEvent {
                reason: SupplyReject::NotCapturer,
                ..
            }
        ));
    }
    assert!(supply_item(&n.c.state, &item(1)).unwrap().is_none());
}

/// Random steps over a few products by the three organizations.
fn step() -> impl Strategy<Value = (u8, SupplyStep)> {
    let ids = proptest::collection::vec(0u32..6, 1..3).prop_map(|v| {
        let mut v: Vec<ItemId> = v.into_iter().map(item).collect();
        v.sort();
        v.dedup();
        v
    });
    (
        0u8..3,
        prop_oneof![
            ids.clone().prop_map(|items| SupplyStep::Commission {
                gtin: GTIN,
                lot: "L".into(),
                expiry: None,
                items
            }),
            (0u32..6, ids.clone()).prop_map(|(p, children)| SupplyStep::Pack {
                parent: item(100 + p),
                children
            }),
            (0u32..6, ids.clone()).prop_map(|(p, children)| SupplyStep::Unpack {
                parent: item(100 + p),
                children
            }),
            ids.clone()
                .prop_map(|items| SupplyStep::Ship { to: None, items }),
            ids.clone().prop_map(|items| SupplyStep::Receive { items }),
            ids.clone().prop_map(|items| SupplyStep::Dispense { items }),
            ids.prop_map(|items| SupplyStep::Decommission { items }),
        ],
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Whatever the steps: two chains agree on every outcome and root; an atomic batch that is
    /// rejected changes nothing; a product is only ever in an organization's custody, and once
    /// dispensed or decommissioned it stays so.
    #[test]
    fn custody_is_deterministic_and_rejections_change_nothing(steps in proptest::collection::vec(step(), 1..24)) {
        let mut a = net();
        let mut b = net();
        let orgs = [a.maker.clone(), a.pharmacy.clone(), a.wholesaler.clone()];
        let mut nonces = [0u64; 3];
        let mut gone = std::collections::BTreeSet::new();
        for (i, (who, st)) in steps.into_iter().enumerate() {
            let org = &orgs[usize::from(who)];
            let t = tx(org, nonces[usize::from(who)], supply(org, vec![ev(i as u8, None, st)], true));
            let before = a.c.commitment.root();
            let oa = a.c.block(std::slice::from_ref(&t));
            let ob = b.c.block(std::slice::from_ref(&t));
            prop_assert_eq!(&oa, &ob);
            prop_assert_eq!(a.c.commitment.root(), b.c.commitment.root());
            if applied(&oa[0]) {
                nonces[usize::from(who)] += 1;
            } else {
                prop_assert_eq!(a.c.commitment.root(), before);
            }
            for p in 0..6 {
                if let Some((_, r)) = supply_root(&a.c.state, &item(p)).unwrap() {
                    prop_assert!(orgs.iter().any(|o| o.public() == r.custodian));
                    let ended = matches!(r.status, ItemStatus::Dispensed { .. } | ItemStatus::Decommissioned { .. });
                    if gone.contains(&p) {
                        prop_assert!(ended);
                    }
                    if ended {
                        gone.insert(p);
                    }
                }
            }
        }
    }
}
