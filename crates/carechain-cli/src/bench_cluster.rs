//! `carechain bench cluster`: 4 validators (or `--validators N`; each its own store, consensus
//! runtime and authenticated p2p on loopback) in one process on this host; committed transactions per
//! second at saturation, finality latency at half of that load (and at a twentieth, the
//! pipeline's floor), and, with 4 or more, throughput with one
//! validator stopped (in the first seconds after the stop, and once the survivors skip its
//! turns). Transactions go to every validator's mempool in turn; a transaction is
//! final when validator 0 has made its block durable.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use carechain_cluster::{
    engine::ValidatorConfig,
    net::{ClusterFile, Member, RunningValidator},
};
use carechain_crypto::{Hash, SecretKey, sha256};
use carechain_node::{Node, NodeConfig, SubmitError};
use carechain_storage::Store;
use carechain_types::{Genesis, GenesisIdentity, Payload, Role, TxBody, encode};
use serde_json::json;

use crate::bench::Workload;
use crate::out_line;

const CHAIN: &str = "bench-cluster";

struct Bench {
    /// Each validator's data directory, removed when the bench ends.
    _dirs: Vec<tempfile::TempDir>,
    nodes: Vec<Arc<Node>>,
    validators: Vec<Option<RunningValidator>>,
    /// Submission instants of transactions, until final on validator 0.
    sent: Arc<Mutex<HashMap<Hash, Instant>>>,
    latencies: Arc<Mutex<Vec<Duration>>>,
}

/// `n` consecutive free ports for the validators' p2p, below the kernel's ephemeral range
/// (32768–60999): a port from that range could be taken as the local end of another
/// validator's outgoing connection before its own validator listens on it. Ports 12000–31999
/// are cut into slots of 32 (16 validators at most) and a process starts at the slot of its
/// id, so processes running side by side (as tests do) get disjoint ranges.
fn free_ports(n: usize) -> Result<Vec<u16>> {
    const SLOT: usize = 32;
    let seed = std::process::id() as usize;
    for attempt in 0..200 {
        let base = 12_000 + ((seed + attempt * 97) % (20_000 / SLOT)) * SLOT;
        let ports: Vec<u16> = (base..base + n).map(|p| p as u16).collect();
        // All bound at once, then released together.
        let held: std::io::Result<Vec<TcpListener>> = ports
            .iter()
            .map(|p| TcpListener::bind(("127.0.0.1", *p)))
            .collect();
        if held.is_ok() {
            return Ok(ports);
        }
    }
    bail!("no {n} consecutive free ports on 127.0.0.1 between 12000 and 32000")
}

/// A fresh data directory for validator `i`: inside `dir` (with `{i}` replaced by `i`), or in
/// the system's temporary directory.
fn data_dir(dir: Option<&str>, i: usize) -> Result<tempfile::TempDir> {
    let prefix = format!("carechain-bench-v{i}-");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix);
    Ok(match dir {
        Some(d) => {
            let parent = d.replace("{i}", &i.to_string());
            builder
                .tempdir_in(&parent)
                .with_context(|| format!("cannot make a data directory in {parent}"))?
        }
        None => builder.tempdir()?,
    })
}

fn start(
    n: usize,
    signers: &[SecretKey],
    block_txs: usize,
    dir: Option<&str>,
    w: Workload,
) -> Result<Bench> {
    let dirs: Vec<tempfile::TempDir> = (0..n).map(|i| data_dir(dir, i)).collect::<Result<_>>()?;
    let keys: Vec<SecretKey> = (0..n)
        .map(|_| SecretKey::generate())
        .collect::<Result<_, _>>()?;
    let mut identities: Vec<GenesisIdentity> = keys
        .iter()
        .map(|k| GenesisIdentity {
            key: k.public(),
            role: Role::Validator,
            parent: None,
        })
        .collect();
    identities.extend(signers.iter().map(|k| GenesisIdentity {
        key: k.public(),
        role: Role::Organization,
        parent: None,
    }));
    let mut token = carechain_types::TokenConfig::default();
    if w == Workload::Transfer {
        token.balances = signers
            .iter()
            .map(|k| (k.public(), 1_000_000_000))
            .collect();
    }
    let genesis = Genesis {
        token,
        contracts: Default::default(),
        chain_id: CHAIN.into(),
        timestamp_ms: carechain_node::now_ms(),
        identities,
    };
    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let members = keys
        .iter()
        .zip(free_ports(n)?)
        .map(|(k, port)| Member {
            did: k.public().did().to_string(),
            p2p: SocketAddr::new(localhost, port),
            http: SocketAddr::new(localhost, 0),
        })
        .collect();
    let cluster = ClusterFile {
        chain_id: CHAIN.into(),
        validators: members,
    };
    let mut nodes = Vec::new();
    let mut validators = Vec::new();
    for (k, vdir) in keys.iter().zip(&dirs) {
        let vdir = vdir.path();
        let store = Arc::new(Store::create(&vdir.join("ledger.redb"), &genesis)?);
        let node = Node::start_external(
            store,
            k.clone(),
            NodeConfig {
                max_block_txs: block_txs,
                mempool_capacity: 400_000,
                ..NodeConfig::default()
            },
        )?;
        let v = carechain_cluster::net::start(
            &cluster,
            None,
            k,
            node.clone(),
            &vdir.join("consensus"),
            ValidatorConfig {
                partition: "bench".into(),
                max_block_txs: block_txs,
                ..ValidatorConfig::default()
            },
        )?;
        nodes.push(node);
        validators.push(Some(v));
    }
    let sent: Arc<Mutex<HashMap<Hash, Instant>>> = Arc::default();
    let latencies: Arc<Mutex<Vec<Duration>>> = Arc::default();
    // Finality watcher on validator 0: each new durable block's transactions.
    {
        let (node, sent, latencies) = (nodes[0].clone(), sent.clone(), latencies.clone());
        std::thread::spawn(move || {
            let mut seen = node.store().head();
            loop {
                let h = node.wait_past(seen, Duration::from_secs(3600));
                if node.is_failed() {
                    return;
                }
                let now = Instant::now();
                let Ok(snap) = node.snapshot() else { return };
                for height in seen + 1..=h {
                    let Ok(Some(b)) = snap.block(height) else {
                        continue;
                    };
                    let mut s = sent.lock().unwrap_or_else(|e| e.into_inner());
                    let mut l = latencies.lock().unwrap_or_else(|e| e.into_inner());
                    for tx in &b.txs {
                        if let Some(t) = s.remove(&tx.hash()) {
                            l.push(now - t);
                        }
                    }
                }
                seen = h;
            }
        });
    }
    Ok(Bench {
        _dirs: dirs,
        nodes,
        validators,
        sent,
        latencies,
    })
}

/// Pre-signed anchors (or token transfers to the next signer): `per` transactions of each
/// signer, nonces from `from`.
fn make_txs(w: Workload, signers: &[SecretKey], from: u64, per: u64) -> Vec<Vec<(Hash, Vec<u8>)>> {
    signers
        .iter()
        .enumerate()
        .map(|(i, k)| {
            (from..from + per)
                .map(|nonce| {
                    let tx = TxBody {
                        chain_id: CHAIN.into(),
                        signer: k.public(),
                        nonce,
                        payload: match w {
                            Workload::Transfer => Payload::Transfer {
                                to: carechain_types::Account::Identity(
                                    signers[(i + 1) % signers.len()].public(),
                                ),
                                amount: 1,
                            },
                            _ => Payload::Anchor {
                                kind: "bench".into(),
                                commitment: sha256(
                                    &[&k.public().0[..], &nonce.to_le_bytes()].concat(),
                                ),
                            },
                        },
                    }
                    .sign(k);
                    (tx.hash(), encode(&tx))
                })
                .collect()
        })
        .collect()
}

/// Submits `pending` to validator `node`, noting when each was first offered, again and again
/// while the validator is busy.
fn submit(b: &Bench, node: usize, mut pending: Vec<(Hash, Vec<u8>)>) {
    let node = &b.nodes[node];
    while !pending.is_empty() {
        {
            let now = Instant::now();
            let mut s = b.sent.lock().unwrap_or_else(|e| e.into_inner());
            for (h, _) in &pending {
                s.entry(*h).or_insert(now);
            }
        }
        let raws: Vec<Vec<u8>> = pending.iter().map(|(_, r)| r.clone()).collect();
        let results = node.submit_batch(raws);
        let retry: Vec<(Hash, Vec<u8>)> = pending
            .into_iter()
            .zip(results)
            .filter(|(_, r)| matches!(r, Err(SubmitError::Busy)))
            .map(|(p, _)| p)
            .collect();
        if !retry.is_empty() {
            std::thread::sleep(Duration::from_millis(2));
        }
        pending = retry;
    }
}

/// What one phase measured.
struct Phase {
    /// Committed transactions per second.
    tx_per_s: f64,
    /// Finality latency percentiles, in milliseconds.
    p50_ms: f64,
    p99_ms: f64,
    /// Blocks per second on validator 0.
    heights_per_s: f64,
    /// CPU time of the whole process (all four validators and the load) per second of the
    /// phase, in cores; `None` where `/proc/self/stat` cannot be read.
    cpu_cores: Option<f64>,
}

impl Phase {
    fn json(&self) -> serde_json::Value {
        json!({
            "committed_tx_per_s": self.tx_per_s.round(),
            "finality_p50_ms": self.p50_ms,
            "finality_p99_ms": self.p99_ms,
            "blocks_per_s": (self.heights_per_s * 10.0).round() / 10.0,
            "mean_block_txs": if self.heights_per_s > 0.0 { (self.tx_per_s / self.heights_per_s).round() } else { 0.0 },
            "cpu_cores_busy": self.cpu_cores.map(|c| (c * 100.0).round() / 100.0),
        })
    }
}

/// CPU time (user and system) this process has used, in seconds: fields 14 and 15 of
/// `/proc/self/stat`, in the kernel's user-visible ticks of 1/100 s.
fn process_cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ').skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// Offers the transactions (signer i to live validator i mod live) at `rate` tx/s (0: as
/// fast as admitted) and waits until all are final on validator 0.
fn phase(b: &Bench, txs: Vec<Vec<(Hash, Vec<u8>)>>, rate: f64, live: &[usize]) -> Result<Phase> {
    let total: usize = txs.iter().map(Vec::len).sum();
    b.latencies
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clear();
    let start_log = b.nodes[0].store().log().size();
    let start_head = b.nodes[0].store().head();
    let start_cpu = process_cpu_secs();
    let start = Instant::now();
    // Interleave signers in rounds (one transaction per signer); each round's transactions
    // go to the live validators in turn. At a set rate, in chunks of 50 paced one by one
    // (arrivals spread over time as from many independent clients, not in bursts of a whole
    // round); at full speed, a validator's share of a round at once.
    let chunk_len = if rate > 0.0 { 50 } else { usize::MAX };
    let per = txs.first().map_or(0, Vec::len);
    let mut offered = 0usize;
    for round in 0..per {
        let mut by_node: Vec<Vec<(Hash, Vec<u8>)>> = vec![Vec::new(); live.len()];
        for (i, s) in txs.iter().enumerate() {
            by_node[i % live.len()].push(s[round].clone());
        }
        let most = by_node.iter().map(Vec::len).max().unwrap_or(0);
        for from in (0..most).step_by(chunk_len.min(most.max(1))) {
            for (j, batch) in by_node.iter().enumerate() {
                let chunk =
                    &batch[from.min(batch.len())..from.saturating_add(chunk_len).min(batch.len())];
                if chunk.is_empty() {
                    continue;
                }
                submit(b, live[j], chunk.to_vec());
                offered += chunk.len();
                if rate > 0.0 {
                    let due = Duration::from_secs_f64(offered as f64 / rate);
                    if let Some(wait) = due.checked_sub(start.elapsed()) {
                        std::thread::sleep(wait);
                    }
                }
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    while b.nodes[0].store().log().size() < start_log + total as u64 {
        if Instant::now() > deadline {
            bail!(
                "only {} of {total} transactions final after 300 s",
                b.nodes[0].store().log().size() - start_log
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let secs = start.elapsed().as_secs_f64();
    let heights = b.nodes[0].store().head() - start_head;
    let cpu_cores = start_cpu
        .zip(process_cpu_secs())
        .map(|(a, z)| (z - a) / secs);
    // Let the watcher see the last block.
    std::thread::sleep(Duration::from_millis(50));
    let mut l = b
        .latencies
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    l.sort();
    let pct = |p: f64| {
        if l.is_empty() {
            0.0
        } else {
            l[((l.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1000.0
        }
    };
    Ok(Phase {
        tx_per_s: total as f64 / secs,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        heights_per_s: heights as f64 / secs,
        cpu_cores,
    })
}

/// What `bench cluster` runs.
pub struct ClusterBench<'a> {
    /// Validators.
    pub validators: usize,
    /// Transactions per phase.
    pub txs: u64,
    /// Distinct signers.
    pub signers: usize,
    /// Most transactions per block.
    pub block_txs: usize,
    /// Where the validators keep their data.
    pub dir: Option<&'a str>,
    /// Anchors or token transfers.
    pub workload: Workload,
}

pub fn run(c: &ClusterBench<'_>) -> Result<()> {
    let (validators, txs, signers, block_txs, dir, w) = (
        c.validators,
        c.txs,
        c.signers,
        c.block_txs,
        c.dir,
        c.workload,
    );
    if w == Workload::Contract {
        bail!("bench cluster runs --workload anchor or transfer");
    }
    if !(1..=16).contains(&validators) {
        bail!("--validators must be 1 to 16");
    }
    let n = validators;
    let signer_keys: Vec<SecretKey> = (0..signers)
        .map(|_| SecretKey::generate())
        .collect::<Result<_, _>>()?;
    let per = (txs / signers as u64).max(1);
    let b = start(n, &signer_keys, block_txs, dir, w)?;
    let all: Vec<usize> = (0..n).collect();
    // Warm up: connections, first views.
    phase(&b, make_txs(w, &signer_keys, 0, 2), 0.0, &all)?;
    let mut nonce = 2;
    let peak = phase(&b, make_txs(w, &signer_keys, nonce, per), 0.0, &all)?;
    nonce += per;
    let half = phase(
        &b,
        make_txs(w, &signer_keys, nonce, per / 2),
        peak.tx_per_s / 2.0,
        &all,
    )?;
    nonce += per / 2;
    // Light load (a twentieth of the peak): the latency floor of the pipeline on this host
    // (proposal, re-execution, two vote rounds, a durable commit) when nothing queues.
    let light_per = (per / 20).max(1);
    let light = phase(
        &b,
        make_txs(w, &signer_keys, nonce, light_per),
        peak.tx_per_s / 20.0,
        &all,
    )?;
    nonce += light_per;
    // One validator down (stopped, not reachable), when the others are still a quorum
    // (n ≥ 4: f ≥ 1). Right after the stop each of its views as leader costs the leader
    // timeout; once it has been silent for the skip timeout the survivors nullify its views
    // at once. Both are measured: the first seconds after the stop, then the steady state.
    let mut b = b;
    let mut live = all.clone();
    let mut one_down = None;
    if n >= 4 {
        live.pop();
        let stopped = Instant::now();
        if let Some(v) = b.validators[n - 1].take() {
            v.stop();
        }
        let fresh = phase(&b, make_txs(w, &signer_keys, nonce, per), 0.0, &live)?;
        nonce += per;
        let config = ValidatorConfig::default();
        let skip_after = config.timeout_retry + config.certification_timeout;
        std::thread::sleep(skip_after.saturating_sub(stopped.elapsed()) + Duration::from_secs(1));
        // A few heights for the survivors to see the stopped leader's turn come round.
        phase(&b, make_txs(w, &signer_keys, nonce, 2), 0.0, &live)?;
        nonce += 2;
        let down = phase(&b, make_txs(w, &signer_keys, nonce, per), 0.0, &live)?;
        let mut fresh_j = fresh.json();
        fresh_j["ratio_to_peak"] = json!(fresh.tx_per_s / peak.tx_per_s);
        let mut down_j = down.json();
        down_j["ratio_to_peak"] = json!(down.tx_per_s / peak.tx_per_s);
        one_down = Some((fresh_j, down_j));
    }
    for v in b.validators.iter_mut().filter_map(Option::take) {
        v.stop();
    }
    let heads: Vec<u64> = live.iter().map(|&i| b.nodes[i].store().head()).collect();
    drop(b);
    // The raw limit, measured in this run on the same transactions: Ed25519 batch
    // verification on every core. Each transaction is verified by the validator that
    // admits it, by those it gossips to, and by those that verify its block.
    let sample: Vec<Vec<u8>> = make_txs(w, &signer_keys, nonce + per, 60)
        .into_iter()
        .flatten()
        .map(|(_, raw)| raw)
        .collect();
    let verify_per_s = crate::bench::raw_verify_rate(&sample);
    let mut half_j = half.json();
    half_j["offered_tx_per_s"] = json!((peak.tx_per_s / 2.0).round());
    let mut light_j = light.json();
    light_j["offered_tx_per_s"] = json!((peak.tx_per_s / 20.0).round());
    let (fresh_j, down_j) = one_down.unwrap_or((
        json!("not run: fewer than 4 validators have no quorum with one down"),
        json!("not run: fewer than 4 validators have no quorum with one down"),
    ));
    out_line(&serde_json::to_string_pretty(&json!({
        "bench": "cluster",
        "workload": if w == Workload::Transfer { "transfer" } else { "anchor" },
        "validators": n,
        "host_cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "transactions_per_phase": per * signers as u64,
        "signers": signers,
        "max_block_txs": block_txs,
        "peak": peak.json(),
        "half_load": half_j,
        "light_load": light_j,
        "one_down_first_seconds": fresh_j,
        "one_down": down_j,
        "heights": heads,
        "raw_ed25519_batch_verify_per_s_all_cores": verify_per_s.round(),
        "ratio_peak_to_raw_verify": peak.tx_per_s / verify_per_s,
        "data_dir": dir.unwrap_or("the system's temporary directory"),
        "target": { "validators": 4, "committed_tx_per_s": 10_000, "finality_p50_ms": 50, "finality_p99_ms": 200, "one_down_ratio": 0.8 },
        "note": format!("{n} validator(s) in one process (own store, consensus runtime and authenticated p2p on loopback each); final = durable on validator 0"),
    }))?);
    Ok(())
}
