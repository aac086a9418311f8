//! The shipped claims contract run by the state machine: every adjudication rule (coverage,
//! network, fee schedule, units per period, coinsurance, pre-authorization, duplicates,
//! review pends and the insurer's decisions, accepted submitters), each decision paying the
//! provider in the transaction that makes it.

use carechain_contracts::shipped::CLAIMS;
use carechain_crypto::{Hash, SecretKey};
use carechain_types::*;
use serde_json::{Value, json};

use crate::shipped::{Net, aborted, acct};
use crate::{applied, key, register, tx};

const DAY: u64 = 86_400_000;

struct Insurer {
    n: Net,
    insurer: SecretKey,
    org: SecretKey,
    doc: SecretKey,
    contract: Hash,
}

fn plan() -> Value {
    json!({
        "name": "Silver",
        "period_ms": 365 * DAY,
        "pend_above": 5_000,
        "benefits": [
            {"code": "99213", "price": 100, "max_units": 3, "pays_percent": 80},
            {"code": "93000", "price": 50, "max_units": 5, "pays_percent": 100, "preauth": true},
            {"code": "70450", "price": 900, "max_units": 2, "pays_percent": 100, "review": true},
        ]
    })
}

fn insurer() -> Insurer {
    let (op, insurer, org, doc, other) = (key(1), key(2), key(3), key(4), key(5));
    let ids = [
        (&op, Role::Operator),
        (&insurer, Role::Organization),
        (&org, Role::Organization),
        (&other, Role::Organization),
    ];
    let mut n = Net::new(&ids, &[(&insurer, 100_000)]);
    let out =
        n.c.block(&[tx(&org, 0, register(&doc, Role::Practitioner, Some(&org)))]);
    assert!(applied(&out[0]), "{out:?}");
    n.nonces.insert(org.public().0, 1);
    let code = n.deploy(&op, CLAIMS.code);
    let msg = json!({"plan": plan(), "providers": [org.public().did().to_string()]});
    let contract = n.instantiate(&insurer, code, msg, 20_000);
    let now = n.now();
    n.ok(&insurer, contract, json!({"enroll": {"member": "m-alice", "from_ms": now - 30 * DAY, "until_ms": now + 30 * DAY}}), 0);
    Insurer {
        n,
        insurer,
        org,
        doc,
        contract,
    }
}

fn claim(id: &str, member: &str, provider: &SecretKey, service_ms: u64, items: Value) -> Value {
    json!({"submit": {
        "claim_id": id, "member": member, "provider": provider.public().did().to_string(),
        "service_ms": service_ms, "items": items, "inputs": "ab".repeat(32),
    }})
}

fn item(seq: u32, code: &str, quantity: u32, unit_price: u64) -> Value {
    json!({"sequence": seq, "code": code, "quantity": quantity, "unit_price": unit_price})
}

#[test]
fn a_claim_is_adjudicated_line_by_line_and_paid_in_the_same_transaction() {
    let mut i = insurer();
    let (doc, c) = (i.doc.clone(), i.contract);
    let day = i.n.now() - 2 * DAY;
    let msg = claim(
        "c1",
        "m-alice",
        &doc,
        day,
        json!([item(1, "99213", 1, 150), item(2, "12345", 1, 70)]),
    );
    let d = i.n.decided(&doc, c, msg.clone(), 0);
    assert_eq!(d["outcome"], "complete", "{d}");
    assert_eq!(d["items"][0]["eligible"], 100);
    assert_eq!(d["items"][0]["benefit"], 80);
    assert_eq!(d["items"][0]["reasons"], json!(["45", "2"]));
    assert_eq!(d["items"][1]["benefit"], 0);
    assert_eq!(d["items"][1]["reasons"], json!(["96"]));
    assert_eq!(
        (d["submitted"].clone(), d["paid"].clone()),
        (json!(220), json!(80))
    );
    assert_eq!(
        i.n.balance(&acct(&doc)),
        80,
        "paid to the provider by the deciding transaction"
    );
    assert_eq!(i.n.balance(&Account::Contract(c)), 20_000 - 80);

    // The same claim again, and the same service on the same day under a new id.
    let again = i.n.decided(&doc, c, msg, 0);
    assert_eq!(
        (again["outcome"].clone(), again["errors"].clone()),
        (json!("error"), json!(["18"]))
    );
    let d = i.n.decided(
        &doc,
        c,
        claim(
            "c2",
            "m-alice",
            &doc,
            day,
            json!([item(1, "99213", 1, 100)]),
        ),
        0,
    );
    assert_eq!(d["items"][0]["reasons"], json!(["18"]));
    // Units per period: 1 used, 2 left of 3.
    let d = i.n.decided(
        &doc,
        c,
        claim(
            "c3",
            "m-alice",
            &doc,
            day + DAY,
            json!([item(1, "99213", 4, 100)]),
        ),
        0,
    );
    assert_eq!(
        (
            d["items"][0]["units"].clone(),
            d["items"][0]["reasons"].clone()
        ),
        (json!(2), json!(["119", "2"]))
    );
    assert_eq!(d["paid"], 160);
    assert_eq!(
        i.n.query(c, json!({"member": {"member": "m-alice"}}))["usage"],
        json!([["99213", 3]])
    );
    assert_eq!(
        i.n.query(c, json!({"claim": {"claim_id": "c3"}}))["paid"],
        160
    );
}

#[test]
fn coverage_eligibility_and_preauthorization_decide_before_any_payment() {
    let mut i = insurer();
    let (doc, org, ins, c) = (i.doc.clone(), i.org.clone(), i.insurer.clone(), i.contract);
    let now = i.n.now();
    let one = || json!([item(1, "99213", 1, 100)]);
    let d =
        i.n.decided(&doc, c, claim("u", "m-nobody", &doc, now - DAY, one()), 0);
    assert_eq!(d["errors"], json!(["31"]));
    let d = i.n.decided(
        &doc,
        c,
        claim("late", "m-alice", &doc, now - 40 * DAY, one()),
        0,
    );
    assert_eq!(d["errors"], json!(["26"]));
    i.n.ok(&ins, c, json!({"enroll": {"member": "m-bob", "from_ms": now - 90 * DAY, "until_ms": now - 10 * DAY}}), 0);
    let d = i.n.decided(
        &doc,
        c,
        claim("lapsed", "m-bob", &doc, now - 5 * DAY, one()),
        0,
    );
    assert_eq!(
        (d["outcome"].clone(), d["errors"].clone(), d["paid"].clone()),
        (json!("error"), json!(["27"]), json!(0))
    );
    // A provider outside the plan's network, and a submitter who is not the provider.
    let outsider = key(5);
    let d = i.n.decided(
        &outsider,
        c,
        claim("o", "m-alice", &outsider, now - DAY, one()),
        0,
    );
    assert_eq!(d["errors"], json!(["B7"]));
    let r = i.n.exec(
        &outsider,
        c,
        claim("f", "m-alice", &doc, now - DAY, one()),
        0,
    );
    assert!(aborted(&r, "only the provider"), "{r:?}");
    // A submitter the insurer accepts (a clearinghouse, a provider's node) may, once added.
    let r = i.n.exec(
        &outsider,
        c,
        claim("f2", "m-alice", &doc, now - 2 * DAY, one()),
        0,
    );
    assert!(aborted(&r, "only the provider"), "{r:?}");
    let add = json!({"add_submitter": {"submitter": outsider.public().did().to_string()}});
    i.n.ok(&ins, c, add, 0);
    let d = i.n.decided(
        &outsider,
        c,
        claim("f3", "m-alice", &doc, now - 2 * DAY, one()),
        0,
    );
    assert_eq!(d["outcome"], "complete");
    // Its organization may submit for the practitioner.
    let d = i.n.decided(
        &org,
        c,
        claim("by-org", "m-alice", &doc, now - DAY, one()),
        0,
    );
    assert_eq!(d["outcome"], "complete");
    assert_eq!(i.n.balance(&acct(&doc)), 160);
    // Pre-authorization: absent, then granted for 2 units and used.
    let ecg = |id: &str, preauth: Option<&str>| {
        let mut m = claim(
            id,
            "m-alice",
            &doc,
            now - DAY,
            json!([item(1, "93000", 2, 50)]),
        );
        m["submit"]["preauth"] = json!(preauth);
        m
    };
    let d = i.n.decided(&doc, c, ecg("e1", None), 0);
    assert_eq!(d["items"][0]["reasons"], json!(["197"]));
    let r = i.n.exec(&doc, c, json!({"preauthorize": {"reference": "PA-1", "member": "m-alice", "code": "93000", "units": 2}}), 0);
    assert!(aborted(&r, "only the insurer"), "{r:?}");
    i.n.ok(&ins, c, json!({"preauthorize": {"reference": "PA-1", "member": "m-alice", "code": "93000", "units": 2}}), 0);
    let d = i.n.decided(&doc, c, ecg("e2", Some("PA-1")), 0);
    assert_eq!(
        (d["outcome"].clone(), d["paid"].clone()),
        (json!("complete"), json!(100))
    );
}

#[test]
fn pended_lines_are_queued_until_the_insurer_decides() {
    let mut i = insurer();
    let (doc, ins, c) = (i.doc.clone(), i.insurer.clone(), i.contract);
    let now = i.n.now();
    let d = i.n.decided(
        &doc,
        c,
        claim(
            "ct",
            "m-alice",
            &doc,
            now - DAY,
            json!([item(1, "70450", 1, 900)]),
        ),
        0,
    );
    assert_eq!(
        (d["outcome"].clone(), d["pended"].clone(), d["paid"].clone()),
        (json!("queued"), json!(900), json!(0))
    );
    let d = i.n.decided(
        &doc,
        c,
        claim(
            "mix",
            "m-alice",
            &doc,
            now - 3 * DAY,
            json!([item(1, "99213", 1, 100), item(2, "70450", 1, 900)]),
        ),
        0,
    );
    assert_eq!(d["outcome"], "partial");
    assert_eq!(d["paid"], 80);
    let r = i.n.exec(
        &doc,
        c,
        json!({"decide": {"claim_id": "ct", "approve": true}}),
        0,
    );
    assert!(aborted(&r, "only the insurer"), "{r:?}");
    let d = i.n.decided(
        &ins,
        c,
        json!({"decide": {"claim_id": "ct", "approve": true}}),
        0,
    );
    assert_eq!(
        (d["outcome"].clone(), d["paid"].clone()),
        (json!("complete"), json!(900))
    );
    let d = i.n.decided(
        &ins,
        c,
        json!({"decide": {"claim_id": "mix", "approve": false}}),
        0,
    );
    assert_eq!(
        (
            d["outcome"].clone(),
            d["paid"].clone(),
            d["items"][1]["reasons"].clone()
        ),
        (json!("complete"), json!(80), json!(["96"]))
    );
    assert_eq!(i.n.balance(&acct(&doc)), 980);
    // The insurer publishes a new plan (a bad one is refused): a claim over its review
    // threshold is pended whole.
    let r = i.n.exec(
        &ins,
        c,
        json!({"set_plan": {"plan": {"name": "x", "period_ms": 0, "benefits": []}}}),
        0,
    );
    assert!(aborted(&r, "period_ms"), "{r:?}");
    let mut p = plan();
    p["pend_above"] = json!(50);
    i.n.ok(&ins, c, json!({"set_plan": {"plan": p}}), 0);
    let big = i.n.decided(
        &doc,
        c,
        claim(
            "big",
            "m-alice",
            &doc,
            now - 4 * DAY,
            json!([item(1, "99213", 1, 100)]),
        ),
        0,
    );
    assert_eq!(
        (big["outcome"].clone(), big["pended"].clone()),
        (json!("queued"), json!(80))
    );
    assert_eq!(
        i.n.query(c, json!({"config": {}}))["plan"]["pend_above"],
        50
    );
}

/// The fuel a call is charged is a function of the code, the cost table and the call's input
/// bytes only: it must not move when the runtime, the interpreter, the metering's layout or
/// the features serde_json is built with change (the same figure holds for `cargo nextest -p
/// carechain-state` and for the whole workspace, where another crate turns on serde_json's
/// `preserve_order`). It moves when the shipped claims contract is rebuilt from changed
/// sources: then update it with the reason.
#[test]
fn the_fuel_of_a_decision_is_pinned() {
    let mut i = insurer();
    let (doc, c) = (i.doc.clone(), i.contract);
    let day = i.n.now() - 2 * DAY;
    // The message's exact bytes (a `json!` value's key order depends on serde_json's
    // features, and the contract pays fuel to read every byte).
    let msg = format!(
        r#"{{"submit":{{"claim_id":"c1","member":"m-alice","provider":"{}","service_ms":{day},"items":[{{"sequence":1,"code":"99213","quantity":1,"unit_price":150}},{{"sequence":2,"code":"12345","quantity":1,"unit_price":70}}],"inputs":"{}"}}}}"#,
        doc.public().did(),
        "ab".repeat(32)
    );
    let r = i.n.run(
        &doc,
        Payload::Execute {
            contract: c,
            msg: msg.into_bytes(),
            funds: 0,
        },
    );
    assert!(applied(&r.outcome), "{r:?}");
    assert_eq!(r.fuel_used, 695_891);
}
