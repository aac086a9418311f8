//! `carechain up`: run a node (optionally creating a demo chain with demo identities).

use std::{fs, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::{Context, Result};
use carechain_crypto::{SecretKey, sha256};
use carechain_node::{Node, NodeConfig};
use carechain_storage::Store;
use carechain_types::{Payload, Role, TxBody, encode};
use clap::Args;

use crate::{
    chain::{DataDir, InitArgs, init},
    keyfile, out_line,
};

#[derive(Args)]
pub struct UpArgs {
    /// The data directory (created with demo data if --demo is given and it holds no chain).
    #[arg(long, default_value = "./carechain-data")]
    pub data: PathBuf,
    /// Address to serve the API and explorer on (port 0 picks a free port). Default:
    /// 127.0.0.1:8080, or a validator's HTTP address in its `cluster.json`.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Create a demo chain with demo identities and records if the directory is empty.
    #[arg(long)]
    pub demo: bool,
    /// Cut a block at least this often (milliseconds) when transactions are pending (and at
    /// once when no block is being committed, unless --fixed-block-interval).
    #[arg(long, default_value_t = 20)]
    pub block_interval_ms: u64,
    /// Cut blocks only every --block-interval-ms (or when full), even when idle: fewer, larger
    /// blocks at the price of latency.
    #[arg(long)]
    pub fixed_block_interval: bool,
    /// Cut a block as soon as this many transactions are pending.
    #[arg(long, default_value_t = 8192)]
    pub max_block_txs: usize,
    /// Pending transactions beyond which submissions are refused as busy.
    #[arg(long, default_value_t = 200_000)]
    pub mempool_capacity: usize,
    /// Answer a FHIR interaction only once its audit event is durable and anchored (default:
    /// once it is queued; the queue is drained continuously and at shutdown).
    #[arg(long)]
    pub audit_durable: bool,
    /// Keep record ciphertexts in this S3-compatible bucket instead of the data directory
    /// (connection from the standard AWS_* environment: AWS_ENDPOINT, AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION, AWS_ALLOW_HTTP). The bucket must not keep
    /// object versions, or erased ciphertext survives.
    #[arg(long)]
    pub s3_bucket: Option<String>,
    /// Object key prefix in the bucket.
    #[arg(long, default_value = "carechain")]
    pub s3_prefix: String,
}

pub fn run(a: UpArgs) -> Result<()> {
    let dir = DataDir::new(&a.data);
    let mut fresh_demo = false;
    if !dir.exists() {
        if !a.demo {
            anyhow::bail!(
                "{} holds no chain: run `carechain init --data {}` first, or pass --demo",
                a.data.display(),
                a.data.display()
            );
        }
        init(&InitArgs {
            data: a.data.clone(),
            chain_id: "carechain-demo".into(),
            identities: vec![],
            validators: 1,
            p2p_port: 7100,
            http_port: 8081,
        })?;
        fresh_demo = true;
    }
    let store = Arc::new(Store::open(&dir.db())?);
    let key = keyfile::read(&dir.node_key())?;
    let config = NodeConfig {
        block_interval: Duration::from_millis(a.block_interval_ms.max(1)),
        fixed_interval: a.fixed_block_interval,
        max_block_txs: a.max_block_txs.clamp(1, carechain_types::MAX_BLOCK_TXS),
        mempool_capacity: a.mempool_capacity.max(1),
    };
    // A validator of a cluster: blocks are ordered by BFT consensus among the validators of
    // its cluster file; otherwise the node makes its own blocks.
    let cluster = if dir.cluster().exists() {
        Some(carechain_cluster::net::ClusterFile::read(&dir.cluster())?)
    } else {
        None
    };
    let (node, validator) = match &cluster {
        Some(c) => {
            let node = Node::start_external(store, key.clone(), config)?;
            let v = carechain_cluster::net::start(
                c,
                &key,
                node.clone(),
                &dir.consensus(),
                carechain_cluster::engine::ValidatorConfig {
                    partition: "carechain".into(),
                    max_block_txs: a.max_block_txs.clamp(1, carechain_types::MAX_BLOCK_TXS),
                    ..Default::default()
                },
            )?;
            out_line(&format!(
                "validator {} of {} (p2p {})",
                key.public().did(),
                c.validators.len(),
                c.member(&key.public())
                    .map(|m| m.p2p.to_string())
                    .unwrap_or_default()
            ));
            (node, Some(v))
        }
        None => (Node::start(store, key.clone(), config)?, None),
    };
    let listen = a
        .listen
        .or_else(|| cluster.as_ref()?.member(&key.public()).map(|m| m.http))
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
    if fresh_demo {
        load_demo(&node, &dir)?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener.local_addr()?;
        let seed = crate::chain::kek_seed(&dir)?;
        let blobs: Option<Box<dyn carechain_vault::BlobStore>> = match &a.s3_bucket {
            Some(bucket) => Some(Box::new(
                carechain_objectstore::S3BlobStore::from_env(bucket, &a.s3_prefix)
                    .with_context(|| format!("S3 bucket {bucket}"))?,
            )),
            None => None,
        };
        let service = carechain_service::Service::open(
            node.clone(),
            key.clone(),
            &dir.records(),
            &seed,
            &format!("http://{addr}/auth/token"),
            blobs,
        )
        .map_err(|e| anyhow::anyhow!("records service: {}", e.message))?;
        service.set_audit_durable(a.audit_durable);
        if fresh_demo {
            load_fhir_demo(&service, &dir)?;
        }
        out_line(&format!(
            "carechain node for chain {} at height {}",
            node.store().genesis().chain_id,
            node.store().head()
        ));
        out_line(&format!("listening on http://{addr}"));
        out_line(&format!(
            "checkpoint key: {}",
            node.ledger().checkpoint_verifier_key()
        ));
        let served =
            carechain_server::serve(node.clone(), service.clone(), listener, shutdown_signal())
                .await;
        // Every queued audit event is written before the ledger stops.
        let closing = service.clone();
        tokio::task::spawn_blocking(move || closing.close()).await?;
        served?;
        anyhow::Ok(())
    });
    if let Some(v) = validator {
        v.stop();
    }
    node.shutdown();
    out_line("node stopped");
    result
}

pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

/// Registers demo identities (keys written under `demo-keys/`) and anchors a few commitments.
fn load_demo(node: &Node, dir: &DataDir) -> Result<()> {
    let keys_dir = dir.root.join("demo-keys");
    fs::create_dir_all(&keys_dir)?;
    let operator = keyfile::read(&dir.operator_key())?;
    let make = |name: &str| -> Result<SecretKey> {
        let k = SecretKey::generate()?;
        keyfile::write(&keys_dir.join(format!("{name}.key")), &k)?;
        Ok(k)
    };
    let hospital = make("hospital")?;
    let clinician = make("clinician")?;
    let wearable = make("wearable")?;
    let alice = make("patient-alice")?;
    let bob = make("patient-bob")?;
    // A second organization, whose clinician sees nothing without the patient's consent.
    let clinic = make("clinic")?;
    let clinic_clinician = make("clinic-clinician")?;
    let chain_id = node.store().genesis().chain_id.clone();
    let tx = |k: &SecretKey, signer: &SecretKey, nonce: u64, payload: Payload| {
        encode(
            &TxBody {
                chain_id: chain_id.clone(),
                signer: signer.public(),
                nonce,
                payload,
            }
            .sign(k),
        )
    };
    let reg = |s: &SecretKey, role: Role, parent: Option<&SecretKey>| Payload::Register {
        subject: s.public(),
        role,
        parent: parent.map(SecretKey::public),
    };
    let waves: Vec<Vec<Vec<u8>>> = vec![
        vec![
            tx(
                &operator,
                &operator,
                0,
                reg(&hospital, Role::Organization, None),
            ),
            tx(
                &operator,
                &operator,
                1,
                reg(&clinic, Role::Organization, None),
            ),
            tx(&alice, &alice, 0, reg(&alice, Role::Patient, None)),
            tx(&bob, &bob, 0, reg(&bob, Role::Patient, None)),
        ],
        vec![
            tx(
                &hospital,
                &hospital,
                0,
                reg(&clinician, Role::Practitioner, Some(&hospital)),
            ),
            tx(
                &hospital,
                &hospital,
                1,
                reg(&wearable, Role::Device, Some(&hospital)),
            ),
            tx(
                &clinic,
                &clinic,
                0,
                reg(&clinic_clinician, Role::Practitioner, Some(&clinic)),
            ),
        ],
        (0..5u64)
            .map(|i| {
                tx(
                    &hospital,
                    &hospital,
                    2 + i,
                    Payload::Anchor {
                        kind: "demo/record-version".into(),
                        commitment: sha256(format!("demo commitment {i}").as_bytes()),
                    },
                )
            })
            .collect(),
    ];
    for wave in waves {
        let mut rx = node.subscribe();
        let target = node.store().head() + 1;
        for r in node.submit_batch(wave) {
            r.map_err(|e| anyhow::anyhow!("demo transaction refused: {e}"))?;
        }
        // Wait for the block holding this wave before the next one (nonces and parents).
        while *rx.borrow_and_update() < target {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()?;
            rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(10), rx.changed()).await
            })
            .context("demo block was not committed in time")??;
        }
    }
    out_line(&format!(
        "demo data loaded; demo keys in {}",
        keys_dir.display()
    ));
    Ok(())
}

/// Demo records: Alice's Patient resource and a few vital signs written by the demo clinician.
fn load_fhir_demo(service: &carechain_service::Service, dir: &DataDir) -> Result<()> {
    use carechain_service::{Purpose, Scope, Session};
    use serde_json::json;
    let keys = dir.root.join("demo-keys");
    let alice = keyfile::read(&keys.join("patient-alice.key"))?;
    let clinician = keyfile::read(&keys.join("clinician.key"))?;
    let hospital = keyfile::read(&keys.join("hospital.key"))?;
    let all = vec![Scope::parse("user/*.cruds").map_err(|e| anyhow::anyhow!("{e}"))?];
    let session = |k: &SecretKey, role: Role, org: Option<&SecretKey>| Session {
        did: k.public().did(),
        role,
        organization: org.map(|o| o.public().did()),
        scopes: all.clone(),
        expires_ms: u64::MAX,
    };
    let purpose = Purpose {
        code: "TREAT".into(),
        break_glass_reason: None,
    };
    let fail =
        |e: carechain_service::ServiceError| anyhow::anyhow!("demo record refused: {}", e.message);
    let patient = json!({
        "resourceType": "Patient",
        "identifier": [{"system": "urn:ietf:rfc:3986", "value": alice.public().did().to_string()}],
        "name": [{"family": "Demo", "given": ["Alice"]}],
        "gender": "female",
        "birthDate": "1985-06-15"
    });
    let p = service
        .write(
            &session(&alice, Role::Patient, None),
            &purpose,
            "Patient",
            None,
            None,
            patient,
        )
        .map_err(fail)?;
    let pid = p
        .resource
        .as_ref()
        .and_then(|r| r["id"].as_str())
        .unwrap_or_default()
        .to_string();
    let doc = session(&clinician, Role::Practitioner, Some(&hospital));
    for (i, bpm) in [72, 68, 75].iter().enumerate() {
        let obs = json!({
            "resourceType": "Observation",
            "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
            "subject": {"reference": format!("Patient/{pid}")},
            "effectiveDateTime": format!("2026-11-0{}T09:00:00Z", i + 1),
            "valueQuantity": {"value": bpm, "unit": "beats/minute", "system": "http://unitsofmeasure.org", "code": "/min"}
        });
        service
            .write(&doc, &purpose, "Observation", None, None, obs)
            .map_err(fail)?;
    }
    out_line(&format!(
        "demo records loaded: Patient/{pid} (Alice) with 3 observations"
    ));
    Ok(())
}
