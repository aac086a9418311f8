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
    /// Create a demo chain with demo identities and records if the directory is empty, and
    /// offer one-click demo sign-in in the web UI (never use on a real node).
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
    /// Stop (as on Ctrl-C) when standard input reaches its end. `cluster up` starts each
    /// validator with a pipe it holds open, so validators stop cleanly whenever their
    /// supervisor goes, however it goes (killed, crashed, its terminal closed).
    #[arg(long, hide = true)]
    pub stop_when_stdin_closes: bool,
    /// A `host:port` the node answers to (the `Host` header; repeatable), e.g. the name a
    /// proxy serves it under. Default: the listen address (and `localhost` at its port when
    /// it is a loopback address); listening on all interfaces needs at least one.
    #[arg(long = "allowed-host")]
    pub allowed_hosts: Vec<String>,
}

/// The chain id of the chain `up --demo` creates.
const DEMO_CHAIN: &str = "carechain-demo";

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
            chain_id: DEMO_CHAIN.into(),
            identities: vec![],
            validators: 1,
            cluster: false,
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
                Some(&dir.cluster()),
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
    let watch_stdin = a.stop_when_stdin_closes;
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
        // One-click sign-in only on the demo chain: `--demo` given to a real chain's node
        // must not offer its operator key to anyone who opens the page.
        let demo_chain = node.store().genesis().chain_id == DEMO_CHAIN;
        let allowed_hosts = if a.allowed_hosts.is_empty() {
            if addr.ip().is_unspecified() {
                anyhow::bail!(
                    "listening on all interfaces ({addr}): name the hosts this node answers to with --allowed-host"
                );
            }
            carechain_server::default_allowed_hosts(addr)
        } else {
            a.allowed_hosts.iter().map(|h| h.to_ascii_lowercase()).collect()
        };
        let ui = carechain_server::UiOptions {
            demo_logins: if a.demo && demo_chain {
                demo_logins(&dir)?
            } else {
                Vec::new()
            },
            allowed_hosts,
        };
        let served =
            carechain_server::serve(node.clone(), service.clone(), listener, ui, async move {
                tokio::select! {
                    _ = shutdown_signal() => {}
                    _ = stdin_closed(watch_stdin) => {
                        out_line("standard input closed: stopping");
                    }
                }
            })
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

/// Resolves when standard input reaches its end (or fails), if `watch`; never otherwise.
async fn stdin_closed(watch: bool) {
    if !watch {
        return std::future::pending().await;
    }
    // A plain thread, not the runtime's blocking pool: a read that never returns must not
    // hold up the runtime's shutdown.
    let (closed, when) = tokio::sync::oneshot::channel::<()>();
    let reader = std::thread::Builder::new()
        .name("stdin-watch".into())
        .spawn(move || {
            use std::io::Read;
            let mut sink = [0u8; 256];
            let mut stdin = std::io::stdin().lock();
            while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
            let _ = closed.send(());
        });
    if reader.is_err() || when.await.is_err() {
        std::future::pending::<()>().await;
    }
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

/// The demo's sign-ins for the web UI (demo mode only): each demo identity whose key is in
/// `demo-keys/`, and the operator.
fn demo_logins(dir: &DataDir) -> Result<Vec<carechain_server::DemoLogin>> {
    let keys = dir.root.join("demo-keys");
    let mut out = Vec::new();
    for (file, label) in [
        ("patient-alice.key", "Alice Demo — patient"),
        ("patient-bob.key", "Bob Demo — patient"),
        (
            "clinician.key",
            "Dr. Carol Reyes, City Hospital — clinician",
        ),
        (
            "clinic-clinician.key",
            "Dr. Dan Okafor, Riverside Clinic — clinician",
        ),
    ] {
        let path = keys.join(file);
        if path.exists() {
            out.push(carechain_server::DemoLogin {
                label: label.into(),
                key: keyfile::read(&path)?,
            });
        }
    }
    if dir.operator_key().exists() {
        out.push(carechain_server::DemoLogin {
            label: "Operator".into(),
            key: keyfile::read(&dir.operator_key())?,
        });
    }
    Ok(out)
}

/// Demo records: the two organizations and their clinicians (directory entries naming their
/// dids), Alice's and Bob's Patient resources, Alice's chart written by City Hospital
/// (encounters, conditions, vitals and labs over months, a medication, an immunization), and
/// Alice's consent letting City Hospital treat her. Riverside Clinic sees nothing of Alice
/// until she grants it.
fn load_fhir_demo(service: &carechain_service::Service, dir: &DataDir) -> Result<()> {
    use carechain_service::{Purpose, Scope, Session};
    use serde_json::{Value, json};
    let keys = dir.root.join("demo-keys");
    let k = |f: &str| keyfile::read(&keys.join(f));
    let (alice, bob) = (k("patient-alice.key")?, k("patient-bob.key")?);
    let (hospital, clinician) = (k("hospital.key")?, k("clinician.key")?);
    let (clinic, clinic_doc) = (k("clinic.key")?, k("clinic-clinician.key")?);
    let all = vec![Scope::parse("user/*.cruds").map_err(|e| anyhow::anyhow!("{e}"))?];
    let session = |k: &SecretKey, role: Role, org: Option<&SecretKey>| Session {
        did: k.public().did(),
        role,
        organization: org.map(|o| o.public().did()),
        scopes: all.clone(),
        expires_ms: u64::MAX,
        key: k.public(),
    };
    let purpose = Purpose {
        code: "TREAT".into(),
        break_glass_reason: None,
    };
    let did_id = |k: &SecretKey| json!([{"system": "urn:ietf:rfc:3986", "value": k.public().did().to_string()}]);
    let write = |s: &Session, v: Value| -> Result<String> {
        let rt = v["resourceType"].as_str().unwrap_or_default().to_string();
        let r = service
            .write(s, &purpose, &rt, None, None, v)
            .map_err(|e| anyhow::anyhow!("demo {rt} refused: {}", e.message))?;
        Ok(r.resource
            .as_ref()
            .and_then(|r| r["id"].as_str())
            .unwrap_or_default()
            .to_string())
    };
    let org = |k: &SecretKey| session(k, Role::Organization, Some(k));
    write(
        &org(&hospital),
        json!({"resourceType": "Organization", "identifier": did_id(&hospital), "name": "City Hospital", "active": true}),
    )?;
    write(
        &org(&clinic),
        json!({"resourceType": "Organization", "identifier": did_id(&clinic), "name": "Riverside Clinic", "active": true}),
    )?;
    write(
        &org(&hospital),
        json!({"resourceType": "Practitioner", "identifier": did_id(&clinician), "active": true, "name": [{"prefix": ["Dr."], "given": ["Carol"], "family": "Reyes"}]}),
    )?;
    write(
        &org(&clinic),
        json!({"resourceType": "Practitioner", "identifier": did_id(&clinic_doc), "active": true, "name": [{"prefix": ["Dr."], "given": ["Dan"], "family": "Okafor"}]}),
    )?;
    let pid = write(
        &session(&alice, Role::Patient, None),
        json!({"resourceType": "Patient", "identifier": did_id(&alice),
            "name": [{"family": "Demo", "given": ["Alice"]}], "gender": "female", "birthDate": "1985-06-15"}),
    )?;
    write(
        &session(&bob, Role::Patient, None),
        json!({"resourceType": "Patient", "identifier": did_id(&bob),
            "name": [{"family": "Demo", "given": ["Bob"]}], "gender": "male", "birthDate": "1979-02-03"}),
    )?;
    // Alice lets City Hospital treat her (it sees its own records anyway; this adds her
    // demographics and anything others wrote).
    write(
        &session(&alice, Role::Patient, None),
        json!({"resourceType": "Consent", "status": "active",
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": {"reference": format!("Patient/{pid}")},
            "dateTime": "2026-01-05T09:00:00Z",
            "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
            "provision": {"type": "permit",
                "actor": [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
                    "reference": {"identifier": {"system": "urn:ietf:rfc:3986", "value": hospital.public().did().to_string()}, "display": "City Hospital"}}],
                "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "TREAT"}]}}),
    )?;
    let doc = session(&clinician, Role::Practitioner, Some(&hospital));
    let subject = json!({"reference": format!("Patient/{pid}")});
    let loinc = |code: &str, display: &str| json!({"coding": [{"system": "http://loinc.org", "code": code, "display": display}], "text": display});
    let vital = |cat: &str| json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": cat}]}]);
    let qty = |v: f64, unit: &str, code: &str| json!({"value": v, "unit": unit, "system": "http://unitsofmeasure.org", "code": code});
    let dates = [
        "2026-03-10",
        "2026-05-12",
        "2026-07-14",
        "2026-09-08",
        "2026-10-20",
        "2026-11-02",
    ];
    for (i, d) in dates.iter().enumerate() {
        let at = format!("{d}T09:00:00Z");
        write(
            &doc,
            json!({"resourceType": "Observation", "status": "final", "category": vital("vital-signs"),
            "code": loinc("8867-4", "Heart rate"), "subject": subject, "effectiveDateTime": at,
            "valueQuantity": qty([74.0, 71.0, 69.0, 72.0, 68.0, 66.0][i], "beats/minute", "/min")}),
        )?;
        write(
            &doc,
            json!({"resourceType": "Observation", "status": "final", "category": vital("vital-signs"),
            "code": loinc("85354-9", "Blood pressure"), "subject": subject, "effectiveDateTime": at,
            "component": [
                {"code": loinc("8480-6", "Systolic blood pressure"), "valueQuantity": qty([148.0, 142.0, 138.0, 134.0, 131.0, 128.0][i], "mmHg", "mm[Hg]")},
                {"code": loinc("8462-4", "Diastolic blood pressure"), "valueQuantity": qty([94.0, 91.0, 88.0, 86.0, 84.0, 82.0][i], "mmHg", "mm[Hg]")}]}),
        )?;
        write(
            &doc,
            json!({"resourceType": "Observation", "status": "final", "category": vital("vital-signs"),
            "code": loinc("29463-7", "Body weight"), "subject": subject, "effectiveDateTime": at,
            "valueQuantity": qty([82.0, 81.2, 80.1, 79.5, 78.8, 78.1][i], "kg", "kg")}),
        )?;
        if i % 2 == 0 {
            write(
                &doc,
                json!({"resourceType": "Observation", "status": "final", "category": vital("laboratory"),
                "code": loinc("4548-4", "Hemoglobin A1c"), "subject": subject, "effectiveDateTime": at,
                "valueQuantity": qty([6.1, 5.9, 5.7][i / 2], "%", "%")}),
            )?;
            write(
                &doc,
                json!({"resourceType": "Encounter", "status": "finished",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory"},
                "type": [{"coding": [{"system": "http://snomed.info/sct", "code": "185349003", "display": "Encounter for check up"}], "text": "Check-up"}],
                "subject": subject, "period": {"start": at, "end": format!("{d}T09:30:00Z")}}),
            )?;
        }
    }
    let clinical = |code: &str| json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": code}]});
    write(
        &doc,
        json!({"resourceType": "Condition", "clinicalStatus": clinical("active"),
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "38341003", "display": "Hypertension"}], "text": "Hypertension"},
        "subject": subject, "onsetDateTime": "2026-03-10T09:00:00Z"}),
    )?;
    write(
        &doc,
        json!({"resourceType": "Condition", "clinicalStatus": clinical("resolved"),
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "714628002", "display": "Prediabetes"}], "text": "Prediabetes"},
        "subject": subject, "onsetDateTime": "2026-03-10T09:00:00Z"}),
    )?;
    write(
        &doc,
        json!({"resourceType": "MedicationRequest", "status": "active", "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "314076", "display": "lisinopril 10 MG Oral Tablet"}], "text": "Lisinopril 10 mg tablet"},
        "subject": subject, "authoredOn": "2026-03-10T09:20:00Z"}),
    )?;
    write(
        &doc,
        json!({"resourceType": "Immunization", "status": "completed",
        "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "140", "display": "Influenza, seasonal, injectable, preservative free"}], "text": "Influenza vaccine"},
        "patient": subject, "occurrenceDateTime": "2026-10-20T09:15:00Z"}),
    )?;
    out_line(&format!(
        "demo records loaded: Patient/{pid} (Alice Demo) with her chart from City Hospital; Bob Demo; sign in at / with the demo buttons"
    ));
    Ok(())
}
