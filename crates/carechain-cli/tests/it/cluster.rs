//! A 4-validator cluster of real `carechain up` processes on loopback: transactions sent to
//! any validator finalize on all; one validator SIGKILLed under load, the rest keep
//! finalizing; restarted, it catches up; no acknowledged transaction is lost and every
//! validator ends with the same head, state root and log root.

use std::{
    net::TcpListener,
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use carechain_crypto::{Hash, SecretKey};
use serde_json::Value;

use crate::common::*;

/// A base port with `n` free consecutive ports for p2p and `n` more for HTTP after it, below
/// the kernel's ephemeral range (32768–60999), so that no outgoing connection of a parallel
/// test takes one while a validator is down. Ports 12000–31999 are cut into slots of 32 and
/// a test process starts at the slot of its process id: tests running side by side (nextest
/// gives each its own process, their ids close together) get disjoint ranges, since a range
/// found free is released again before the validators bind it.
pub fn free_ports(n: u16) -> u16 {
    const SLOT: u32 = 32;
    assert!(u32::from(2 * n) <= SLOT);
    let seed = std::process::id();
    for attempt in 0..200u32 {
        let slot = (seed + attempt * 97) % (20_000 / SLOT);
        let base = (12_000 + slot * SLOT) as u16;
        let ok = (0..2 * n).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok());
        if ok {
            return base;
        }
    }
    panic!("no free ports");
}

fn init_cluster(dir: &Path, n: u16, orgs: &[SecretKey]) {
    let base = free_ports(n);
    let (p2p, http) = (base.to_string(), (base + n).to_string());
    let mut args = vec![
        "init".to_string(),
        "--data".into(),
        dir.to_str().unwrap().into(),
        "--chain-id".into(),
        "test-chain".into(),
        "--validators".into(),
        n.to_string(),
        // A cluster directory even for n = 1 (a one-validator network).
        "--cluster".into(),
        "--p2p-port".into(),
        p2p,
        "--http-port".into(),
        http,
    ];
    for k in orgs {
        args.push("--identity".into());
        args.push(format!("organization={}", k.public().did()));
    }
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    carechain_ok(&a);
}

fn status(url: &str) -> Value {
    get(&format!("{url}/v1/status")).1
}

/// Waits until every node reports the same height (and returns it), the chain being idle.
fn settle(urls: &[String]) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s: Vec<Value> = urls.iter().map(|u| status(u)).collect();
        let same = s
            .iter()
            .all(|v| v["height"] == s[0]["height"] && v["head_hash"] == s[0]["head_hash"]);
        if same && s[0]["mempool"] == 0 {
            for v in &s {
                assert_eq!(v["state_root"], s[0]["state_root"]);
                assert_eq!(v["log_root"], s[0]["log_root"]);
                assert_eq!(v["log_size"], s[0]["log_size"]);
            }
            return s[0]["height"].as_u64().unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "validators did not converge: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn cluster_survives_a_sigkilled_validator_which_then_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let signers: Vec<_> = (20..24).map(key).collect();
    init_cluster(dir.path(), 4, &signers);
    let vdir = |i: usize| dir.path().join(format!("v{i}"));
    let mut nodes: Vec<NodeProc> = (0..4).map(|i| NodeProc::start(&vdir(i), &[])).collect();
    let urls: Vec<String> = nodes.iter().map(|n| n.url.clone()).collect();

    let acked: Arc<Mutex<Vec<Hash>>> = Arc::default();
    let (ack_tx, ack_rx) = std::sync::mpsc::channel::<()>();
    let stop = Arc::new(AtomicBool::new(false));
    // Client i sends to validator i; each waits for its transaction to be final there.
    let clients: Vec<_> = signers
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, k)| {
            let (acked, stop, ack_tx) = (acked.clone(), stop.clone(), ack_tx.clone());
            let url = format!("{}/v1/txs", urls[i]);
            std::thread::spawn(move || {
                for nonce in 0u64.. {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let tx = anchor(&k, nonce, nonce);
                    let Ok(mut r) = agent()
                        .post(&url)
                        .header("content-type", "application/octet-stream")
                        .send(&raw(&tx)[..])
                    else {
                        break;
                    };
                    let v: Value =
                        serde_json::from_slice(&r.body_mut().read_to_vec().unwrap_or_default())
                            .unwrap_or_default();
                    if r.status().as_u16() == 200 && v["status"] == "committed" {
                        acked.lock().unwrap().push(tx.hash());
                        let _ = ack_tx.send(());
                    } else {
                        break;
                    }
                }
            })
        })
        .collect();
    for _ in 0..120 {
        ack_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("transactions finalize on the cluster");
    }
    // SIGKILL validator 3 under load; the other three (a quorum) keep finalizing.
    nodes[3].kill9();
    let before = acked.lock().unwrap().len();
    while acked.lock().unwrap().len() < before + 120 {
        ack_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the cluster keeps finalizing with one validator down");
    }
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().unwrap();
    }
    let live: Vec<String> = urls[..3].to_vec();
    let height_without = settle(&live);

    // Restarted, validator 3 fetches what it missed, re-executes it and catches up.
    nodes[3] = NodeProc::start(&vdir(3), &[]);
    let mut urls = urls;
    urls[3] = nodes[3].url.clone();
    let height = settle(&urls);
    assert!(height >= height_without);
    let acked = acked.lock().unwrap().clone();
    for url in &urls {
        for h in &acked {
            let (s, v) = get(&format!("{url}/v1/txs/{}", h.to_hex()));
            assert_eq!(
                (s, v["status"].as_str()),
                (200, Some("committed")),
                "acknowledged tx {h} missing on {url}"
            );
        }
    }
    // And it takes part again: a transaction sent to it finalizes everywhere.
    let (s, v) = post_raw(
        &format!("{}/v1/txs", urls[3]),
        &raw(&anchor(&key(30), 0, 0)),
    );
    assert_eq!((s, v["code"].as_str()), (422, Some("unknown_signer")));
    let next = signers[0].clone();
    let (s, v) = get(&format!(
        "{}/v1/identities/{}",
        urls[3],
        next.public().did()
    ));
    assert_eq!(s, 200, "{v}");
    let n = v["next_nonce"].as_u64().unwrap();
    let (s, v) = post_raw(
        &format!("{}/v1/txs", urls[3]),
        &raw(&anchor(&next, n, 1_000_000)),
    );
    assert_eq!((s, v["status"].as_str()), (200, Some("committed")), "{v}");
    settle(&urls);
    // Finality for clients: the checkpoint is cosigned by at least 3 of the 4 validators.
    let out = carechain_ok(&["verify", "--url", &urls[1], "--cosigned"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], true, "{out}");
    assert!(
        v["cosigned"]["cosigners"].as_array().unwrap().len() >= 3,
        "{out}"
    );
    assert_eq!(v["cosigned"]["quorum"], 3);
    // The web explorer shows the validator set and the checkpoint's signatures: the node's
    // own and at least a quorum of validators' cosignatures.
    let (s, html) = get_text(&format!("{}/explorer", urls[1]));
    assert_eq!(s, 200);
    assert!(html.contains("4 validator(s)"), "{html}");
    let signatures: usize = html
        .split_once("Latest checkpoint with its signatures (")
        .and_then(|(_, rest)| rest.split_once(')'))
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("no signature count in the explorer: {html}"));
    assert!(signatures >= 4, "{signatures} signatures: {html}");
    for n in &mut nodes {
        n.stop();
    }
    let out = carechain_ok(&["verify", "--data", vdir(3).to_str().unwrap()]);
    assert!(out.contains("\"ok\": true"), "{out}");
}

/// A cluster directory for governance tests: `n` validators and one organization, whose
/// anchors `send` submits in nonce order, each waited for until committed.
struct Governed {
    dir: tempfile::TempDir,
    signer: SecretKey,
    nonce: u64,
}

impl Governed {
    fn init(n: u16, signer: SecretKey) -> Governed {
        let dir = tempfile::tempdir().unwrap();
        init_cluster(dir.path(), n, std::slice::from_ref(&signer));
        Governed {
            dir,
            signer,
            nonce: 0,
        }
    }

    fn root(&self) -> &str {
        self.dir.path().to_str().unwrap()
    }

    fn vdir(&self, i: usize) -> std::path::PathBuf {
        self.dir.path().join(format!("v{i}"))
    }

    fn send(&mut self, url: &str) {
        let tx = anchor(&self.signer, self.nonce, self.nonce);
        let (s, v) = post_raw(&format!("{url}/v1/txs"), &raw(&tx));
        assert_eq!((s, v["status"].as_str()), (200, Some("committed")), "{v}");
        self.nonce += 1;
    }
}

/// `cluster add-node` on the cluster at `root`: the new node's did.
fn add_node(root: &str) -> String {
    let out = carechain_ok(&["cluster", "add-node", "--data", root]);
    out.split_whitespace()
        .find(|w| w.starts_with("did:key:"))
        .unwrap_or_else(|| panic!("no did in: {out}"))
        .to_string()
}

/// Validator 0 proposes adding `did` from height `at`; the validators `approvers` approve,
/// each through its own node (`urls[i]` is validator i's API).
fn propose_validator(g: &Governed, urls: &[String], did: &str, at: u64, approvers: &[usize]) {
    let node_key = |i: usize| g.vdir(i).join("node.key").to_str().unwrap().to_string();
    let out = carechain_ok(&[
        "validator",
        "propose",
        "--key",
        &node_key(0),
        "--add",
        did,
        "--at",
        &at.to_string(),
        "--url",
        &urls[0],
    ]);
    assert!(out.contains("\"applied\""), "{out}");
    let added: carechain_crypto::Did = did.parse().unwrap();
    let id = carechain_types::proposal_id(
        &carechain_types::GovernanceChange::AddValidator {
            key: added.public_key(),
        },
        at,
    );
    for &i in approvers {
        let out = carechain_ok(&[
            "validator",
            "approve",
            "--key",
            &node_key(i),
            &id.to_hex(),
            "--url",
            &urls[i],
        ]);
        assert!(out.contains("\"applied\""), "{out}");
    }
}

/// A block header of `height` sealed by `key`, followed by its seal: the proof of an
/// `invalid_proposal` fault.
fn sealed_header(key: &SecretKey, height: u64) -> Vec<u8> {
    let h = carechain_crypto::sha256(b"any");
    let header = carechain_types::Header {
        version: carechain_types::FORMAT_VERSION,
        chain_id: "test-chain".into(),
        height,
        parent: h,
        timestamp_ms: 1,
        proposer: key.public(),
        tx_count: 0,
        tx_root: h,
        receipts_root: h,
        state_root: h,
        log_size: 0,
        log_root: h,
    };
    let block = carechain_types::Block::seal(header, Vec::new(), key);
    carechain_cluster::evidence::invalid_proposal_proof(&block)
}

#[test]
fn a_one_validator_network_finalizes_alone_and_grows_into_two_by_governance() {
    let mut g = Governed::init(1, key(41));
    // Evidence of a fault this validator observed before a restart (a line of its evidence
    // file) is shown by its API once it runs again.
    let offender = key(42).public().did().to_string();
    std::fs::write(
        g.vdir(0).join("evidence"),
        format!("conflicting_notarize 0 7 2 {offender} 0a0b\n"),
    )
    .unwrap();
    let mut nodes = vec![NodeProc::start(&g.vdir(0), &[])];
    let mut urls = vec![nodes[0].url.clone()];
    let (code, ev) = get(&format!("{}/v1/evidence", urls[0]));
    assert_eq!(code, 200, "{ev}");
    assert_eq!(
        ev["evidence"],
        serde_json::json!([{"epoch": 0, "view": 7, "offender": offender,
            "kind": "conflicting_notarize", "proof": "0a0b"}])
    );
    // Alone it is the whole quorum: each transaction is final when answered, and its
    // checkpoints are cosigned by 1 of 1.
    for _ in 0..5 {
        g.send(&urls[0]);
    }
    assert_eq!(settle(&urls), 5);
    let out = carechain_ok(&["verify", "--url", &urls[0], "--cosigned"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["ok"].clone(), v["cosigned"]["quorum"].clone()),
        (Value::from(true), Value::from(1)),
        "{out}"
    );

    // A second node joins and follows; governance by the one validator (1 of 1 approvals)
    // makes it a validator from the next epoch.
    let did = add_node(g.root());
    // The newcomer starts with evidence it holds (its evidence file) that validator 0 sealed
    // a header in epoch 1: a true proof, whatever the header says.
    let v0_key = {
        let kf: Value =
            serde_json::from_str(&std::fs::read_to_string(g.vdir(0).join("node.key")).unwrap())
                .unwrap();
        let seed = hex::decode(kf["secret_key"].as_str().unwrap()).unwrap();
        SecretKey::from_seed_slice(&seed).unwrap()
    };
    let sealed = sealed_header(&v0_key, carechain_types::EPOCH_LENGTH + 3);
    std::fs::write(
        g.vdir(1).join("evidence"),
        format!(
            "invalid_proposal 1 3 0 {} {}\n",
            v0_key.public().did(),
            hex::encode(&sealed)
        ),
    )
    .unwrap();
    nodes.push(NodeProc::start(&g.vdir(1), &[]));
    urls.push(nodes[1].url.clone());
    settle(&urls);
    let at = carechain_types::EPOCH_LENGTH;
    propose_validator(&g, &urls, &did, at, &[]);
    let mut to = 0;
    while status(&urls[0])["height"].as_u64().unwrap() < at + 8 {
        g.send(&urls[to % 2]);
        to += 1;
    }
    let head = settle(&urls);
    assert_eq!(
        get(&format!("{}/v1/evidence", urls[1])).1["evidence"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    assert_eq!(
        status(&urls[1])["validators"].as_array().unwrap().len(),
        2,
        "{}",
        status(&urls[1])
    );
    let proposer =
        |h: u64| get(&format!("{}/v1/blocks/{h}", urls[0])).1["header"]["proposer"].clone();
    assert!(
        (at..=head).any(|h| proposer(h) == did.as_str()),
        "the new validator led no block of its epoch"
    );
    // An auditor checks each node's evidence against the validator sets of the chain it
    // re-executes: the newcomer's proof holds (validator 0 is of epoch 1's set, and sealed
    // that header); validator 0's line from the start is no proof at all.
    let out = carechain_ok(&["verify", "--url", &urls[1], "--evidence"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["evidence"]["proven"][0]["offender"],
        v0_key.public().did().to_string(),
        "{out}"
    );
    let refused = carechain(&["verify", "--url", &urls[0], "--evidence"]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("does not hold") && err.contains(&offender),
        "{err}"
    );
    // Two validators need both votes: checkpoints are cosigned by 2 of 2.
    let out = carechain_ok(&["verify", "--url", &urls[1], "--cosigned"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (
            v["ok"].clone(),
            v["cosigned"]["quorum"].clone(),
            v["cosigned"]["of"].clone()
        ),
        (Value::from(true), Value::from(2), Value::from(2)),
        "{out}"
    );
    for n in &mut nodes {
        n.stop();
    }
}

#[test]
fn a_node_added_to_the_cluster_becomes_a_validator_by_governance_and_is_needed_for_the_quorum() {
    let mut g = Governed::init(4, key(40));
    // The node is added while the four validators run: they read their cluster files again
    // and let it in, without a restart.
    let mut nodes: Vec<NodeProc> = (0..4).map(|i| NodeProc::start(&g.vdir(i), &[])).collect();
    let mut urls: Vec<String> = nodes.iter().map(|n| n.url.clone()).collect();
    // (The first block of a cold cluster may take longer than the answer waits.)
    let (code, v) = post_raw(
        &format!("{}/v1/txs", urls[0]),
        &raw(&anchor(&g.signer, 0, 0)),
    );
    assert!(code == 200 || code == 202, "{v}");
    g.nonce += 1;
    settle(&urls);
    let did = add_node(g.root());
    let cluster: Value =
        serde_json::from_str(&std::fs::read_to_string(g.vdir(0).join("cluster.json")).unwrap())
            .unwrap();
    assert_eq!(cluster["validators"][4]["did"], did.as_str());
    // Its ports are ones no other node uses, for either purpose.
    let ports: Vec<&Value> = (0..5)
        .flat_map(|i| {
            [
                &cluster["validators"][i]["p2p"],
                &cluster["validators"][i]["http"],
            ]
        })
        .collect();
    for (i, a) in ports.iter().enumerate() {
        assert!(!ports[..i].contains(a), "{a} twice: {cluster}");
    }
    nodes.push(NodeProc::start(&g.vdir(4), &[]));
    urls.push(nodes[4].url.clone());
    // Before governance the new node only follows: it has every block, votes nowhere.
    g.send(&urls[0]);
    settle(&urls);
    // `cluster status` reads the HTTP addresses from cluster.json: these nodes listen on
    // ports of their own, so it gets a copy of the file with those.
    let seen = tempfile::tempdir().unwrap();
    let mut file = cluster.clone();
    for (i, u) in urls.iter().enumerate() {
        file["validators"][i]["http"] = Value::from(u.trim_start_matches("http://"));
    }
    std::fs::write(seen.path().join("cluster.json"), file.to_string()).unwrap();
    let voting = || -> Vec<Value> {
        let out = carechain_ok(&["cluster", "status", "--data", seen.path().to_str().unwrap()]);
        let v: Value = serde_json::from_str(&out).unwrap();
        let rows = v["validators"].as_array().unwrap();
        // Honest validators: none has evidence against another.
        assert!(rows.iter().all(|n| n["evidence"] == 0), "{v}");
        rows.iter().map(|n| n["voting"].clone()).collect()
    };
    assert_eq!(voting(), [true, true, true, true, false].map(Value::from));

    // Validator 0 proposes it from height 64, validators 1 and 2 approve (3 of 4).
    let at = carechain_types::EPOCH_LENGTH;
    propose_validator(&g, &urls, &did, at, &[1, 2]);
    // Into the next epoch, a block at a time.
    let mut to = 0;
    while status(&urls[0])["height"].as_u64().unwrap() < at + 24 {
        g.send(&urls[to % 4]);
        to += 1;
    }
    let head = settle(&urls);
    assert_eq!(voting(), [true; 5].map(Value::from));
    let proposer =
        |h: u64| get(&format!("{}/v1/blocks/{h}", urls[1])).1["header"]["proposer"].clone();
    assert!((1..at).all(|h| proposer(h) != did.as_str()));
    assert!(
        (at..=head).any(|h| proposer(h) == did.as_str()),
        "the new validator led no block of its epoch"
    );
    // Five validators need four votes: with validator 0 killed, blocks are final only with
    // the new validator's.
    nodes[0].kill9();
    let before = status(&urls[1])["height"].as_u64().unwrap();
    for _ in 0..10 {
        g.send(&urls[1]);
    }
    let live = urls[1..].to_vec();
    assert!(settle(&live) >= before + 10);
    // Checkpoints are cosigned by a quorum of the set in force: 4 of the 5.
    let out = carechain_ok(&["verify", "--url", &urls[1], "--cosigned"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], true, "{out}");
    assert_eq!(v["cosigned"]["quorum"], 4, "{out}");
    assert_eq!(v["cosigned"]["of"], 5, "{out}");
    assert!(
        v["cosigned"]["cosigners"]
            .as_array()
            .unwrap()
            .contains(&Value::from(did.as_str())),
        "{out}"
    );
    // The new validator's own chain, checkpoints signed by its key, verifies too.
    let out = carechain_ok(&["verify", "--url", &urls[4], "--cosigned"]);
    assert!(out.contains("\"ok\": true"), "{out}");
    // Validator 0, restarted in the new epoch, catches up and takes part again.
    nodes[0] = NodeProc::start(&g.vdir(0), &[]);
    urls[0] = nodes[0].url.clone();
    settle(&urls);
    g.send(&urls[0]);
    settle(&urls);
    for n in &mut nodes {
        n.stop();
    }
}

/// A node's `/metrics`, checked to be one OpenMetrics exposition (each family declared once,
/// every sample of a declared family, one `# EOF` at the end): sample (name and labels) → value.
fn metrics(url: &str) -> std::collections::BTreeMap<String, f64> {
    let (code, text) = get_text(&format!("{url}/metrics"));
    assert_eq!(code, 200, "{text}");
    assert_eq!(text.matches("# EOF").count(), 1, "{text}");
    assert!(text.ends_with("# EOF\n"), "{text}");
    let mut families = std::collections::BTreeSet::new();
    let mut samples = std::collections::BTreeMap::new();
    for line in text.lines().filter(|l| *l != "# EOF") {
        if let Some(decl) = line.strip_prefix("# TYPE ") {
            let family = decl.split(' ').next().unwrap().to_string();
            assert!(families.insert(family), "declared twice: {line}");
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (name, value) = line.rsplit_once(' ').unwrap();
        let bare = name.split('{').next().unwrap();
        assert!(
            families.iter().any(|f| bare.starts_with(f.as_str())),
            "sample of no declared family: {line}"
        );
        samples.insert(name.to_string(), value.parse::<f64>().unwrap());
    }
    samples
}

/// A cluster directory to be made by `cluster up --validators n`, on free ports.
struct LocalCluster {
    _dir: tempfile::TempDir,
    data: std::path::PathBuf,
    args: Vec<String>,
    urls: Vec<String>,
}

impl LocalCluster {
    fn new(n: u16) -> LocalCluster {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("net");
        let base = free_ports(n);
        let args = vec![
            "--validators".to_string(),
            n.to_string(),
            "--data".to_string(),
            data.to_str().unwrap().to_string(),
            "--p2p-port".to_string(),
            base.to_string(),
            "--http-port".to_string(),
            (base + n).to_string(),
        ];
        LocalCluster {
            _dir: dir,
            data,
            args,
            urls: (0..n)
                .map(|i| format!("http://127.0.0.1:{}", base + n + i))
                .collect(),
        }
    }

    /// Runs `cluster up` on this directory until it says "cluster running"; with the process
    /// ids it printed, one per validator.
    fn up(&self) -> (ClusterUp, Vec<String>) {
        let up = ClusterUp::start(&self.args);
        let started = up.until("cluster running");
        let pids = validator_pids(&started);
        assert_eq!(pids.len(), self.urls.len(), "{started:?}");
        (up, pids)
    }

    /// Sends an anchor of `what`, signed by the cluster's operator key, to `url`.
    fn anchor(&self, what: &str, url: &str) {
        let key = self.data.join("operator.key");
        let key = key.to_str().unwrap();
        carechain_ok(&["tx", "anchor", "--key", key, "--data", what, "--url", url]);
    }
}

/// `carechain cluster up` as a user runs it: its stdout lines as they come, until it exits.
struct ClusterUp {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl ClusterUp {
    fn start(args: &[String]) -> ClusterUp {
        use std::io::BufRead;
        let mut child = std::process::Command::new(bin())
            .args(["cluster", "up"])
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn cluster up");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        ClusterUp { child, lines }
    }

    /// Lines up to and including the first that contains `marker`.
    fn until(&self, marker: &str) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("no {marker:?} after {seen:?}"));
            let done = line.contains(marker);
            seen.push(line);
            if done {
                return seen;
            }
        }
    }

    /// Ctrl-C's signal: every validator stops cleanly and the command exits with success.
    fn interrupt(mut self) -> Vec<String> {
        let _ = std::process::Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let lines = self.until("cluster stopped");
        let status = self.child.wait().expect("wait");
        assert!(
            status.success(),
            "cluster up exited with {status}: {lines:?}"
        );
        lines
    }
}

/// The process ids `cluster up` printed, one line per validator.
fn validator_pids(started: &[String]) -> Vec<String> {
    started
        .iter()
        .filter_map(|l| l.split(" pid ").nth(1))
        .filter_map(|rest| rest.split(' ').next())
        .map(str::to_string)
        .collect()
}

/// Whether process `pid` is alive (a zombie, exited but not yet reaped, is not).
fn running(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().to_string())
        })
        .is_some_and(|rest| !rest.starts_with('Z'))
}

impl Drop for ClusterUp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn cluster_up_starts_four_validators_with_one_command_and_ctrl_c_stops_them_all() {
    let local = LocalCluster::new(4);
    let (data, urls) = (&local.data, &local.urls);
    let (up, pids) = local.up();
    // A transaction sent to any validator is final on all (the operator signs anchors).
    local.anchor("one", &urls[2]);
    let height = settle(urls);
    assert!(height >= 1);
    // Four validators fit on a laptop: each running validator stays well under 128 MiB
    // resident (the p2p layer's up-front inbound queues once took ~370 MB per validator).
    for pid in &pids {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let rss_kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        assert!(
            rss_kib < 128 * 1024,
            "validator {pid}: {rss_kib} KiB resident"
        );
    }
    let status_of = || -> Value {
        serde_json::from_str(&carechain_ok(&[
            "cluster",
            "status",
            "--data",
            data.to_str().unwrap(),
        ]))
        .unwrap()
    };
    // Connections come and go as peers redial: wait (bounded) until every validator holds
    // at least two at once.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = status_of();
        let ok = s["validators"].as_array().unwrap().iter().all(|v| {
            v["voting"] == true && v["height"] == height && v["peers_connected"].as_u64() >= Some(2)
        });
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "{s}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // An operator's `/metrics`: the node's own and the consensus engine's, in one valid
    // OpenMetrics exposition.
    let deadline = Instant::now() + Duration::from_secs(30);
    let samples = loop {
        let samples = metrics(&urls[1]);
        if samples.get("validator_marshal_processed_height") >= Some(&(height as f64)) {
            break samples;
        }
        assert!(
            Instant::now() < deadline,
            "marshal never reached {height}: {samples:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(samples["carechain_blocks_committed_total"] >= height as f64);
    let connected = samples
        .keys()
        .filter(|k| k.starts_with("network_tracker_directory_connected{"))
        .count();
    assert!(
        connected >= 2,
        "connected to {connected} peers: {samples:?}"
    );
    assert!(
        samples.iter().any(|(k, v)| k
            .starts_with("validator_orchestrator_simplex_voter_state_current_view{")
            && *v >= 1.0),
        "{samples:?}"
    );
    // Ctrl-C: each validator stops cleanly (no kill after the grace period), none is left.
    let stopped = up.interrupt();
    assert!(
        !stopped.iter().any(|l| l.contains("did not stop")),
        "{stopped:?}"
    );
    for pid in &pids {
        assert!(!running(pid), "validator {pid} still runs");
    }
    assert!(
        status_of()["validators"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v["down"].is_string())
    );
    // The same command again resumes the same chain where it stopped.
    let (up, _) = local.up();
    local.anchor("two", &urls[0]);
    assert!(settle(urls) > height);
    up.interrupt();
}

#[test]
fn validators_stop_cleanly_when_cluster_up_is_killed() {
    let local = LocalCluster::new(2);
    let (data, urls) = (&local.data, &local.urls);
    let (mut up, pids) = local.up();
    local.anchor("before", &urls[1]);
    let height = settle(urls);
    // SIGKILL: `cluster up` gets no chance to stop its validators. They stop by themselves,
    // cleanly (the pipe it held open is closed by the kernel), instead of running on
    // unsupervised with the cluster's ports.
    up.child.kill().unwrap();
    up.child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while pids.iter().any(|p| running(p)) {
        if Instant::now() > deadline {
            for p in &pids {
                let _ = std::process::Command::new("kill").args(["-9", p]).status();
            }
            panic!("validators {pids:?} still ran 60 s after cluster up was killed");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for i in 0..2 {
        let log = std::fs::read_to_string(data.join(format!("v{i}/node.log"))).unwrap();
        assert!(
            log.contains("standard input closed: stopping") && log.contains("node stopped"),
            "validator {i}: {log}"
        );
    }
    // The same command starts the same chain again, on the same ports.
    let (up, _) = local.up();
    local.anchor("after", &urls[0]);
    assert!(settle(urls) > height);
    up.interrupt();
}
