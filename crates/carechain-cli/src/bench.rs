//! `carechain bench ledger`: committed, durable signed transactions per second of one node,
//! with the raw limits measured in the same run (ed25519 batch verification, durable redb
//! appends) and the ratios to them.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Result;
use carechain_crypto::{BatchItem, Namespace, SecretKey, sha256, verify_batch};
use carechain_node::{Node, NodeConfig, SubmitError};
use carechain_storage::Store;
use carechain_types::{Genesis, GenesisIdentity, Payload, Role, TxBody, decode_tx, encode};
use clap::Subcommand;
use serde_json::json;

use crate::out_line;

#[derive(Subcommand)]
pub enum BenchCmd {
    /// Single-node ledger throughput and checkpoint latency.
    Ledger {
        /// Transactions to commit.
        #[arg(long, default_value_t = 300_000)]
        txs: usize,
        /// Distinct signers (registered in genesis).
        #[arg(long, default_value_t = 2_000)]
        signers: usize,
        /// Transactions per block.
        #[arg(long, default_value_t = 8192)]
        block_txs: usize,
        /// Threads submitting to the mempool.
        #[arg(long, default_value_t = 2)]
        submitters: usize,
        /// Offered load in transactions per second (0 = as fast as possible, i.e. saturation).
        #[arg(long, default_value_t = 0)]
        rate: u64,
        /// What the transactions do: anchor a commitment, transfer care tokens, or call a
        /// trivial contract (the shipped counter).
        #[arg(long, value_enum, default_value_t = Workload::Anchor)]
        workload: Workload,
    },
    /// The demo network (`cluster up --demo`, four validator processes on loopback): a
    /// consented cross-organization search against the same search at the custodian, and
    /// consent grants per second.
    Network {
        /// Searches timed (each way).
        #[arg(long, default_value_t = 300)]
        reads: usize,
        /// Consent grants (by as many fresh patients).
        #[arg(long, default_value_t = 20_000)]
        grants: usize,
    },
    /// A 4-validator BFT cluster on this host: committed tx/s at saturation, finality
    /// latency at half that load, throughput with one validator down.
    Cluster {
        /// Validators (1 to 16; one down is measured from 4 on). One is the one-validator
        /// network `cluster up --validators 1` runs.
        #[arg(long, default_value_t = 4)]
        validators: usize,
        /// Transactions per phase.
        #[arg(long, default_value_t = 60_000)]
        txs: u64,
        /// Distinct signers (registered in genesis).
        #[arg(long, default_value_t = 1_000)]
        signers: usize,
        /// Most transactions per block.
        #[arg(long, default_value_t = 8192)]
        block_txs: usize,
        /// Where the validators keep their data (a fresh directory is made inside and removed
        /// at the end). `{i}` is replaced by the validator's index, to give each validator its
        /// own disk as in production (e.g. `--dir /mnt/v{i}`). Default: the system's temporary
        /// directory, shared by all four.
        #[arg(long)]
        dir: Option<String>,
        /// Anchors, or token transfers between funded signers.
        #[arg(long, value_enum, default_value_t = Workload::Anchor)]
        workload: Workload,
    },
    /// Claims from `Claim/$submit` to ClaimResponse with payment final (in-process).
    Claims {
        /// Claims to submit.
        #[arg(long, default_value_t = 2_000)]
        claims: usize,
        /// Concurrent providers submitting.
        #[arg(long, default_value_t = 64)]
        threads: usize,
    },
    /// The supply chain (in-process): EPCIS capture, pack verification, a product's history
    /// with many events stored.
    Supply {
        /// Events to capture.
        #[arg(long, default_value_t = 20_000)]
        events: usize,
        /// Events per capture document (at most the capture limit, 1000).
        #[arg(long, default_value_t = 1_000)]
        batch: usize,
        /// Concurrent capturing clients.
        #[arg(long, default_value_t = 4)]
        threads: usize,
        /// Verification requests.
        #[arg(long, default_value_t = 50_000)]
        verifies: usize,
        /// Other events stored before the history query.
        #[arg(long, default_value_t = 200_000)]
        stored: usize,
    },
    /// The records service: durable creates, consent-checked reads, bundle import, searches.
    Fhir {
        /// Observations to create.
        #[arg(long, default_value_t = 5_000)]
        creates: usize,
        /// Reads by id.
        #[arg(long, default_value_t = 10_000)]
        reads: usize,
        /// Searches of each kind on the imported bundles.
        #[arg(long, default_value_t = 200)]
        searches: usize,
        /// Concurrent clients for creates and imports.
        #[arg(long, default_value_t = 64)]
        threads: usize,
        /// Concurrent clients for reads (reads are CPU-bound: more clients than cores only
        /// queue on the CPU).
        #[arg(long, default_value_t = 4)]
        read_threads: usize,
        /// Synthea benchmark bundles to import.
        #[arg(long, default_value_t = 20)]
        bundles: usize,
        /// The Synthea benchmark bundle directory.
        #[arg(long)]
        data: Option<std::path::PathBuf>,
    },
}

/// The ledger benchmark's transactions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// Anchors of distinct commitments.
    Anchor,
    /// Token transfers of 1 minor unit between funded signers.
    Transfer,
    /// `increment` calls of the shipped counter contract.
    Contract,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Anchor => "anchor",
            Workload::Transfer => "transfer",
            Workload::Contract => "contract",
        }
    }
}

/// The counter the contract workload calls: deployed and instantiated by the node key with
/// its nonces 0 and 1.
fn counter_address(node: &SecretKey) -> carechain_crypto::Hash {
    let code = sha256(carechain_contracts::shipped::COUNTER.code);
    carechain_types::contract_address(&code, &node.public(), 1)
}

/// The node key deploys and instantiates the counter, and waits for both to apply.
fn setup_counter(node: &Node, key: &SecretKey, chain_id: &str) -> Result<()> {
    let code = carechain_contracts::shipped::COUNTER.code.to_vec();
    let payloads = [
        Payload::DeployCode { code: code.clone() },
        Payload::Instantiate {
            code: sha256(&code),
            msg: b"{}".to_vec(),
            funds: 0,
            label: "bench counter".into(),
        },
    ];
    let bodies = payloads
        .into_iter()
        .enumerate()
        .map(|(i, payload)| TxBody {
            chain_id: chain_id.to_string(),
            signer: key.public(),
            nonce: i as u64,
            payload,
        })
        .collect();
    for r in node.sign_and_submit(key, bodies) {
        r.map_err(|e| anyhow::anyhow!("counter setup refused: {e}"))?;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    let mut rx = node.subscribe();
    while node.store().log().size() < 2 {
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(30), rx.changed()).await })??;
    }
    Ok(())
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// Raw ed25519 batch verification rate using every core.
pub(crate) fn raw_verify_rate(txs: &[Vec<u8>]) -> f64 {
    let decoded: Vec<_> = txs
        .iter()
        .take(60_000)
        .filter_map(|b| decode_tx(b).ok())
        .collect();
    let bodies: Vec<Vec<u8>> = decoded.iter().map(|t| encode(&t.body)).collect();
    let n = threads();
    let per = decoded.len().div_ceil(n);
    let start = Instant::now();
    std::thread::scope(|s| {
        for c in 0..n {
            let (decoded, bodies) = (&decoded, &bodies);
            s.spawn(move || {
                let lo = c * per;
                let hi = ((c + 1) * per).min(decoded.len());
                for chunk_start in (lo..hi).step_by(256) {
                    let end = (chunk_start + 256).min(hi);
                    let items: Vec<BatchItem<'_>> = (chunk_start..end)
                        .map(|i| BatchItem {
                            key: &decoded[i].body.signer,
                            ns: Namespace::Transaction,
                            message: &bodies[i],
                            sig: &decoded[i].signature,
                        })
                        .collect();
                    let _ = verify_batch(&items);
                }
            });
        }
    });
    decoded.len() as f64 / start.elapsed().as_secs_f64()
}

/// Raw durable append rate of redb: commits of `batch` records of ~`size` bytes, fsync'd.
fn raw_append_rate(dir: &std::path::Path, batch: usize, size: usize) -> Result<(f64, f64)> {
    const T: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("raw");
    let db = redb::Database::create(dir.join("raw.redb"))?;
    let value = vec![7u8; size];
    let start = Instant::now();
    let mut key = 0u64;
    while start.elapsed() < Duration::from_secs(3) {
        let mut txn = db.begin_write()?;
        txn.set_durability(redb::Durability::Immediate)?;
        {
            let mut t = txn.open_table(T)?;
            for _ in 0..batch {
                t.insert(key, value.as_slice())?;
                key += 1;
            }
        }
        txn.commit()?;
    }
    let secs = start.elapsed().as_secs_f64();
    // Bare fsync'd commits (one record each): the durable-commit latency limit.
    let start = Instant::now();
    let mut single = 0u64;
    while start.elapsed() < Duration::from_secs(1) {
        let mut txn = db.begin_write()?;
        txn.set_durability(redb::Durability::Immediate)?;
        txn.open_table(T)?
            .insert(u64::MAX - single, value.as_slice())?;
        txn.commit()?;
        single += 1;
    }
    Ok((
        key as f64 / secs,
        single as f64 / start.elapsed().as_secs_f64(),
    ))
}

pub fn run(cmd: BenchCmd) -> Result<()> {
    if let BenchCmd::Supply {
        events,
        batch,
        threads,
        verifies,
        stored,
    } = cmd
    {
        return crate::bench_supply::run(crate::bench_supply::SupplyBench {
            events: events.max(1),
            batch: batch.clamp(1, carechain_supply::CAPTURE_LIMIT),
            threads: threads.max(1),
            verifies: verifies.max(1),
            stored,
        });
    }
    if let BenchCmd::Claims { claims, threads } = cmd {
        return crate::bench_claims::run(claims.max(1), threads.max(1));
    }
    if let BenchCmd::Network { reads, grants } = cmd {
        return crate::bench_network::run(reads, grants.max(1));
    }
    if let BenchCmd::Cluster {
        validators,
        txs,
        signers,
        block_txs,
        dir,
        workload,
    } = cmd
    {
        return crate::bench_cluster::run(&crate::bench_cluster::ClusterBench {
            validators,
            txs,
            signers: signers.max(4),
            block_txs,
            dir: dir.as_deref(),
            workload,
        });
    }
    if let BenchCmd::Fhir {
        creates,
        reads,
        searches,
        threads,
        read_threads,
        bundles,
        data,
    } = cmd
    {
        return crate::bench_fhir::run(
            (creates, reads, searches),
            (threads, read_threads),
            bundles,
            data,
        );
    }
    let BenchCmd::Ledger {
        txs: n,
        signers,
        block_txs,
        submitters,
        rate,
        workload,
    } = cmd
    else {
        unreachable!("handled above")
    };
    let dir = tempfile::tempdir()?;
    let chain_id = "carechain-bench".to_string();
    let node_key = SecretKey::generate()?;
    let keys: Vec<SecretKey> = (0..signers.max(1))
        .map(|i| SecretKey::from_seed(&sha256(&(i as u64).to_le_bytes()).0))
        .collect();
    let mut identities = vec![GenesisIdentity {
        key: node_key.public(),
        role: Role::Validator,
        parent: None,
    }];
    identities.extend(keys.iter().map(|k| GenesisIdentity {
        key: k.public(),
        role: Role::Organization,
        parent: None,
    }));
    let mut token = carechain_types::TokenConfig::default();
    if workload == Workload::Transfer {
        token.balances = keys.iter().map(|k| (k.public(), 1_000_000_000)).collect();
    }
    let genesis = Genesis {
        token,
        contracts: Default::default(),
        chain_id: chain_id.clone(),
        timestamp_ms: carechain_node::now_ms(),
        identities,
    };
    let counter = counter_address(&node_key);
    let call = br#"{"increment":{}}"#.to_vec();
    let payload_of = |i: usize| match workload {
        Workload::Anchor => Payload::Anchor {
            kind: "bench".into(),
            commitment: sha256(&(i as u64).to_le_bytes()),
        },
        Workload::Transfer => Payload::Transfer {
            to: carechain_types::Account::Identity(keys[(i + 1) % keys.len()].public()),
            amount: 1,
        },
        Workload::Contract => Payload::Execute {
            contract: counter,
            msg: call.clone(),
            funds: 0,
        },
    };

    // Pre-sign every transaction (not timed): nonces in order per signer.
    let sign_start = Instant::now();
    let per_thread = n.div_ceil(threads());
    let mut raw: Vec<Vec<u8>> = Vec::with_capacity(n);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads())
            .map(|t| {
                let (keys, chain_id, payload_of) = (&keys, &chain_id, &payload_of);
                s.spawn(move || {
                    let lo = t * per_thread;
                    let hi = ((t + 1) * per_thread).min(n);
                    (lo..hi)
                        .map(|i| {
                            let k = &keys[i % keys.len()];
                            let nonce = (i / keys.len()) as u64;
                            encode(
                                &TxBody {
                                    chain_id: chain_id.clone(),
                                    signer: k.public(),
                                    nonce,
                                    payload: payload_of(i),
                                }
                                .sign(k),
                            )
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            raw.extend(h.join().unwrap_or_default());
        }
    });
    let sign_secs = sign_start.elapsed().as_secs_f64();
    let tx_bytes = raw.iter().map(Vec::len).sum::<usize>() / raw.len().max(1);

    let verify_rate = raw_verify_rate(&raw);
    let (append_rate, fsync_rate) = raw_append_rate(dir.path(), block_txs, tx_bytes + 64)?;

    let store = Arc::new(Store::create(&dir.path().join("ledger.redb"), &genesis)?);
    let config = NodeConfig {
        block_interval: Duration::from_millis(20),
        fixed_interval: false,
        max_block_txs: block_txs,
        mempool_capacity: block_txs * 8,
    };
    let node = Node::start(store, node_key.clone(), config)?;
    let setup = if workload == Workload::Contract {
        setup_counter(&node, &node_key, &chain_id)?;
        2
    } else {
        0
    };
    let mut rx = node.subscribe();

    // Submitters take transactions in order of their index within each signer's stream: one
    // contiguous range per submitter would break nonce order across submitters, so each
    // submitter owns a disjoint set of signers.
    let start = Instant::now();
    let mut busy = 0u64;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..submitters.max(1))
            .map(|sub| {
                let (raw, node) = (&raw, &node);
                let nsigners = keys.len();
                let subs = submitters.max(1);
                s.spawn(move || {
                    let mine: Vec<&Vec<u8>> = raw
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| (i % nsigners) % subs == sub)
                        .map(|(_, t)| t)
                        .collect();
                    let mut busy = 0u64;
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_time()
                        .build()
                        .expect("runtime");
                    for (j, chunk) in mine.chunks(1024).enumerate() {
                        if rate > 0 {
                            // Pace: this submitter's share of the offered load.
                            let due = start
                                + Duration::from_secs_f64((j * 1024 * subs) as f64 / rate as f64);
                            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                                std::thread::sleep(wait);
                            }
                        }
                        let mut todo: Vec<Vec<u8>> = chunk.iter().map(|t| (*t).clone()).collect();
                        while !todo.is_empty() {
                            let results = node.submit_batch(todo.clone());
                            let mut retry = Vec::new();
                            for (t, r) in todo.into_iter().zip(results) {
                                match r {
                                    Ok(_) | Err(SubmitError::Duplicate(_)) => {}
                                    // Busy: back-pressure. Gap: an earlier one of the same
                                    // signer was refused as busy; both go again, in order.
                                    Err(SubmitError::Busy | SubmitError::NonceGap { .. }) => {
                                        retry.push(t)
                                    }
                                    Err(e) => panic!("bench transaction refused: {e}"),
                                }
                            }
                            if !retry.is_empty() {
                                // Back-pressure: wait for the next durable block, as a
                                // well-behaved client would, instead of spinning.
                                busy += 1;
                                let mut rx = node.subscribe();
                                rx.borrow_and_update();
                                let _ = rt.block_on(async {
                                    tokio::time::timeout(Duration::from_secs(5), rx.changed()).await
                                });
                            }
                            todo = retry;
                        }
                    }
                    busy
                })
            })
            .collect();
        for h in handles {
            busy += h.join().unwrap_or(0);
        }
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    while node.store().log().size() < n as u64 + setup {
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(30), rx.changed()).await })??;
    }
    let secs = start.elapsed().as_secs_f64();
    let committed = node.store().log().size() - setup;
    let blocks = node.store().head();
    let mut lat = node.take_publish_latencies();
    lat.sort();
    node.shutdown();
    let tps = committed as f64 / secs;
    out_line(&serde_json::to_string_pretty(&json!({
        "bench": "ledger",
        "workload": workload.name(),
        "cores": threads(),
        "transactions": committed,
        "blocks": blocks,
        "tx_bytes": tx_bytes,
        "seconds": secs,
        "committed_durable_tx_per_s": tps.round(),
        "checkpoint_publish_ms": { "p50": percentile(&lat, 0.5), "p99": percentile(&lat, 0.99), "max": percentile(&lat, 1.0) },
        "busy_retries": busy,
        "offered_rate_tx_per_s": if rate > 0 { json!(rate) } else { json!("saturation") },
        "presign_tx_per_s": (n as f64 / sign_secs).round(),
        "raw": {
            "ed25519_batch_verify_per_s_all_cores": verify_rate.round(),
            "redb_durable_appends_per_s": append_rate.round(),
            "redb_fsync_commits_per_s": fsync_rate.round(),
        },
        "ratios": {
            "tx_per_s_over_batch_verify_per_s": tps / verify_rate,
            "tx_per_s_over_durable_appends_per_s": tps / append_rate,
        },
        "target": { "tx_per_s": match workload {
            Workload::Anchor => 30_000,
            Workload::Transfer => 50_000,
            Workload::Contract => 20_000,
        }, "checkpoint_p99_ms": 100 },
    }))?);
    Ok(())
}
