//! `carechain bench claims`: claims from `Claim/$submit` (in-process, no HTTP) to the
//! ClaimResponse with payment final: the Claim stored, the contract's decision durable on the
//! ledger (payment in the same transaction), the ClaimResponse and ExplanationOfBenefit
//! stored. Concurrent providers' claims share blocks.

use anyhow::{Result, bail};
use carechain_claims::{Claims, member_pseudonym};
use carechain_contracts::shipped;
use carechain_crypto::{Hash, SecretKey, sha256};
use carechain_service::Service;
use carechain_types::{Account, GenesisIdentity, Payload, Role, TxBody};
use serde_json::json;

use crate::bench_fhir::{BenchService, fail, pct, raw_limits, run_parallel};
use crate::demo_claims::{demo_bundle, demo_plan};
use crate::out_line;

/// Members enrolled (claims cycle through them, one service per member, code and day).
const MEMBERS: usize = 250;

/// Signs `payloads` from `key` (nonces from `first`) and waits until all are applied; their
/// receipts' data.
pub(crate) fn run_txs(
    svc: &Service,
    key: &SecretKey,
    first: u64,
    payloads: Vec<Payload>,
) -> Result<Vec<Vec<u8>>> {
    let node = svc.node();
    let chain_id = node.store().genesis().chain_id.clone();
    let bodies: Vec<TxBody> = payloads
        .into_iter()
        .enumerate()
        .map(|(i, payload)| TxBody {
            chain_id: chain_id.clone(),
            signer: key.public(),
            nonce: first + i as u64,
            payload,
        })
        .collect();
    let hashes: Vec<Hash> = node
        .sign_and_submit(key, bodies)
        .into_iter()
        .map(|r| r.map(|a| a.hash).map_err(|e| anyhow::anyhow!("{e}")))
        .collect::<Result<_>>()?;
    let mut out = Vec::new();
    for h in &hashes {
        let r = svc.wait_tx(h).map_err(fail)?.receipt().clone();
        if !matches!(r.outcome, carechain_types::Outcome::Applied { .. }) {
            bail!("bench setup transaction rejected: {:?}", r.outcome);
        }
        out.push(r.data);
    }
    Ok(out)
}

pub fn run(claims: usize, threads: usize) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let raw = raw_limits(dir.path())?;
    let insurer = SecretKey::generate()?;
    let BenchService {
        node_key,
        hospital,
        node,
        svc,
        session,
        pid,
        ..
    } = BenchService::start(dir.path(), "carechain-bench-claims", |g, _| {
        g.token.balances = vec![(insurer.public(), 1_000_000_000_000)];
        g.identities.push(GenesisIdentity {
            key: insurer.public(),
            role: Role::Organization,
            parent: None,
        });
    })?;

    // The insurer's contract, funded, with every member enrolled.
    let code = shipped::CLAIMS.code.to_vec();
    let mut plan = demo_plan(
        &hospital.public().did().to_string(),
        &node_key.public().did().to_string(),
    );
    plan["plan"]["benefits"][0]["max_units"] = json!(1_000_000);
    plan["plan"]["pend_above"] = json!(null);
    let data = run_txs(
        &svc,
        &insurer,
        0,
        vec![
            Payload::DeployCode { code: code.clone() },
            Payload::Instantiate {
                code: sha256(&code),
                msg: plan.to_string().into_bytes(),
                funds: 100_000_000_000,
                label: "bench".into(),
            },
        ],
    )?;
    let reply: serde_json::Value = serde_json::from_slice(&data[1])?;
    let Some(Ok(Account::Contract(contract))) =
        reply["contract"].as_str().map(str::parse::<Account>)
    else {
        bail!("no contract address");
    };
    let now = carechain_node::now_ms();
    let year = 31_536_000_000u64;
    let enroll: Vec<Payload> = (0..MEMBERS)
        .map(|m| Payload::Execute {
            contract,
            msg: json!({"enroll": {"member": member_pseudonym(&contract, &format!("B-{m}")), "from_ms": now - year, "until_ms": now + year}}).to_string().into_bytes(),
            funds: 0,
        })
        .collect();
    run_txs(&svc, &insurer, 2, enroll)?;

    // The claims: member i % MEMBERS, one office visit on a day of its own.
    let bundles: Vec<serde_json::Value> = (0..claims)
        .map(|i| {
            let day =
                carechain_records::format_instant(now - 86_400_000 * (1 + (i / MEMBERS) as u64))
                    [..10]
                    .to_string();
            let mut b = demo_bundle(
                &pid,
                &contract,
                &format!("BENCH-{i}"),
                &day,
                &[("99213", "Office visit", 150.0)],
            );
            b["entry"][1]["resource"]["subscriberId"] = json!(format!("B-{}", i % MEMBERS));
            b
        })
        .collect();
    let fuel = parking_lot::Mutex::new(Vec::with_capacity(claims));
    let paid = std::sync::atomic::AtomicU64::new(0);
    let (rate, lat) = run_parallel(threads, claims, |i| {
        let s = Claims::new(&svc)
            .submit(&session, &bundles[i])
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        fuel.lock().push(s.fuel_used);
        if s.paid > 0 {
            paid.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    })?;
    let fuel = fuel.into_inner();
    let blocks = node.store().head();
    node.shutdown();
    let fdatasync = raw["fdatasync_1k_per_s"].as_f64().unwrap_or(1.0);
    out_line(&serde_json::to_string_pretty(&json!({
        "bench": "claims",
        "claims": claims,
        "clients": threads,
        "paid": paid.into_inner(),
        "blocks": blocks,
        "claims_per_s": rate.round(),
        "latency_ms": { "p50": pct(&lat, 0.5), "p99": pct(&lat, 0.99), "max": pct(&lat, 1.0) },
        "fuel_per_claim": { "min": fuel.iter().min(), "max": fuel.iter().max() },
        "raw": raw,
        "ratios": { "claims_per_s_over_fdatasync_per_s": rate / fdatasync },
        "target": { "claims_per_s": 2000, "p99_ms": 100 },
    }))?);
    Ok(())
}
