//! The shipped contracts run by the state machine, block by block: escrow (release by the
//! arbiter only, refund only after expiry) and the mutual pool (premiums, lapse, automatic and
//! voted payouts; its books balance at every height); claims are `claims_contract.rs`. A
//! contract's error is a rejected receipt that changes nothing but its signer's nonce.

use carechain_contracts::shipped::{ESCROW, POOL};
use carechain_crypto::{Hash, SecretKey};
use carechain_state::*;
use carechain_types::*;
use serde_json::{Value, json};

use crate::{Chain, applied, key, tx};

/// A chain with a bank of tokens for the first key, and a nonce counter per signer.
pub(crate) struct Net {
    pub(crate) c: Chain,
    pub(crate) nonces: std::collections::BTreeMap<PublicKeyBytes, u64>,
}

type PublicKeyBytes = [u8; 32];

pub(crate) fn acct(k: &SecretKey) -> Account {
    Account::Identity(k.public())
}

impl Net {
    pub(crate) fn new(ids: &[(&SecretKey, Role)], balances: &[(&SecretKey, u64)]) -> Net {
        let balances: Vec<_> = balances.iter().map(|(k, n)| (k.public(), *n)).collect();
        let c = Chain::with(ids, |g| g.token.balances = balances);
        Net {
            c,
            nonces: Default::default(),
        }
    }

    pub(crate) fn signed(&mut self, k: &SecretKey, payload: Payload) -> SignedTx {
        let n = self.nonces.entry(k.public().0).or_default();
        let t = tx(k, *n, payload);
        *n += 1;
        t
    }

    /// One transaction in its own block; its receipt. A rejected one does not use its nonce,
    /// unless a contract ran (and burned fuel).
    pub(crate) fn run(&mut self, k: &SecretKey, payload: Payload) -> Receipt {
        let t = self.signed(k, payload);
        let r = self.c.receipts(&[t]).remove(0);
        let ran = matches!(
            r.outcome,
            Outcome::Rejected(RejectReason::ContractFailed(_))
        );
        if !applied(&r.outcome) && !ran {
            *self.nonces.get_mut(&k.public().0).unwrap() -= 1;
        }
        r
    }

    pub(crate) fn deploy(&mut self, k: &SecretKey, code: &[u8]) -> Hash {
        let r = self.run(
            k,
            Payload::DeployCode {
                code: code.to_vec(),
            },
        );
        assert!(applied(&r.outcome), "{r:?}");
        code_hash(code)
    }

    pub(crate) fn instantiate(
        &mut self,
        k: &SecretKey,
        code: Hash,
        msg: Value,
        funds: u64,
    ) -> Hash {
        let r = self.run(
            k,
            Payload::Instantiate {
                code,
                msg: msg.to_string().into_bytes(),
                funds,
                label: "test".into(),
            },
        );
        assert!(applied(&r.outcome), "{r:?}");
        let data: Value = serde_json::from_slice(&r.data).unwrap();
        let addr = data["contract"].as_str().unwrap();
        match addr.parse::<Account>().unwrap() {
            Account::Contract(h) => h,
            other => panic!("{other:?}"),
        }
    }

    pub(crate) fn exec(
        &mut self,
        k: &SecretKey,
        contract: Hash,
        msg: Value,
        funds: u64,
    ) -> Receipt {
        self.run(
            k,
            Payload::Execute {
                contract,
                msg: msg.to_string().into_bytes(),
                funds,
            },
        )
    }

    /// Executes and expects success; the contract's reply.
    pub(crate) fn ok(&mut self, k: &SecretKey, contract: Hash, msg: Value, funds: u64) -> Value {
        let r = self.exec(k, contract, msg, funds);
        assert!(applied(&r.outcome), "{r:?}");
        serde_json::from_slice(&r.data).unwrap()
    }

    /// Executes a claims message that decides; the decision (its witness checked present).
    pub(crate) fn decided(
        &mut self,
        k: &SecretKey,
        contract: Hash,
        msg: Value,
        funds: u64,
    ) -> Value {
        let v = self.ok(k, contract, msg, funds);
        assert!(
            v["witness"]["storage"]
                .as_array()
                .is_some_and(|s| !s.is_empty()),
            "{v}"
        );
        v["decision"].clone()
    }

    pub(crate) fn query(&self, contract: Hash, msg: Value) -> Value {
        let rules = ChainRules::of(&self.c.genesis, &self.c.genesis_validators);
        let q = QueryContext {
            rules: &rules,
            height: self.c.height,
            timestamp_ms: self.now(),
        };
        let (out, _) = query(&self.c.state, &q, &contract, msg.to_string().as_bytes())
            .unwrap()
            .unwrap();
        serde_json::from_slice(&out).unwrap()
    }

    pub(crate) fn balance(&self, a: &Account) -> u64 {
        balance(&self.c.state, a).unwrap()
    }

    /// The time of the last block.
    pub(crate) fn now(&self) -> u64 {
        1_700_000_000_000 + self.c.height * 1_000
    }

    pub(crate) fn until(&mut self, height: u64) {
        while self.c.height < height {
            self.c.block(&[]);
        }
    }
}

pub(crate) fn aborted(r: &Receipt, text: &str) -> bool {
    matches!(&r.outcome, Outcome::Rejected(RejectReason::ContractFailed(ContractFailure::Aborted(m))) if m.contains(text))
}

#[test]
fn escrow_releases_only_to_the_arbiter_and_refunds_only_after_expiry() {
    let (op, dep, ben, arb, eve) = (key(1), key(2), key(3), key(4), key(5));
    let ids = [
        (&op, Role::Operator),
        (&dep, Role::Patient),
        (&ben, Role::Organization),
        (&arb, Role::Organization),
        (&eve, Role::Patient),
    ];
    let mut n = Net::new(&ids, &[(&dep, 1_000)]);
    let code = n.deploy(&op, ESCROW.code);
    let msg = |exp: u64| json!({"beneficiary": ben.public().did().to_string(), "arbiter": arb.public().did().to_string(), "expires_at": exp});
    let e1 = n.instantiate(&dep, code, msg(100), 600);
    assert_eq!(n.balance(&Account::Contract(e1)), 600);
    assert_eq!(n.balance(&acct(&dep)), 400);

    let before = n.c.state.clone();
    let r = n.exec(&eve, e1, json!({"release": {}}), 0);
    assert!(aborted(&r, "only the arbiter"), "{r:?}");
    assert!(
        r.fuel_used > 0,
        "a failed call is charged the fuel it burned"
    );
    // A rejected call changes nothing but its signer's nonce (it cannot be replayed).
    assert_eq!(
        n.c.state.changed_since(&before),
        vec![identity_key(&eve.public())]
    );
    assert_eq!(n.c.identity(&eve.public()).unwrap().next_nonce, 1);
    let r = n.exec(&dep, e1, json!({"refund": {}}), 0);
    assert!(aborted(&r, "not expired"), "{r:?}");

    let paid = n.ok(&arb, e1, json!({"release": {}}), 0);
    assert_eq!(
        paid,
        json!({"to": ben.public().did().to_string(), "amount": 600})
    );
    assert_eq!(n.balance(&acct(&ben)), 600);
    assert_eq!(n.balance(&Account::Contract(e1)), 0);

    let h = n.c.height;
    let e2 = n.instantiate(&dep, code, msg(h + 5), 400);
    let r = n.exec(&eve, e2, json!({"refund": {}}), 0);
    assert!(aborted(&r, "not expired"), "{r:?}");
    n.until(h + 5);
    let paid = n.ok(&eve, e2, json!({"refund": {}}), 0);
    assert_eq!(paid["to"], json!(dep.public().did().to_string()));
    assert_eq!(n.balance(&acct(&dep)), 400);
    assert_eq!(n.query(e2, json!({"config": {}}))["balance"], json!(0));
    assert_eq!(total_supply(&n.c.state).unwrap(), 1_000);
}

fn pool_rules(assessor: &SecretKey) -> Value {
    json!({
        "name": "Village mutual", "premium": 100, "period_ms": 100_000, "grace_ms": 50_000,
        "cover_limit": 1_000, "auto_pay_up_to": 50, "voting_period_ms": 10_000, "quorum": 2,
        "min_capital": 200, "assessors": [assessor.public().did().to_string()],
    })
}

#[test]
fn the_pool_pays_under_its_rules_or_by_vote_and_its_books_balance_at_every_height() {
    let (op, a, b, m, s) = (key(1), key(2), key(3), key(4), key(5));
    let ids = [
        (&op, Role::Operator),
        (&a, Role::Patient),
        (&b, Role::Patient),
        (&m, Role::Patient),
        (&s, Role::Organization),
    ];
    let mut n = Net::new(&ids, &[(&a, 1_000), (&b, 1_000), (&m, 1_000)]);
    let code = n.deploy(&op, POOL.code);
    let pool = n.instantiate(&op, code, pool_rules(&s), 0);
    let books = |n: &Net| {
        let v = n.query(pool, json!({"books": {}}));
        assert_eq!(v["balanced"], true, "{v}");
        assert_eq!(v["reserves"], json!(n.balance(&Account::Contract(pool))));
        v
    };
    let r = n.exec(&a, pool, json!({"join": {}}), 150);
    assert!(aborted(&r, "whole number"), "{r:?}");
    for (k, f) in [(&a, 300), (&b, 100), (&m, 100)] {
        n.ok(k, pool, json!({"join": {}}), f);
        books(&n);
    }
    assert_eq!(books(&n)["solvency_permille"], 2_500);
    // Small: paid at once. Large: open for vote.
    let c = n.ok(
        &b,
        pool,
        json!({"claim": {"claim_id": "k1", "amount": 40, "commitment": "00"}}),
        0,
    );
    assert_eq!(c["status"], "paid");
    assert_eq!(n.balance(&acct(&b)), 940);
    let c = n.ok(
        &a,
        pool,
        json!({"claim": {"claim_id": "k2", "amount": 300, "commitment": "11"}}),
        0,
    );
    assert_eq!(c["status"], "open");
    assert_eq!(books(&n)["open_claims"], 1);
    let r = n.exec(
        &a,
        pool,
        json!({"vote": {"claim_id": "k2", "approve": true}}),
        0,
    );
    assert!(aborted(&r, "own claim"), "{r:?}");
    let r = n.exec(
        &op,
        pool,
        json!({"vote": {"claim_id": "k2", "approve": true}}),
        0,
    );
    assert!(aborted(&r, "good standing"), "{r:?}");
    n.ok(
        &b,
        pool,
        json!({"vote": {"claim_id": "k2", "approve": true}}),
        0,
    );
    let r = n.exec(
        &b,
        pool,
        json!({"vote": {"claim_id": "k2", "approve": true}}),
        0,
    );
    assert!(aborted(&r, "already voted"), "{r:?}");
    n.ok(
        &s,
        pool,
        json!({"vote": {"claim_id": "k2", "approve": true}}),
        0,
    );
    let r = n.exec(&m, pool, json!({"close": {"claim_id": "k2"}}), 0);
    assert!(aborted(&r, "voting period"), "{r:?}");
    let h = n.c.height;
    n.until(h + 10);
    let c = n.ok(&m, pool, json!({"close": {"claim_id": "k2"}}), 0);
    assert_eq!(
        (c["status"].clone(), c["votes_for"].clone()),
        (json!("paid"), json!(2))
    );
    let v = books(&n);
    assert_eq!(
        (
            v["premiums"].clone(),
            v["payouts"].clone(),
            v["reserves"].clone()
        ),
        (json!(500), json!(340), json!(160))
    );
    assert_eq!(v["solvency_permille"], 800);
    // m paid one period (100 s, a block is 1 s here) with 50 s grace: after that a claim is
    // refused as lapsed, until the next premium.
    n.until(160);
    let c = n.ok(
        &m,
        pool,
        json!({"claim": {"claim_id": "k3", "amount": 10, "commitment": "22"}}),
        0,
    );
    assert_eq!(c["status"], "rejected");
    assert!(c["reason"].as_str().unwrap().contains("lapsed"));
    assert_eq!(
        n.query(
            pool,
            json!({"member": {"member": m.public().did().to_string()}})
        )["covered"],
        false
    );
    n.ok(&m, pool, json!({"pay_premium": {}}), 100);
    let c = n.ok(
        &m,
        pool,
        json!({"claim": {"claim_id": "k4", "amount": 10, "commitment": "33"}}),
        0,
    );
    assert_eq!(c["status"], "paid");
    books(&n);
    assert_eq!(total_supply(&n.c.state).unwrap(), 3_000);
}
