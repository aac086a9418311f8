//! `carechain cluster`: a local validator cluster — `up` creates it if needed and runs one
//! `carechain up` process per validator on 127.0.0.1 until Ctrl-C / SIGTERM (then stops them
//! cleanly); `status` shows every validator's height, roots and the faults of others it saw;
//! `add-node` adds a node that governance can then make a validator.

use std::{
    fs,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use carechain_cluster::net::ClusterFile;
use clap::{Args, Subcommand};

use crate::{
    chain::{InitArgs, init, validator_dir},
    client::Client,
    demo::{CLUSTER_ORGS, DemoKeys, Who},
    out_line,
};

#[derive(Subcommand)]
pub enum ClusterCmd {
    /// Start a local cluster (created first if --data holds none); stops on Ctrl-C, and its
    /// validators stop whenever this command ends.
    Up(UpArgs),
    /// Height, head, state root and log root of every validator of a local cluster, with
    /// its mempool, the peers it is connected to and the faults of others it has seen.
    Status {
        /// The cluster directory.
        #[arg(long, default_value = "./carechain-cluster")]
        data: PathBuf,
    },
    /// Add a node directory (`vN`, a fresh key) to a local cluster, running or stopped: listed
    /// in every node's `cluster.json` (running validators read it again within a second), it
    /// follows the chain once started, until governance makes it a validator.
    AddNode {
        /// The cluster directory.
        #[arg(long, default_value = "./carechain-cluster")]
        data: PathBuf,
    },
}

#[derive(Args)]
pub struct UpArgs {
    /// The cluster directory (one data directory per validator: v0, v1, …).
    #[arg(long, default_value = "./carechain-cluster")]
    pub data: PathBuf,
    /// Validators to create (when the directory holds no cluster yet).
    #[arg(long, default_value_t = 4)]
    pub validators: usize,
    /// Chain id (when creating).
    #[arg(long, default_value = "carechain-cluster")]
    pub chain_id: String,
    /// First consensus p2p port (when creating).
    #[arg(long, default_value_t = 7100)]
    pub p2p_port: u16,
    /// First HTTP port (when creating).
    #[arg(long, default_value_t = 8081)]
    pub http_port: u16,
    /// A demo network (when creating): four organizations — City Hospital, Riverside Clinic,
    /// Acme Health Insurance, Corner Pharmacy — each running validator i, demo patients with
    /// records at the hospital, and one-click sign-ins at each node (never on a real network).
    #[arg(long)]
    pub demo: bool,
}

pub fn run(cmd: ClusterCmd) -> Result<()> {
    match cmd {
        ClusterCmd::Up(a) => up(a),
        ClusterCmd::Status { data } => status(&data),
        ClusterCmd::AddNode { data } => {
            let (dir, key) = crate::chain::add_node(&data, read_cluster(&data)?)?;
            let did = key.public().did();
            out_line(&format!("node {did} added in {}", dir.display()));
            out_line(&format!(
                "start it (`carechain up --data {}`; running validators connect to it within a \
                 second), then make it a validator: `carechain validator propose --key \
                 {}/v0/node.key --add {did} --url …` and approvals by two thirds of the validators",
                dir.display(),
                data.display()
            ));
            Ok(())
        }
    }
}

fn read_cluster(data: &std::path::Path) -> Result<ClusterFile> {
    let path = data.join("cluster.json");
    if !path.exists() {
        bail!(
            "{} holds no cluster: run `carechain cluster up --data {}`",
            data.display(),
            data.display()
        );
    }
    Ok(ClusterFile::read(&path)?)
}

fn up(a: UpArgs) -> Result<()> {
    let mut fresh_demo = false;
    if !a.data.join("cluster.json").exists() {
        if a.demo && a.validators != CLUSTER_ORGS.len() {
            bail!("the demo network has {} validators", CLUSTER_ORGS.len());
        }
        init(&InitArgs {
            data: a.data.clone(),
            chain_id: if a.demo {
                crate::demo::DEMO_CHAIN.into()
            } else {
                a.chain_id.clone()
            },
            identities: vec![],
            balances: vec![],
            tx_fee: 0,
            validators: a.validators,
            cluster: true,
            p2p_port: a.p2p_port,
            http_port: a.http_port,
        })?;
        if a.demo {
            demo_keys(&a.data)?;
            fresh_demo = true;
        }
    }
    let cluster = read_cluster(&a.data)?;
    let exe = std::env::current_exe().context("cannot find the carechain binary")?;
    let mut children: Vec<(usize, Child)> = Vec::new();
    for i in 0..cluster.validators.len() {
        let dir = validator_dir(&a.data, i);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("node.log"))
            .with_context(|| format!("cannot open {}/node.log", dir.display()))?;
        // The validator stops when this pipe closes: when this process ends, however it ends
        // (the kernel closes the write end), no validator is left running unsupervised.
        let child = Command::new(&exe)
            .arg("up")
            .arg("--data")
            .arg(&dir)
            .arg("--stop-when-stdin-closes")
            .args(a.demo.then_some("--demo"))
            .stdin(Stdio::piped())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start validator {i}"))?;
        children.push((i, child));
    }
    for (i, m) in cluster.validators.iter().enumerate() {
        out_line(&format!(
            "validator {i}: http://{}  p2p {}  pid {}  log {}",
            m.http,
            m.p2p,
            children[i].1.id(),
            validator_dir(&a.data, i).join("node.log").display()
        ));
    }
    // "Running" means answering: each validator's API is up (or it has exited, said above).
    let deadline = Instant::now() + Duration::from_secs(120);
    for (i, m) in cluster.validators.iter().enumerate() {
        let client = Client::new(&format!("http://{}", m.http));
        while client.get_json("/v1/status").is_err() {
            let exited = children
                .iter_mut()
                .find(|(j, _)| *j == i)
                .is_none_or(|(_, c)| !matches!(c.try_wait(), Ok(None)));
            if exited {
                out_line(&format!(
                    "validator {i} exited while starting; see {}",
                    validator_dir(&a.data, i).join("node.log").display()
                ));
                break;
            }
            if Instant::now() > deadline {
                out_line(&format!(
                    "validator {i} does not answer on http://{} yet",
                    m.http
                ));
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    if fresh_demo {
        load_demo(&a.data, &cluster)?;
    }
    out_line("cluster running; Ctrl-C stops every validator");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let signal = crate::up::shutdown_signal();
        tokio::pin!(signal);
        loop {
            tokio::select! {
                _ = &mut signal => break,
                _ = tick.tick() => children.retain_mut(|(i, c)| match c.try_wait() {
                    Ok(Some(status)) => {
                        out_line(&format!(
                            "validator {i} exited ({status}); restart it with `carechain up --data {}`",
                            validator_dir(&a.data, *i).display()
                        ));
                        false
                    }
                    _ => true,
                }),
            }
        }
    });
    out_line("stopping validators");
    for (_, c) in &children {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for (i, c) in children.iter_mut() {
        loop {
            match c.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => {
                    out_line(&format!("validator {i} did not stop in time; killing it"));
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
            }
        }
    }
    out_line("cluster stopped");
    Ok(())
}

/// The demo's keys: all under `demo-keys/`, and in each validator's own `demo-keys/` the
/// patients and the staff of the organization it serves (its one-click sign-ins).
fn demo_keys(root: &std::path::Path) -> Result<()> {
    let keys_dir = root.join("demo-keys");
    DemoKeys::create(&keys_dir, &Who::ALL)?;
    for (i, org) in CLUSTER_ORGS.iter().enumerate() {
        let dir = validator_dir(root, i).join("demo-keys");
        fs::create_dir_all(&dir)?;
        for w in Who::ALL {
            if w.role() == carechain_types::Role::Patient || w.organization() == Some(*org) {
                fs::copy(keys_dir.join(w.file()), dir.join(w.file()))?;
            }
        }
    }
    Ok(())
}

/// Loads the demo into the running cluster: identities and each organization's node on the
/// ledger, then the records, each at its organization's node (Alice's chart at City Hospital).
fn load_demo(root: &std::path::Path, cluster: &ClusterFile) -> Result<()> {
    let keys = DemoKeys::read(&root.join("demo-keys"))?;
    let operator = crate::keyfile::read(&root.join("operator.key"))?;
    let bases: Vec<String> = cluster
        .validators
        .iter()
        .map(|m| format!("http://{}", m.http))
        .collect();
    let mut nodes = Vec::new();
    for (i, org) in CLUSTER_ORGS.iter().enumerate() {
        let key = crate::keyfile::read(&validator_dir(root, i).join("node.key"))?;
        nodes.push((*org, key.public(), bases[i].clone()));
    }
    let client = Client::new(&bases[0]);
    let chain_id = client.get_json("/v1/status")?["chain_id"]
        .as_str()
        .context("status has no chain_id")?
        .to_string();
    crate::demo::submit_waves(
        &client,
        crate::demo::ledger_waves(&keys, &operator, &chain_id, &nodes, &nodes[0].1),
    )?;
    let pid = crate::demo::load_fhir_remote(&keys, &bases)?;
    out_line(&format!(
        "demo network loaded: Alice Demo (Patient/{pid}) has her chart at City Hospital ({}).",
        bases[0]
    ));
    for (i, org) in CLUSTER_ORGS.iter().enumerate() {
        out_line(&format!(
            "  {} runs validator {i}: {}",
            org.name(),
            bases[i]
        ));
    }
    out_line(&format!(
        "  sign in at Riverside Clinic ({}) as Dr. Okafor: Alice's records are refused until she \
         grants the clinic (`carechain consent grant --key {}/demo-keys/patient-alice.key --grantee {} \
         --purpose TREAT --url {}`); then they come from City Hospital's node.",
        bases[1],
        root.display(),
        keys.did(Who::Clinic),
        bases[1]
    ));
    Ok(())
}

fn status(data: &std::path::Path) -> Result<()> {
    let cluster = read_cluster(data)?;
    // The set voting at the next height, as the first node that answers tells it: a node of
    // the cluster file outside it (added, not yet approved, or removed) only follows.
    let current: Option<Vec<serde_json::Value>> = cluster.validators.iter().find_map(|m| {
        Client::new(&format!("http://{}", m.http))
            .get_json("/v1/validators")
            .ok()
            .and_then(|v| v["current"].as_array().cloned())
    });
    let mut rows = Vec::new();
    for (i, m) in cluster.validators.iter().enumerate() {
        let c = Client::new(&format!("http://{}", m.http));
        let voting = current
            .as_ref()
            .map(|set| set.contains(&serde_json::Value::from(m.did.as_str())));
        // How many consensus faults of others this node has seen (`GET /v1/evidence`).
        let evidence = c
            .get_json("/v1/evidence")
            .ok()
            .and_then(|v| v["evidence"].as_array().map(Vec::len));
        // How many peers its p2p layer is connected to (the engine's metrics).
        let peers = c.get_bytes("/metrics").ok().map(|m| {
            String::from_utf8_lossy(&m)
                .lines()
                .filter(|l| l.starts_with("network_tracker_directory_connected{"))
                .count()
        });
        let row = match c.get_json("/v1/status") {
            Ok(s) => serde_json::json!({
                "validator": i,
                "voting": voting,
                "did": m.did,
                "http": format!("http://{}", m.http),
                "height": s["height"],
                "head_hash": s["head_hash"],
                "state_root": s["state_root"],
                "log_size": s["log_size"],
                "log_root": s["log_root"],
                "mempool": s["mempool"],
                "peers_connected": peers,
                "evidence": evidence,
            }),
            Err(e) => serde_json::json!({
                "validator": i,
                "voting": voting,
                "did": m.did,
                "http": format!("http://{}", m.http),
                "down": e.to_string(),
            }),
        };
        rows.push(row);
    }
    out_line(&serde_json::to_string_pretty(
        &serde_json::json!({ "validators": rows }),
    )?);
    Ok(())
}
