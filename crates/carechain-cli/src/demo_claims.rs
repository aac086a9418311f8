//! The single-node demo's payments: Acme Health Insurance publishes its plan as a claims
//! contract (funded from its genesis tokens, City Hospital in network, this node an accepted
//! submitter) and enrolls Alice; Dr. Reyes submits two of Alice's claims (an office visit
//! with a blood count, paid; physical therapy, which the plan does not cover, denied); and a
//! mutual pool is started that Alice joins.

use std::path::Path;

use anyhow::{Result, bail};
use carechain_claims::{Claims, member_pseudonym};
use carechain_contracts::shipped;
use carechain_crypto::{Hash, SecretKey, sha256};
use carechain_service::{Scope, Service, Session};
use carechain_types::{Account, Outcome, Payload, Receipt, TxBody, encode};
use serde_json::{Value, json};

use crate::demo::{DemoKeys, Who};
use crate::out_line;

/// Alice's member id at Acme (her Coverage's subscriberId).
pub const ALICE_SUBSCRIBER: &str = "ACME-100042";

/// Submits `payload` signed by `key` and waits for its receipt.
pub(crate) fn run(service: &Service, key: &SecretKey, payload: Payload) -> Result<Receipt> {
    let node = service.node();
    let snap = node.snapshot()?;
    let nonce =
        carechain_state::StateView::get(&snap, &carechain_state::identity_key(&key.public()))?
            .map(|b| borsh::from_slice::<carechain_state::Identity>(&b))
            .transpose()?
            .map_or(0, |i| i.next_nonce);
    let tx = TxBody {
        chain_id: node.store().genesis().chain_id.clone(),
        signer: key.public(),
        nonce,
        payload,
    }
    .sign(key);
    let hash = tx.hash();
    node.submit(encode(&tx))
        .map_err(|e| anyhow::anyhow!("demo transaction refused: {e}"))?;
    let r = service
        .wait_tx(&hash)
        .map_err(|e| anyhow::anyhow!("demo transaction: {}", e.message))?
        .receipt()
        .clone();
    if !matches!(r.outcome, Outcome::Applied { .. }) {
        bail!("demo transaction rejected: {:?}", r.outcome);
    }
    Ok(r)
}

fn instantiate(
    service: &Service,
    key: &SecretKey,
    code: &[u8],
    msg: Value,
    funds: u64,
    label: &str,
) -> Result<Hash> {
    let hash = sha256(code);
    let snap = service.node().snapshot()?;
    if carechain_state::code(&snap, &hash)?.is_none() {
        run(
            service,
            key,
            Payload::DeployCode {
                code: code.to_vec(),
            },
        )?;
    }
    let r = run(
        service,
        key,
        Payload::Instantiate {
            code: hash,
            msg: msg.to_string().into_bytes(),
            funds,
            label: label.into(),
        },
    )?;
    let data: Value = serde_json::from_slice(&r.data)?;
    match data["contract"]
        .as_str()
        .and_then(|a| a.parse::<Account>().ok())
    {
        Some(Account::Contract(h)) => Ok(h),
        _ => bail!("no contract address in {data}"),
    }
}

fn exec(
    service: &Service,
    key: &SecretKey,
    contract: Hash,
    msg: Value,
    funds: u64,
) -> Result<Value> {
    let r = run(
        service,
        key,
        Payload::Execute {
            contract,
            msg: msg.to_string().into_bytes(),
            funds,
        },
    )?;
    Ok(serde_json::from_slice(&r.data).unwrap_or(Value::Null))
}

/// The plan the demo insurer publishes (prices in minor units of CARE, 2 decimals).
pub fn demo_plan(hospital: &str, submitter: &str) -> Value {
    json!({
        "plan": {
            "name": "Acme Silver", "period_ms": 31_536_000_000u64, "pend_above": 200_000,
            "benefits": [
                {"code": "99213", "price": 12_000, "max_units": 12, "pays_percent": 80},
                {"code": "85025", "price": 3_000, "max_units": 6, "pays_percent": 100},
                {"code": "93000", "price": 5_000, "max_units": 2, "pays_percent": 100, "preauth": true},
            ]
        },
        "providers": [hospital],
        "submitters": [submitter],
    })
}

/// A claim bundle of City Hospital's for `pid`.
pub fn demo_bundle(
    pid: &str,
    contract: &Hash,
    id: &str,
    date: &str,
    items: &[(&str, &str, f64)],
) -> Value {
    let items: Vec<Value> = items
        .iter()
        .enumerate()
        .map(|(i, (code, display, price))| {
            json!({"sequence": i + 1, "servicedDate": date,
                "productOrService": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": code, "display": display}]},
                "quantity": {"value": 1}, "unitPrice": {"value": price}})
        })
        .collect();
    json!({
        "resourceType": "Bundle", "type": "collection",
        "entry": [
            {"fullUrl": "urn:uuid:claim", "resource": {
                "resourceType": "Claim", "status": "active", "use": "claim", "created": date,
                "identifier": [{"system": "https://cityhospital.example/claims", "value": id}],
                "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]},
                "patient": {"reference": format!("Patient/{pid}")},
                "provider": {"display": "City Hospital"},
                "insurer": {"reference": "urn:uuid:acme"},
                "priority": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/processpriority", "code": "normal"}]},
                "insurance": [{"sequence": 1, "focal": true, "coverage": {"reference": "urn:uuid:coverage"}}],
                "item": items,
            }},
            {"fullUrl": "urn:uuid:coverage", "resource": {"resourceType": "Coverage", "status": "active",
                "subscriberId": ALICE_SUBSCRIBER, "beneficiary": {"reference": format!("Patient/{pid}")},
                "payor": [{"reference": "urn:uuid:acme"}]}},
            {"fullUrl": "urn:uuid:acme", "resource": {"resourceType": "Organization", "name": "Acme Health Insurance",
                "identifier": [{"system": carechain_claims::CONTRACT_SYSTEM, "value": Account::Contract(*contract).to_string()}]}},
        ]
    })
}

/// The demo pool's rules: 10.00 CARE a month, claims to 50.00 paid at once.
pub fn demo_pool_rules(assessor: &str) -> Value {
    json!({
        "name": "Riverside mutual", "premium": 1_000, "period_ms": 2_592_000_000u64,
        "grace_ms": 604_800_000u64, "cover_limit": 100_000, "auto_pay_up_to": 5_000,
        "voting_period_ms": 60_000, "quorum": 2, "min_capital": 10_000,
        "assessors": [assessor],
    })
}

/// Loads the demo's contracts, claims and pool (after its ledger and records).
pub fn load(service: &Service, root: &Path, pid: &str) -> Result<()> {
    let keys = DemoKeys::read(&root.join("demo-keys"))?;
    let insurer = keys.key(Who::Insurer);
    let node_did = service.node().ledger().node_key().did().to_string();
    let claims = instantiate(
        service,
        insurer,
        shipped::CLAIMS.code,
        demo_plan(&keys.did(Who::Hospital), &node_did),
        50_000_000,
        "Acme Silver",
    )?;
    let member = member_pseudonym(&claims, ALICE_SUBSCRIBER);
    let now = carechain_node::now_ms();
    let year = 31_536_000_000u64;
    exec(
        service,
        insurer,
        claims,
        json!({"enroll": {"member": member, "from_ms": now - year, "until_ms": now + year}}),
        0,
    )?;
    // Dr. Reyes submits two of Alice's claims.
    let doc = keys.key(Who::Clinician);
    let session = Session {
        did: doc.public().did(),
        role: Who::Clinician.role(),
        organization: Some(keys.key(Who::Hospital).public().did()),
        scopes: vec![Scope::parse("user/*.cruds").map_err(|e| anyhow::anyhow!("{e}"))?],
        expires_ms: u64::MAX,
        key: doc.public(),
        origin: Default::default(),
    };
    let day = carechain_records::format_instant(now - 86_400_000)[..10].to_string();
    let c = Claims::new(service);
    let paid = demo_bundle(
        pid,
        &claims,
        "CH-2026-0001",
        &day,
        &[
            ("99213", "Office visit", 150.0),
            ("85025", "Complete blood count", 25.0),
        ],
    );
    let denied = demo_bundle(
        pid,
        &claims,
        "CH-2026-0002",
        &day,
        &[("97110", "Therapeutic exercise", 90.0)],
    );
    for b in [paid, denied] {
        c.submit(&session, &b)
            .map_err(|e| anyhow::anyhow!("demo claim: {e}"))?;
    }
    // A mutual pool, started by the clinic; Alice joins with a year's premiums, Bob with six
    // months'.
    let pool = instantiate(
        service,
        keys.key(Who::Clinic),
        shipped::POOL.code,
        demo_pool_rules(&keys.did(Who::ClaimsReviewer)),
        0,
        "Riverside mutual",
    )?;
    exec(
        service,
        keys.key(Who::Alice),
        pool,
        json!({"join": {}}),
        12_000,
    )?;
    exec(
        service,
        keys.key(Who::Bob),
        pool,
        json!({"join": {}}),
        6_000,
    )?;
    let acct = |h: &Hash| Account::Contract(*h).to_string();
    std::fs::write(
        root.join("demo-keys/contracts.json"),
        serde_json::to_string_pretty(
            &json!({"claims": acct(&claims), "pool": acct(&pool), "alice_member": member}),
        )?,
    )?;
    out_line(&format!(
        "demo payments loaded: claims contract {} (Alice's claims: one paid, one denied), mutual pool {} (Alice and Bob members); addresses in demo-keys/contracts.json",
        acct(&claims),
        acct(&pool)
    ));
    Ok(())
}
