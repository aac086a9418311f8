//! One network of care, as real processes on loopback: `carechain cluster up --demo` (four
//! organizations, each its own validator node; Alice's chart at City Hospital). Riverside's
//! clinician reaches Alice's records at City Hospital's node only with her ledger consent,
//! granted and revoked at a third node; a custodian that was down catches up before it
//! serves; a killed custodian makes records unavailable, never unconsented; forged and stale
//! node requests are refused and recorded; Alice's log is the same at every node, and its
//! receipts verify.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use carechain_crypto::SecretKey;
use carechain_service::{
    auth::SignInProof,
    make_assertion,
    peer::{PeerOutcome, PeerQuery, PeerRefusal, PeerRequest, SignedPeerAnswer},
};
use serde_json::Value;

use crate::{cluster::free_ports, common::*};

/// The demo network: the supervisor process, the validators' URLs and process ids.
struct Network {
    root: PathBuf,
    supervisor: Child,
    urls: Vec<String>,
    pids: Vec<u32>,
}

impl Network {
    fn start(root: &Path) -> Network {
        let base = free_ports(4);
        let mut supervisor = Command::new(bin())
            .args(["cluster", "up", "--demo", "--data", root.to_str().unwrap()])
            .args(["--p2p-port", &base.to_string()])
            .args(["--http-port", &(base + 4).to_string()])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cluster up");
        let stdout = supervisor.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let (mut urls, mut pids) = (vec![String::new(); 4], vec![0u32; 4]);
        loop {
            let line = rx
                .recv_timeout(Duration::from_secs(180))
                .expect("the demo network did not come up");
            // "validator 0: http://127.0.0.1:8081  p2p …  pid 123  log …"
            if let Some(rest) = line.strip_prefix("validator ")
                && let Some((i, rest)) = rest.split_once(": http://")
                && let Some(pid) = rest.split("pid ").nth(1)
            {
                let i: usize = i.parse().unwrap();
                urls[i] = format!("http://{}", rest.split_whitespace().next().unwrap());
                pids[i] = pid.split_whitespace().next().unwrap().parse().unwrap();
            }
            if line.starts_with("cluster running") {
                break;
            }
        }
        Network {
            root: root.to_path_buf(),
            supervisor,
            urls,
            pids,
        }
    }

    fn key(&self, file: &str) -> SecretKey {
        read_key(&self.root.join("demo-keys").join(file))
    }

    fn key_path(&self, file: &str) -> String {
        self.root
            .join("demo-keys")
            .join(file)
            .to_str()
            .unwrap()
            .to_string()
    }

    /// A bearer token for a demo identity at node `i`.
    fn token(&self, file: &str, scope: &str, i: usize) -> String {
        carechain_ok(&[
            "access-token",
            "--key",
            &self.key_path(file),
            "--scope",
            scope,
            "--url",
            &self.urls[i],
        ])
        .trim()
        .to_string()
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.supervisor.id().to_string()])
            .status();
        let _ = self.supervisor.wait();
    }
}

fn read_key(path: &Path) -> SecretKey {
    let v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let seed = hex::decode(v["secret_key"].as_str().unwrap().trim()).unwrap();
    SecretKey::from_seed_slice(&seed).unwrap()
}

fn get_auth(url: &str, token: &str) -> (u16, Value) {
    let mut r = agent()
        .get(url)
        .header("authorization", format!("Bearer {token}"))
        .call()
        .expect("GET");
    let status = r.status().as_u16();
    let body = r.body_mut().read_to_vec().unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// Alice's Observations as Riverside's clinician sees them at Riverside's node: (entries
/// served by City Hospital's node, outcome diagnostics).
fn riverside_sees(net: &Network, alice: &str) -> (usize, Vec<String>) {
    let token = net.token("clinic-clinician.key", "user/*.rs", 1);
    let (status, b) = get_auth(
        &format!(
            "{}/fhir/Observation?patient.identifier=urn:ietf:rfc:3986%7C{alice}",
            net.urls[1]
        ),
        &token,
    );
    assert_eq!(status, 200, "{b}");
    let entries = b["entry"].as_array().cloned().unwrap_or_default();
    let from_hospital = entries
        .iter()
        .filter(|e| {
            e["fullUrl"]
                .as_str()
                .is_some_and(|u| u.starts_with(&format!("{}/fhir/Observation/", net.urls[0])))
        })
        .count();
    let outcomes = entries
        .iter()
        .filter(|e| e["search"]["mode"] == "outcome")
        .map(|e| {
            e["resource"]["issue"][0]["diagnostics"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    (from_hospital, outcomes)
}

fn consent(net: &Network, args: &[&str], node: usize) -> String {
    let mut a = vec!["consent"];
    a.extend_from_slice(args);
    let key = net.key_path("patient-alice.key");
    a.extend_from_slice(&["--key", &key, "--url", &net.urls[node]]);
    let out = carechain(&a);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The receipt on standard output, the consent's id on standard error.
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Waits until every node has applied the block at height `h`.
fn wait_height(urls: &[String], h: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    for url in urls {
        while get(&format!("{url}/v1/status")).1["height"]
            .as_u64()
            .unwrap_or(0)
            < h
        {
            assert!(Instant::now() < deadline, "{url} never reached height {h}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn height_of(receipt_output: &str) -> u64 {
    receipt_output
        .lines()
        .find_map(|l| l.trim().strip_prefix("\"height\": "))
        .and_then(|h| h.trim_end_matches(',').parse().ok())
        .expect("receipt height")
}

/// Alice's access log at node `i` (ids of events, and the events).
fn alices_log(net: &Network, i: usize) -> Vec<Value> {
    let token = net.token("patient-alice.key", "patient/*.rs", i);
    let (status, b) = get_auth(&format!("{}/me/access-log", net.urls[i]), &token);
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["unavailable"], serde_json::json!([]), "at node {i}");
    b["entries"].as_array().cloned().unwrap()
}

#[test]
fn records_cross_organizations_only_with_the_patients_ledger_consent() {
    let dir = tempfile::tempdir().unwrap();
    let mut net = Network::start(dir.path());
    let alice = net.key("patient-alice.key").public().did().to_string();
    let clinic = net.key("clinic.key").public().did().to_string();

    // Alice's record locator names City Hospital's node.
    let (_, loc) = get(&format!("{}/v1/identities/{alice}/locator", net.urls[2]));
    assert_eq!(loc["nodes"][0]["endpoint"], net.urls[0].as_str(), "{loc}");

    // Without her consent Riverside gets nothing (and no error: withheld records are
    // indistinguishable from none).
    assert_eq!(riverside_sees(&net, &alice), (0, vec![]));

    // She grants Riverside Clinic treatment access at Acme's node; Riverside's clinician,
    // at Riverside's node, gets her chart from City Hospital's.
    let granted = consent(
        &net,
        &["grant", "--grantee", &clinic, "--purpose", "TREAT"],
        2,
    );
    let id = granted
        .lines()
        .find_map(|l| l.strip_prefix("consent id "))
        .expect("consent id")
        .to_string();
    // Each node applies a finalized block in its own time: ask once all have.
    wait_height(&net.urls, height_of(&granted));
    let (seen, outcomes) = riverside_sees(&net, &alice);
    assert!(seen >= 6, "Riverside sees {seen} of Alice's observations");
    assert!(outcomes.is_empty(), "{outcomes:?}");

    // The custodian goes down: nothing is served, and the answer says a node gave nothing.
    let hospital_dir = net.root.join("v0");
    Command::new("kill")
        .args(["-KILL", &net.pids[0].to_string()])
        .status()
        .unwrap();
    let (seen, outcomes) = riverside_sees(&net, &alice);
    assert_eq!(seen, 0);
    assert!(
        outcomes.iter().any(|o| o.contains("gave nothing")),
        "{outcomes:?}"
    );

    // She revokes at Pharmacy's node while City Hospital's node is down (three of four
    // validators finalize it); every running node holds the revocation at the same height.
    let revoked = consent(&net, &["revoke", "--id", &id], 3);
    let h = height_of(&revoked);
    wait_height(&net.urls[1..], h);
    for url in &net.urls[1..] {
        let (_, list) = get(&format!("{url}/v1/identities/{alice}/consents"));
        let c = list["consents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id.as_str())
            .cloned()
            .unwrap();
        assert_eq!(c["revoked_at"], h, "{url}: {c}");
    }

    // City Hospital's node comes back: it catches up before it decides, so the revocation
    // holds from its first answer.
    let mut restarted = Reaped(
        Command::new(bin())
            .args(["up", "--data", hospital_dir.to_str().unwrap(), "--demo"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let out = restarted.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    while !rx
        .recv_timeout(Duration::from_secs(60))
        .expect("hospital node restarts")
        .starts_with("listening on")
    {}
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (seen, outcomes) = riverside_sees(&net, &alice);
        assert_eq!(seen, 0, "a revoked consent served records");
        if outcomes.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "hospital node never answered: {outcomes:?}"
        );
    }

    // A Byzantine node: Acme's node (key on disk) asks for Riverside's clinician — not of its
    // organization — and Riverside's node asks with a stale height. Both refused, signed.
    let peer_ask = |node_dir: &str, actor_key: &SecretKey, audience_node: usize, height: u64| {
        let node_key = read_key(&net.root.join(node_dir).join("node.key"));
        let hospital_key = read_key(&net.root.join("v0").join("node.key"));
        let now = carechain_node::now_ms();
        let req = PeerRequest {
            chain_id: "carechain-demo".into(),
            from: node_key.public(),
            to: hospital_key.public(),
            height,
            issued_ms: now,
            nonce: rand_nonce(),
            actor: actor_key.public(),
            proof: SignInProof::Assertion {
                jwt: make_assertion(
                    actor_key,
                    &format!("{}/auth/token", net.urls[audience_node]),
                    now / 1000,
                ),
            },
            purpose: "TREAT".into(),
            patient: net.key("patient-alice.key").public(),
            query: PeerQuery::Everything,
        }
        .sign(&node_key);
        let mut r = agent()
            .post(&format!("{}/v1/peer", net.urls[0]))
            .header("content-type", "application/octet-stream")
            .send(&carechain_types::encode(&req)[..])
            .unwrap();
        let answer: SignedPeerAnswer =
            borsh::from_slice(&r.body_mut().read_to_vec().unwrap()).unwrap();
        assert!(answer.verifies(&hospital_key.public()));
        assert_eq!(answer.answer.request, req.hash());
        match answer.answer.outcome {
            PeerOutcome::Refused { refusal, .. } => refusal,
            PeerOutcome::Served { .. } => panic!("served a forged request"),
        }
    };
    let dan = net.key("clinic-clinician.key");
    let head = get(&format!("{}/v1/status", net.urls[0])).1["height"]
        .as_u64()
        .unwrap();
    assert_eq!(peer_ask("v2", &dan, 2, head), PeerRefusal::BadActor);
    assert_eq!(
        peer_ask("v1", &dan, 2, head),
        PeerRefusal::BadActor,
        "sign-in made elsewhere"
    );
    assert_eq!(peer_ask("v1", &dan, 1, 1), PeerRefusal::StaleHeight);

    // Alice's log is the same at every node: the custodian's decisions (allowed, withheld,
    // refused) each name the requesting node and the height decided at.
    let logs: Vec<Vec<Value>> = (0..4).map(|i| alices_log(&net, i)).collect();
    let ids = |l: &Vec<Value>| {
        let mut v: Vec<String> = l
            .iter()
            .filter(|e| {
                e["event"]["source"]["observer"]["identifier"]["value"]
                    == read_key(&net.root.join("v0").join("node.key"))
                        .public()
                        .did()
                        .to_string()
                        .as_str()
            })
            .map(|e| e["event"]["id"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    let at_hospital = ids(&logs[0]);
    for (i, l) in logs.iter().enumerate().skip(1) {
        let here = ids(l);
        // Each node's own read of the log adds events after it; those before are the same.
        assert!(
            at_hospital.iter().filter(|x| !here.contains(x)).count() <= 4,
            "node {i} misses events of the hospital's log"
        );
    }
    let notes: Vec<&str> = logs[1]
        .iter()
        .filter_map(|e| e["event"]["outcomeDesc"].as_str())
        .collect();
    assert!(
        notes.iter().any(|n| n.contains("asked by node")
            && n.contains(" 0 withheld")
            && !n.starts_with("search: 0 results")),
        "the consented search is in her log: {notes:#?}"
    );
    assert!(
        notes
            .iter()
            .any(|n| n.contains("withheld") && n.contains("asked by node"))
    );
    assert!(
        notes.iter().any(|n| n.contains("bad-actor")),
        "the forged request is in her log"
    );
    assert!(notes.iter().any(|n| n.contains("stale-height")));

    // Every receipt of her log verifies offline, at a node that is not the custodian.
    let status = get(&format!("{}/v1/status", net.urls[1])).1;
    let ck = status["checkpoint_key"].as_str().unwrap();
    let validators: Vec<String> = (0..4)
        .map(|i| {
            read_key(&net.root.join(format!("v{i}")).join("node.key"))
                .public()
                .did()
                .to_string()
        })
        .collect();
    let mut verified = 0;
    for e in logs[1].iter().filter(|e| e.get("tx").is_some()).take(5) {
        let f = dir.path().join("entry.json");
        std::fs::write(&f, serde_json::to_vec(e).unwrap()).unwrap();
        let mut args = vec![
            "verify-receipt",
            "--file",
            f.to_str().unwrap(),
            "--checkpoint-key",
            ck,
        ];
        for v in &validators {
            args.push("--signer");
            args.push(v);
        }
        carechain_ok(&args);
        verified += 1;
    }
    assert!(verified > 0);

    // In the browser, at the pharmacy's node (which holds nothing of hers), signed in with
    // her key: her access log page lists the hospital's decisions, each saying where it was
    // decided and for which node, with what verifies it against her custodian's anchors.
    let (page, records) = portal_pages(&net, 3);
    assert!(
        records.contains("This node holds no record of yours"),
        "{records}"
    );
    assert!(
        records.contains(&net.urls[0]),
        "her locator names the hospital: {records}"
    );
    assert!(page.contains("Who accessed my data"), "{page}");
    assert!(page.contains("asked by node"), "{page}");
    let hospital_hex = hex::encode(read_key(&net.root.join("v0").join("node.key")).public().0);
    assert!(page.contains(&format!("data-trusted=\"{hospital_hex}\"")));
    drop(restarted);
    net.pids.clear();
}

/// Signs Alice in at node `i` as a browser does (a challenge signed with her key) and returns
/// her access-log page and her records page.
fn portal_pages(net: &Network, i: usize) -> (String, String) {
    let alice = net.key("patient-alice.key");
    let did = alice.public().did().to_string();
    let url = &net.urls[i];
    let post = |path: &str, body: Value| -> (Value, Option<String>) {
        let mut r = agent()
            .post(&format!("{url}{path}"))
            .header("content-type", "application/json")
            .header("origin", url.as_str())
            .send(body.to_string().as_bytes())
            .unwrap();
        let cookie = r
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .map(|c| c.split(';').next().unwrap_or("").to_string());
        (
            serde_json::from_slice(&r.body_mut().read_to_vec().unwrap()).unwrap_or_default(),
            cookie,
        )
    };
    let (c, _) = post("/login/challenge", serde_json::json!({"did": did}));
    let challenge = c["challenge"].as_str().expect("challenge").to_string();
    let sig = alice
        .sign(carechain_crypto::Namespace::Challenge, challenge.as_bytes())
        .to_hex();
    let (_, cookie) = post(
        "/login",
        serde_json::json!({"did": did, "challenge": challenge, "signature": sig}),
    );
    let cookie = cookie.expect("session cookie");
    let page = |path: &str| {
        let mut r = agent()
            .get(&format!("{url}{path}"))
            .header("cookie", cookie.as_str())
            .call()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
        r.body_mut().read_to_string().unwrap()
    };
    (page("/patient/access?all=1"), page("/patient"))
}

/// A child process killed when dropped (also when the test fails).
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rand_nonce() -> [u8; 16] {
    let mut n = [0u8; 16];
    getrandom::fill(&mut n).unwrap();
    n
}
