//! The care token as state: only a governance-approved issuer mints, from the effective
//! height on; transfers, burns and allowances keep every balance and the supply in step;
//! allowances are absolute and expire; optional fees go to the proposer; and over random
//! transaction sequences the sum of balances is the supply and a rejected transaction
//! changes nothing.

use carechain_crypto::SecretKey;
use carechain_state::*;
use carechain_types::*;
use proptest::prelude::*;

use crate::{Chain, applied, key, register, tx};

fn rejected(o: &Outcome, reason: RejectReason) -> bool {
    *o == Outcome::Rejected(reason)
}

fn id(k: &SecretKey) -> Account {
    Account::Identity(k.public())
}

/// A validator `v`, an operator, an organization `org` that governance made an issuer from
/// height 64, and two patients; the chain is at height 64.
fn economy() -> (Chain, [SecretKey; 5]) {
    economy_with(|_| {})
}

fn economy_with(tune: impl FnOnce(&mut Genesis)) -> (Chain, [SecretKey; 5]) {
    let (v, op, org, alice, bob) = (key(10), key(11), key(12), key(13), key(14));
    let mut c = Chain::with(&[(&v, Role::Validator), (&op, Role::Operator)], tune);
    let out = c.block(&[
        tx(&op, 0, register(&org, Role::Organization, None)),
        tx(&alice, 0, register(&alice, Role::Patient, None)),
        tx(&bob, 0, register(&bob, Role::Patient, None)),
    ]);
    assert!(out.iter().all(applied), "{out:?}");
    let change = GovernanceChange::AddIssuer { key: org.public() };
    let out = c.block(&[tx(
        &v,
        0,
        Payload::ProposeChange {
            change: change.clone(),
            effective_height: EPOCH_LENGTH,
        },
    )]);
    assert!(applied(&out[0]), "{out:?}");
    let term = issuer(&c.state, &org.public()).unwrap().unwrap();
    assert_eq!(
        term,
        IssuerTerm {
            from_height: EPOCH_LENGTH,
            until_height: None
        }
    );
    // Not yet: the change holds from the epoch start.
    let early = c.block(&[tx(
        &org,
        0,
        Payload::Mint {
            to: id(&alice),
            amount: 5,
        },
    )]);
    assert!(rejected(&early[0], RejectReason::NotIssuer), "{early:?}");
    while c.height + 1 < EPOCH_LENGTH {
        c.block(&[]);
    }
    (c, [v, op, org, alice, bob])
}

#[test]
fn only_an_approved_issuer_mints_and_governance_can_stop_it() {
    let (mut c, [v, op, org, alice, _]) = economy();
    let out = c.block(&[
        tx(
            &org,
            0,
            Payload::Mint {
                to: id(&alice),
                amount: 1_000,
            },
        ),
        tx(
            &op,
            1,
            Payload::Mint {
                to: id(&alice),
                amount: 1,
            },
        ),
        tx(
            &alice,
            1,
            Payload::Mint {
                to: id(&alice),
                amount: 1,
            },
        ),
    ]);
    assert!(applied(&out[0]), "{out:?}");
    assert!(rejected(&out[1], RejectReason::NotIssuer));
    assert!(rejected(&out[2], RejectReason::NotIssuer));
    assert_eq!(balance(&c.state, &id(&alice)).unwrap(), 1_000);
    assert_eq!(total_supply(&c.state).unwrap(), 1_000);
    // A non-validator cannot propose; a second add of the same issuer does not fit.
    let out = c.block(&[
        tx(
            &org,
            1,
            Payload::ProposeChange {
                change: GovernanceChange::AddIssuer {
                    key: alice.public(),
                },
                effective_height: 2 * EPOCH_LENGTH,
            },
        ),
        tx(
            &v,
            1,
            Payload::ProposeChange {
                change: GovernanceChange::AddIssuer { key: org.public() },
                effective_height: 2 * EPOCH_LENGTH,
            },
        ),
        tx(
            &v,
            1,
            Payload::ProposeChange {
                change: GovernanceChange::RemoveIssuer { key: org.public() },
                effective_height: 2 * EPOCH_LENGTH,
            },
        ),
    ]);
    assert!(rejected(&out[0], RejectReason::NotValidator), "{out:?}");
    assert!(
        rejected(&out[1], RejectReason::InvalidIssuerChange),
        "{out:?}"
    );
    assert!(applied(&out[2]), "{out:?}");
    while c.height + 1 < 2 * EPOCH_LENGTH {
        c.block(&[]);
    }
    let out = c.block(&[tx(
        &org,
        1,
        Payload::Mint {
            to: id(&alice),
            amount: 1,
        },
    )]);
    assert!(rejected(&out[0], RejectReason::NotIssuer), "{out:?}");
}

#[test]
fn transfers_burns_and_their_refusals() {
    let (mut c, [_, _, org, alice, bob]) = economy();
    let ghost = key(99);
    let out = c.block(&[
        tx(
            &org,
            0,
            Payload::Mint {
                to: id(&alice),
                amount: 100,
            },
        ),
        tx(
            &alice,
            1,
            Payload::Transfer {
                to: id(&bob),
                amount: 30,
            },
        ),
        tx(
            &alice,
            2,
            Payload::Transfer {
                to: id(&bob),
                amount: 71,
            },
        ),
        tx(
            &alice,
            2,
            Payload::Transfer {
                to: id(&ghost),
                amount: 1,
            },
        ),
        tx(
            &alice,
            2,
            Payload::Transfer {
                to: Account::Contract(carechain_crypto::Hash([7; 32])),
                amount: 1,
            },
        ),
        tx(&bob, 1, Payload::Burn { amount: 10 }),
        tx(&bob, 2, Payload::Burn { amount: 21 }),
        tx(
            &alice,
            2,
            Payload::Transfer {
                to: id(&alice),
                amount: 70,
            },
        ),
    ]);
    assert!(applied(&out[0]) && applied(&out[1]), "{out:?}");
    assert!(rejected(&out[2], RejectReason::InsufficientFunds));
    assert!(rejected(&out[3], RejectReason::UnknownAccount));
    assert!(rejected(&out[4], RejectReason::UnknownAccount));
    assert!(applied(&out[5]));
    assert!(rejected(&out[6], RejectReason::InsufficientFunds));
    assert!(applied(&out[7]), "a transfer to oneself moves nothing");
    assert_eq!(balance(&c.state, &id(&alice)).unwrap(), 70);
    assert_eq!(balance(&c.state, &id(&bob)).unwrap(), 20);
    assert_eq!(total_supply(&c.state).unwrap(), 90);
    // Overflow of the supply is refused, not wrapped.
    let out = c.block(&[tx(
        &org,
        1,
        Payload::Mint {
            to: id(&bob),
            amount: u64::MAX,
        },
    )]);
    assert!(rejected(&out[0], RejectReason::Overflow), "{out:?}");
}

#[test]
fn a_transfer_emits_an_event_in_its_receipt() {
    let (mut c, [_, _, org, alice, bob]) = economy();
    let r = c.receipts(&[
        tx(
            &org,
            0,
            Payload::Mint {
                to: id(&alice),
                amount: 5,
            },
        ),
        tx(
            &alice,
            1,
            Payload::Transfer {
                to: id(&bob),
                amount: 5,
            },
        ),
        tx(
            &alice,
            2,
            Payload::Transfer {
                to: id(&bob),
                amount: 5,
            },
        ),
    ]);
    assert_eq!(r[1].events.len(), 1);
    let e = &r[1].events[0];
    assert_eq!(e.kind, "transfer");
    assert!(e.attributes.contains(&("to".into(), id(&bob).to_string())));
    assert!(r[2].events.is_empty(), "a rejected transfer emits nothing");
}

#[test]
fn allowances_are_absolute_expire_and_are_spent() {
    let (mut c, [_, _, org, alice, bob]) = economy();
    let h = c.height + 1;
    let set = |amount, expires_at| Payload::SetAllowance {
        spender: id(&bob),
        amount,
        expires_at,
    };
    let from = |amount| Payload::TransferFrom {
        owner: alice.public(),
        to: id(&bob),
        amount,
    };
    let out = c.block(&[
        tx(
            &org,
            0,
            Payload::Mint {
                to: id(&alice),
                amount: 100,
            },
        ),
        tx(&alice, 1, set(50, h + 3)),
        // Setting again replaces, it does not add: 20, not 70.
        tx(&alice, 2, set(20, h + 3)),
        tx(&bob, 1, from(21)),
        tx(&bob, 1, from(15)),
        tx(&bob, 2, from(6)),
    ]);
    assert!(out[..3].iter().all(applied), "{out:?}");
    assert!(rejected(&out[3], RejectReason::AllowanceExceeded));
    assert!(applied(&out[4]));
    assert!(rejected(&out[5], RejectReason::AllowanceExceeded));
    assert_eq!(
        allowance(&c.state, &alice.public(), &id(&bob))
            .unwrap()
            .unwrap()
            .amount,
        5
    );
    c.block(&[]);
    c.block(&[]);
    // At the expiry height it no longer holds.
    let out = c.block(&[tx(&bob, 2, from(1))]);
    assert!(
        rejected(&out[0], RejectReason::AllowanceExceeded),
        "{out:?}"
    );
    assert_eq!(balance(&c.state, &id(&bob)).unwrap(), 15);
}

#[test]
fn fees_when_on_are_paid_to_the_proposer_and_a_signer_who_cannot_pay_is_refused() {
    let (v, op, payer, broke) = (key(20), key(21), key(22), key(23));
    let mut f = Chain::with(
        &[
            (&v, Role::Validator),
            (&op, Role::Operator),
            (&payer, Role::Organization),
        ],
        |g| {
            g.token.tx_fee = 2;
            g.token.balances = vec![(payer.public(), 10)];
        },
    );
    assert_eq!(
        total_supply(&f.state).unwrap(),
        10,
        "genesis balances are the supply"
    );
    let proposer = Account::Identity(Chain::proposer());
    let out = f.block(&[
        tx(
            &payer,
            0,
            Payload::Transfer {
                to: id(&op),
                amount: 3,
            },
        ),
        // Nobody gave this patient tokens: even registering herself cannot pay.
        tx(&broke, 0, register(&broke, Role::Patient, None)),
        // The payload succeeds but leaves too little for the fee: refused whole.
        tx(
            &payer,
            1,
            Payload::Transfer {
                to: id(&op),
                amount: 4,
            },
        ),
    ]);
    assert!(applied(&out[0]), "{out:?}");
    assert!(
        rejected(&out[1], RejectReason::InsufficientFunds),
        "{out:?}"
    );
    assert!(
        rejected(&out[2], RejectReason::InsufficientFunds),
        "{out:?}"
    );
    assert!(
        f.identity(&broke.public()).is_none(),
        "a refused fee leaves nothing behind"
    );
    assert_eq!(balance(&f.state, &id(&payer)).unwrap(), 5);
    assert_eq!(balance(&f.state, &id(&op)).unwrap(), 3);
    assert_eq!(balance(&f.state, &proposer).unwrap(), 2);
    assert_eq!(total_supply(&f.state).unwrap(), 10);
}

#[derive(Clone, Debug)]
enum Op {
    Mint(usize, u64),
    Transfer(usize, usize, u64),
    Burn(usize, u64),
    Allow(usize, usize, u64, u64),
    From(usize, usize, usize, u64),
}

fn op() -> impl Strategy<Value = Op> {
    let who = 0usize..3;
    let amount = prop_oneof![0u64..200, Just(u64::MAX)];
    prop_oneof![
        (who.clone(), amount.clone()).prop_map(|(a, n)| Op::Mint(a, n)),
        (who.clone(), who.clone(), amount.clone()).prop_map(|(a, b, n)| Op::Transfer(a, b, n)),
        (who.clone(), amount.clone()).prop_map(|(a, n)| Op::Burn(a, n)),
        (who.clone(), who.clone(), amount.clone(), 60u64..80)
            .prop_map(|(a, b, n, e)| Op::Allow(a, b, n, e)),
        (who.clone(), who.clone(), who, amount).prop_map(|(s, o, t, n)| Op::From(s, o, t, n)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Over random sequences, the sum of balances is the supply after every block, and a
    /// rejected transaction leaves the state root where it was.
    #[test]
    fn balances_always_sum_to_the_supply(blocks in prop::collection::vec(prop::collection::vec(op(), 1..6), 1..8)) {
        let (mut c, [_, _, org, alice, bob]) = economy();
        let people = [org.clone(), alice.clone(), bob.clone()];
        let mut nonces = [0u64, 1, 1];
        for ops in blocks {
            for o in ops {
                let (signer, payload) = match o {
                    Op::Mint(to, n) => (0, Payload::Mint { to: id(&people[to]), amount: n }),
                    Op::Transfer(a, b, n) => (a, Payload::Transfer { to: id(&people[b]), amount: n }),
                    Op::Burn(a, n) => (a, Payload::Burn { amount: n }),
                    Op::Allow(a, b, n, e) => (a, Payload::SetAllowance { spender: id(&people[b]), amount: n, expires_at: e }),
                    Op::From(s, o, t, n) => (s, Payload::TransferFrom { owner: people[o].public(), to: id(&people[t]), amount: n }),
                };
                let before = c.commitment.root();
                // One transaction per block, so a rejection's effect on the root is visible.
                let out = c.block(&[tx(&people[signer], nonces[signer], payload)]);
                if applied(&out[0]) {
                    nonces[signer] += 1;
                } else {
                    prop_assert_eq!(c.commitment.root(), before, "rejected {:?} changed state", out[0]);
                }
                let sum: u128 = people.iter().map(|p| u128::from(balance(&c.state, &id(p)).unwrap())).sum();
                prop_assert_eq!(sum, u128::from(total_supply(&c.state).unwrap()));
            }
        }
    }
}
