//! `carechain bench network`: the demo network (`cluster up --demo`, four validator
//! processes on loopback) measured from outside: a consented cross-organization search
//! (Riverside's clinician at Riverside's node, Alice's chart at City Hospital's) against the
//! same search at the custodian itself, and consent grants per second.

use std::{
    io::{BufRead, BufReader},
    net::TcpListener,
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use carechain_crypto::{Hash, SecretKey};
use carechain_types::{ConsentPurpose, ConsentRule, Payload, Role, SignedTx, TxBody, encode};
use serde_json::{Value, json};

use crate::{client::Client, demo::Who, keyfile};

/// A child process stopped (SIGTERM, then waited for) when dropped.
struct Stopped(std::process::Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

fn free_base() -> Result<u16> {
    for base in (17_000u16..30_000).step_by(16) {
        if (0..8).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return Ok(base);
        }
    }
    bail!("no free ports")
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn timed(n: usize, mut f: impl FnMut() -> Result<()>) -> Result<Value> {
    for _ in 0..n / 10 {
        f()?;
    }
    let mut ms = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f()?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    Ok(json!({"n": n, "p50_ms": percentile(&ms, 0.5), "p99_ms": percentile(&ms, 0.99)}))
}

fn token(base: &str, key: &SecretKey, scope: &str) -> Result<String> {
    let now = carechain_node::now_ms() / 1000;
    let a = carechain_service::make_assertion(key, &format!("{base}/auth/token"), now);
    Ok(Client::new(base).token(&a, scope)?["access_token"]
        .as_str()
        .context("no token")?
        .to_string())
}

fn search(agent: &ureq::Agent, url: &str, token: &str, expect: usize) -> Result<()> {
    let mut r = agent
        .get(url)
        .header("authorization", format!("Bearer {token}"))
        .call()?;
    let b: Value = serde_json::from_slice(&r.body_mut().read_to_vec()?)?;
    let n = b["entry"].as_array().map_or(0, |e| {
        e.iter().filter(|e| e["search"]["mode"] == "match").count()
    });
    if n != expect {
        bail!("expected {expect} results, got {n}: {b}");
    }
    Ok(())
}

/// Submits signed transactions in batches to `base` and waits until the last one of each
/// signer is committed; returns the seconds from first submission to the last commit.
fn submit_all(client: &Client, base: &str, txs: &[SignedTx]) -> Result<f64> {
    let last = txs.last().context("nothing to submit")?.hash();
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build(),
    );
    let t = Instant::now();
    for chunk in txs.chunks(2_000) {
        let body = json!({"txs": chunk.iter().map(|t| hex::encode(encode(t))).collect::<Vec<_>>()});
        let mut r = agent
            .post(&format!("{base}/v1/txs/batch"))
            .send_json(&body)?;
        let v: Value = serde_json::from_slice(&r.body_mut().read_to_vec()?)?;
        if let Some(bad) = v["results"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x.get("code").is_some()))
        {
            bail!("batch refused a transaction: {bad}");
        }
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(v) = client.get_json_opt(&format!("/v1/txs/{}", last.to_hex()))?
            && v["status"] == "committed"
        {
            return Ok(t.elapsed().as_secs_f64());
        }
        if Instant::now() > deadline {
            bail!("transactions not committed in time");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub fn run(reads: usize, grants: usize) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let base = free_base()?;
    let mut child = Command::new(std::env::current_exe()?)
        .args(["cluster", "up", "--demo", "--data"])
        .arg(dir.path())
        .args(["--p2p-port", &base.to_string()])
        .args(["--http-port", &(base + 4).to_string()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let out = child.stdout.take().context("stdout")?;
    let _guard = Stopped(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    while !rx
        .recv_timeout(Duration::from_secs(300))
        .context("the demo network did not come up")?
        .starts_with("cluster running")
    {}
    let urls: Vec<String> = (0..4)
        .map(|i| format!("http://127.0.0.1:{}", base + 4 + i))
        .collect();
    let keys = |w: Who| keyfile::read(&dir.path().join("demo-keys").join(w.file()));
    let (alice, clinic) = (keys(Who::Alice)?, keys(Who::Clinic)?);
    let hospital = Client::new(&urls[0]);
    let chain_id = hospital.get_json("/v1/status")?["chain_id"]
        .as_str()
        .context("chain id")?
        .to_string();
    let sign = |k: &SecretKey, nonce: u64, payload: Payload| {
        TxBody {
            chain_id: chain_id.clone(),
            signer: k.public(),
            nonce,
            payload,
        }
        .sign(k)
    };
    let rule = |grantee: &SecretKey| ConsentRule {
        grantee: grantee.public(),
        purposes: vec![ConsentPurpose::Treatment],
        classes: vec![],
        not_before_ms: 0,
        not_after_ms: None,
    };
    let nonce =
        hospital.get_json(&format!("/v1/identities/{}", alice.public().did()))?["next_nonce"]
            .as_u64()
            .context("nonce")?;
    hospital.submit(&encode(&sign(
        &alice,
        nonce,
        Payload::GrantConsent {
            patient: alice.public(),
            id: Hash([7; 32]),
            rule: rule(&clinic),
        },
    )))?;
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build(),
    );
    let did = alice.public().did();
    let query = format!("/fhir/Observation?patient.identifier=urn:ietf:rfc:3986%7C{did}");
    let dan = token(&urls[1], &keys(Who::ClinicClinician)?, "user/*.rs")?;
    let carol = token(&urls[0], &keys(Who::Clinician)?, "user/*.rs")?;
    let expect = 21;
    let cross = timed(reads, || {
        search(&agent, &format!("{}{query}", urls[1]), &dan, expect)
    })?;
    let local = timed(reads, || {
        search(&agent, &format!("{}{query}", urls[0]), &carol, expect)
    })?;
    // Grants: fresh self-registered patients, then one grant each.
    let patients: Vec<SecretKey> = (0..grants)
        .map(|_| SecretKey::generate())
        .collect::<Result<_, _>>()?;
    let regs: Vec<SignedTx> = patients
        .iter()
        .map(|p| {
            sign(
                p,
                0,
                Payload::Register {
                    subject: p.public(),
                    role: Role::Patient,
                    parent: None,
                },
            )
        })
        .collect();
    submit_all(&hospital, &urls[0], &regs)?;
    let gs: Vec<SignedTx> = patients
        .iter()
        .map(|p| {
            sign(
                p,
                1,
                Payload::GrantConsent {
                    patient: p.public(),
                    id: Hash([1; 32]),
                    rule: rule(&clinic),
                },
            )
        })
        .collect();
    let secs = submit_all(&hospital, &urls[0], &gs)?;
    let ratio = |a: &Value, b: &Value, k: &str| {
        a[k].as_f64().unwrap_or(0.0) / b[k].as_f64().unwrap_or(1.0).max(1e-9)
    };
    let out = json!({
        "bench": "network",
        "validators": 4,
        "cross_node_search": cross,
        "custodian_local_search": local,
        "cross_over_local_p50": ratio(&cross, &local, "p50_ms"),
        "cross_over_local_p99": ratio(&cross, &local, "p99_ms"),
        "consent_grants": {"n": grants, "seconds": secs, "per_s": grants as f64 / secs},
    });
    crate::out_line(&serde_json::to_string_pretty(&out)?);
    Ok(())
}
