//! `carechain bench fhir`: the records service in-process (no HTTP): durable creates
//! (validate + encrypt + anchor + audit), consent-checked reads by id (decrypt + decide +
//! audit), transaction-bundle import of the Synthea benchmark bundles, and searches on what
//! was imported.

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use carechain_crypto::SecretKey;
use carechain_node::{Node, NodeConfig};
use carechain_service::{Purpose, Scope, Service, Session};
use carechain_storage::Store;
use carechain_types::{Genesis, GenesisIdentity, Role};
use serde_json::{Value, json};

use crate::out_line;

/// A refusal by the service, as an error of the bench.
pub(crate) fn fail(e: carechain_service::ServiceError) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", e.kind, e.message)
}

pub(crate) fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1000.0
}

/// Runs `total` operations on `threads` threads; returns (ops/s, sorted latencies).
pub(crate) fn run_parallel(
    threads: usize,
    total: usize,
    op: impl Fn(usize) -> Result<()> + Sync,
) -> Result<(f64, Vec<Duration>)> {
    let start = Instant::now();
    let mut lat = Vec::with_capacity(total);
    std::thread::scope(|s| -> Result<()> {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let op = &op;
                s.spawn(move || -> Result<Vec<Duration>> {
                    let mut l = Vec::new();
                    for i in (t..total).step_by(threads) {
                        let t0 = Instant::now();
                        op(i)?;
                        l.push(t0.elapsed());
                    }
                    Ok(l)
                })
            })
            .collect();
        for h in handles {
            lat.extend(
                h.join()
                    .map_err(|_| anyhow::anyhow!("bench thread panicked"))??,
            );
        }
        Ok(())
    })?;
    let secs = start.elapsed().as_secs_f64();
    lat.sort();
    Ok((total as f64 / secs, lat))
}

/// The raw limits the service is built from, measured single-threaded in the same run:
/// sealing a record version (AES-256-GCM + HPKE wrap + staging the ciphertext), a durable
/// append (1 KiB + `fdatasync`), and an Ed25519 signature.
pub(crate) fn raw_limits(dir: &std::path::Path) -> Result<Value> {
    use carechain_vault::{BlobStore, EncryptionKey, PackBlobStore, RecordContext, Vault};
    use std::io::Write;
    let vault = Vault::new(
        PackBlobStore::open(&dir.join("raw-blobs"))?,
        EncryptionKey::from_seed(&[3; 32]),
    );
    let record = vec![b'x'; 1200];
    let n = 3000u64;
    let t = Instant::now();
    for v in 0..n {
        let ctx = RecordContext {
            patient: "Patient/p".into(),
            resource_type: "Observation".into(),
            resource_id: "o".into(),
            version: v,
        };
        vault.seal(&ctx, &record, &[])?;
    }
    let seal = n as f64 / t.elapsed().as_secs_f64();
    vault.blobs().sync()?;
    let mut f = std::fs::File::create(dir.join("raw-append"))?;
    let n = 300u32;
    let t = Instant::now();
    for _ in 0..n {
        f.write_all(&[7u8; 1024])?;
        f.sync_data()?;
    }
    let fsync = f64::from(n) / t.elapsed().as_secs_f64();
    let key = SecretKey::from_seed(&[5; 32]);
    let n = 20_000u32;
    let t = Instant::now();
    for i in 0..n {
        std::hint::black_box(key.sign(carechain_crypto::Namespace::Transaction, &i.to_le_bytes()));
    }
    let sign = f64::from(n) / t.elapsed().as_secs_f64();
    Ok(
        json!({"seal_per_s": seal.round(), "fdatasync_1k_per_s": fsync.round(), "ed25519_sign_per_s": sign.round()}),
    )
}

/// A node and its records service in `dir`, as `carechain up` runs them, with a hospital, its
/// practitioner (the session benchmarks act as) and one patient of theirs.
pub(crate) struct BenchService {
    pub node_key: SecretKey,
    pub hospital: SecretKey,
    pub node: Arc<Node>,
    pub svc: Arc<Service>,
    pub session: Session,
    pub purpose: Purpose,
    /// The patient's id.
    pub pid: String,
}

impl BenchService {
    /// Starts it; `tune` adds to the genesis (given the node key) before the chain is made.
    pub(crate) fn start(
        dir: &std::path::Path,
        chain_id: &str,
        tune: impl FnOnce(&mut Genesis, &SecretKey),
    ) -> Result<BenchService> {
        let (node_key, hospital, doc) = (
            SecretKey::generate()?,
            SecretKey::generate()?,
            SecretKey::generate()?,
        );
        let id = |k: &SecretKey, role, parent: Option<&SecretKey>| GenesisIdentity {
            key: k.public(),
            role,
            parent: parent.map(SecretKey::public),
        };
        let mut genesis = Genesis {
            token: Default::default(),
            contracts: Default::default(),
            chain_id: chain_id.into(),
            timestamp_ms: carechain_node::now_ms(),
            identities: vec![
                id(&node_key, Role::Validator, None),
                id(&hospital, Role::Organization, None),
                id(&doc, Role::Practitioner, Some(&hospital)),
            ],
        };
        tune(&mut genesis, &node_key);
        let store = Arc::new(Store::create(&dir.join("ledger.redb"), &genesis)?);
        // The node as `carechain up` runs it (blocks cut at once when none is being committed).
        let node = Node::start(store, node_key.clone(), NodeConfig::default())?;
        let svc = Service::open(
            node.clone(),
            node_key.clone(),
            &dir.join("records"),
            &[7; 32],
            "http://bench/auth/token",
            None,
        )
        .map_err(|e| anyhow::anyhow!(e.message))?;
        let session = Session {
            did: doc.public().did(),
            role: Role::Practitioner,
            organization: Some(hospital.public().did()),
            scopes: vec![Scope::parse("user/*.cruds").map_err(|e| anyhow::anyhow!("{e}"))?],
            expires_ms: u64::MAX,
            key: doc.public(),
            origin: Default::default(),
        };
        let purpose = Purpose::treatment();
        let patient = svc
            .write(
                &session,
                &purpose,
                "Patient",
                None,
                None,
                json!({"resourceType": "Patient", "name": [{"family": "Bench"}]}),
            )
            .map_err(fail)?;
        let pid = patient.id().to_string();
        Ok(BenchService {
            node_key,
            hospital,
            node,
            svc,
            session,
            purpose,
            pid,
        })
    }
}

pub fn run(
    (creates, reads, searches): (usize, usize, usize),
    (threads, read_threads): (usize, usize),
    bundles: usize,
    data: Option<PathBuf>,
) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let raw = raw_limits(dir.path())?;
    let BenchService {
        node,
        svc,
        session,
        purpose,
        pid,
        ..
    } = BenchService::start(dir.path(), "carechain-bench-fhir", |_, _| {})?;

    // Creates.
    let ids = parking_lot::Mutex::new(Vec::with_capacity(creates));
    let (create_rate, create_lat) = run_parallel(threads, creates, |i| {
        let obs = json!({"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": format!("Patient/{pid}")},
            "valueQuantity": {"value": 60 + (i % 40), "unit": "/min"}});
        let w = svc
            .write(&session, &purpose, "Observation", None, None, obs)
            .map_err(fail)?;
        ids.lock().push(
            w.resource
                .and_then(|r| r["id"].as_str().map(str::to_string))
                .unwrap_or_default(),
        );
        Ok(())
    })?;
    let ids = ids.into_inner();

    let t_drain = Instant::now();
    svc.flush_audit();
    let create_drain_ms = t_drain.elapsed().as_secs_f64() * 1000.0;

    // Consent-checked reads by id: answered once the audit event is queued, then the time
    // until the queue is written (so the sustained, fully audited rate is known too).
    let read = |i: usize| -> Result<()> {
        svc.read(&session, &purpose, "Observation", &ids[i % ids.len()], None)
            .map_err(fail)?;
        Ok(())
    };
    let t_reads = Instant::now();
    let (read_rate, read_lat) = run_parallel(read_threads, reads, read)?;
    svc.flush_audit();
    let read_audited_rate = reads as f64 / t_reads.elapsed().as_secs_f64();
    // The same with every answer waiting until its audit event is durable and anchored.
    svc.set_audit_durable(true);
    let (durable_rate, durable_lat) = run_parallel(threads, reads.min(4000), read)?;
    svc.set_audit_durable(false);

    // Transaction import of the Synthea benchmark bundles.
    let data = data.unwrap_or_else(|| PathBuf::from("../shared/data/fhir/synthea-r4-bench"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&data)
        .with_context(|| format!("{} (pass --data)", data.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files.truncate(bundles);
    let loaded: Vec<Value> = files
        .iter()
        .map(|f| Ok(serde_json::from_slice(&std::fs::read(f)?)?))
        .collect::<Result<_>>()?;
    let resources: usize = loaded
        .iter()
        .map(|b| b["entry"].as_array().map_or(0, Vec::len))
        .sum();
    let start = Instant::now();
    let patients = parking_lot::Mutex::new(Vec::new());
    let (_, bundle_lat) = run_parallel(threads.min(4), loaded.len(), |i| {
        let response = svc
            .bundle(&session, &purpose, loaded[i].clone())
            .map_err(fail)?;
        patients.lock().extend(
            response["entry"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e["response"]["location"].as_str())
                .filter_map(|l| l.strip_prefix("Patient/"))
                .filter_map(|l| l.split('/').next().map(str::to_string)),
        );
        Ok(())
    })?;
    let import_secs = start.elapsed().as_secs_f64();
    let mut patients = patients.into_inner();
    patients.sort();
    let searched = search_bench(&svc, &session, &purpose, &patients, searches, read_threads)?;
    svc.close();
    node.shutdown();
    out_line(&serde_json::to_string_pretty(&json!({
        "bench": "fhir",
        "threads": threads,
        "read_threads": read_threads,
        "create": {"count": creates, "per_s": create_rate.round(), "p50_ms": pct(&create_lat, 0.5), "p99_ms": pct(&create_lat, 0.99), "audit_drain_ms": create_drain_ms, "target": {"per_s": 4000, "p99_ms": 25}},
        "read_by_id": {"count": reads, "per_s": read_rate.round(), "p50_ms": pct(&read_lat, 0.5), "p99_ms": pct(&read_lat, 0.99), "per_s_until_audit_written": read_audited_rate.round(), "target": {"per_s": 15000, "p50_ms": 1, "p99_ms": 5}},
        "read_by_id_durable_audit": {"count": reads.min(4000), "per_s": durable_rate.round(), "p50_ms": pct(&durable_lat, 0.5), "p99_ms": pct(&durable_lat, 0.99)},
        "transaction_import": {"bundles": loaded.len(), "resources": resources, "seconds": import_secs, "resources_per_s": (resources as f64 / import_secs).round(), "bundle_p50_ms": pct(&bundle_lat, 0.5), "target": {"resources_per_s": 8000}},
        "search": searched,
        "raw_single_thread": raw,
        "ratios": {
            "create_to_seal": create_rate / raw["seal_per_s"].as_f64().unwrap_or(1.0),
            "create_to_fdatasync": create_rate / raw["fdatasync_1k_per_s"].as_f64().unwrap_or(1.0),
            "audited_read_to_seal": read_audited_rate / raw["seal_per_s"].as_f64().unwrap_or(1.0),
        },
        "note": "every create is durable and anchored before it is answered; every create and read queues an audit event, written and anchored in batches by the audit writer (read_by_id_durable_audit: answered only once it is durable)",
    }))?);
    Ok(())
}

/// Searches a clinician's EHR runs, each `count` times by `clients` concurrent clients over the
/// imported patients (consent-checked, audited, paged as over HTTP): p50/p95 latency, rate and
/// the mean number of matches (so that an empty search cannot pass for a fast one).
fn search_bench(
    svc: &Service,
    session: &Session,
    purpose: &Purpose,
    patients: &[String],
    count: usize,
    clients: usize,
) -> Result<Value> {
    if patients.is_empty() || count == 0 {
        return Ok(json!({}));
    }
    let families: Vec<String> = patients
        .iter()
        .map(|id| {
            let p = svc
                .read(session, purpose, "Patient", id, None)
                .map_err(fail)?;
            let family = p
                .resource
                .as_ref()
                .and_then(|r| r["name"][0]["family"].as_str());
            Ok(family.unwrap_or("x").to_string())
        })
        .collect::<Result<_>>()?;
    // (name, resource type, query with `{id}` and `{family}` of one imported patient).
    let kinds = [
        ("patient_by_name", "Patient", "name={family}"),
        (
            "observations_of_a_patient",
            "Observation",
            "subject=Patient/{id}&_count=50",
        ),
        (
            "vital_signs_since_2015_newest_first",
            "Observation",
            "subject=Patient/{id}&category=vital-signs&date=ge2015-01-01&_sort=-date&_count=20",
        ),
        (
            "conditions_by_patient_name_chained",
            "Condition",
            "subject:Patient.name={family}",
        ),
        (
            "encounters_with_their_conditions_revinclude",
            "Encounter",
            "subject=Patient/{id}&_count=10&_revinclude=Condition:encounter",
        ),
    ];
    let mut out = serde_json::Map::new();
    for (name, rt, query) in kinds {
        let matches = std::sync::atomic::AtomicU64::new(0);
        let (rate, lat) = run_parallel(clients, count, |i| {
            // Placeholders are filled after splitting, so a name is one value whatever it holds.
            let params: Vec<(String, String)> = query
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| {
                    let v = v
                        .replace("{id}", &patients[i % patients.len()])
                        .replace("{family}", &families[i % families.len()]);
                    (k.to_string(), v)
                })
                .collect();
            let bundle = svc
                .search(session, purpose, rt, &params, "http://bench/fhir")
                .map_err(fail)?;
            let n = bundle["entry"].as_array().map_or(0, Vec::len) as u64;
            matches.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        })?;
        out.insert(
            name.to_string(),
            json!({
                "count": count,
                "per_s": rate.round(),
                "p50_ms": pct(&lat, 0.5),
                "p95_ms": pct(&lat, 0.95),
                "mean_entries": matches.into_inner() as f64 / count as f64,
            }),
        );
    }
    Ok(Value::Object(out))
}
