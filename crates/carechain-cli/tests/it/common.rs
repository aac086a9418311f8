//! Test helpers: run the real binary, talk HTTP to it.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use carechain_crypto::{Hash, SecretKey};
use carechain_types::{Payload, SignedTx, TxBody, encode};
use serde_json::Value;

/// The binary under test: this build's, or another one named by `CARECHAIN_TEST_BIN` (to run
/// the same black-box suite against an older build, e.g. to show which attacks it lets
/// through).
pub fn bin() -> String {
    std::env::var("CARECHAIN_TEST_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_carechain").to_string())
}

pub fn carechain(args: &[&str]) -> std::process::Output {
    Command::new(bin())
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run carechain")
}

pub fn carechain_ok(args: &[&str]) -> String {
    let out = carechain(args);
    assert!(
        out.status.success(),
        "carechain {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Creates a chain in `dir` with `orgs` extra organization keys registered in genesis.
pub fn init_chain(dir: &Path, orgs: &[SecretKey]) {
    let data = dir.to_str().unwrap();
    let mut args = vec![
        "init".to_string(),
        "--data".into(),
        data.into(),
        "--chain-id".into(),
        "test-chain".into(),
    ];
    for k in orgs {
        args.push("--identity".into());
        args.push(format!("organization={}", k.public().did()));
    }
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    carechain_ok(&a);
}

pub struct NodeProc {
    pub child: Child,
    pub url: String,
}

impl NodeProc {
    /// Starts `carechain up` on a free port and waits for its "listening on" line.
    pub fn start(dir: &Path, extra: &[&str]) -> NodeProc {
        Self::spawn(dir, extra, Stdio::inherit(), "warn", &[])
    }

    /// Starts a node with extra environment variables.
    pub fn start_with_env(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> NodeProc {
        Self::spawn(dir, extra, Stdio::inherit(), "warn", env)
    }

    /// Starts a node whose log (at `debug`) goes to `log`.
    pub fn start_logged(dir: &Path, extra: &[&str], log: &Path) -> NodeProc {
        let f = std::fs::File::create(log).expect("log file");
        Self::spawn(dir, extra, Stdio::from(f), "debug", &[])
    }

    fn spawn(
        dir: &Path,
        extra: &[&str],
        stderr: Stdio,
        level: &str,
        env: &[(&str, &str)],
    ) -> NodeProc {
        let mut child = Command::new(bin())
            .args([
                "up",
                "--data",
                dir.to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
            ])
            .args(extra)
            .envs(env.iter().copied())
            .env("RUST_LOG", level)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn node");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(url) = line.strip_prefix("listening on ") {
                    let _ = tx.send(url.trim().to_string());
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("node did not start listening");
        NodeProc { child, url }
    }

    pub fn kill9(&mut self) {
        // Child::kill sends SIGKILL on Unix.
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }

    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "node exited with {status}");
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `e2e/<script>` with Node.js against a node: `package` (from `npm ci --prefix e2e`,
/// which `scripts/test-all.sh` runs) must be installed, the script must succeed and print
/// `marker`. `env` is passed to the script. Returns its standard output.
pub fn run_e2e(
    script: &str,
    package: &str,
    env: &[(&str, &std::ffi::OsStr)],
    marker: &str,
) -> String {
    let e2e = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../e2e");
    assert!(
        e2e.join("node_modules").join(package).is_dir(),
        "{package} is not installed: run `npm ci --prefix e2e` (scripts/test-all.sh does)"
    );
    let out = Command::new("node")
        .arg(e2e.join(script))
        .current_dir(&e2e)
        .envs(env.iter().copied())
        .output()
        .expect("node (Node.js) must be installed");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script} failed (environment {env:?}):\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains(marker), "{stdout}");
    stdout
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build(),
    )
}

pub fn get(url: &str) -> (u16, Value) {
    let mut r = agent().get(url).call().expect("GET");
    let status = r.status().as_u16();
    let body = r.body_mut().read_to_vec().unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

pub fn get_text(url: &str) -> (u16, String) {
    let mut r = agent().get(url).call().expect("GET");
    (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
}

pub fn post_raw(url: &str, body: &[u8]) -> (u16, Value) {
    let mut r = agent()
        .post(url)
        .header("content-type", "application/octet-stream")
        .send(body)
        .expect("POST");
    let status = r.status().as_u16();
    let body = r.body_mut().read_to_vec().unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

pub fn anchor(key: &SecretKey, nonce: u64, n: u64) -> SignedTx {
    TxBody {
        chain_id: "test-chain".into(),
        signer: key.public(),
        nonce,
        payload: Payload::Anchor {
            kind: "test".into(),
            commitment: carechain_crypto::sha256(&[&key.public().0[..], &n.to_le_bytes()].concat()),
        },
    }
    .sign(key)
}

pub fn raw(tx: &SignedTx) -> Vec<u8> {
    encode(tx)
}

pub fn hash_of(v: &Value) -> Hash {
    Hash::from_hex(v["tx_hash"].as_str().unwrap()).unwrap()
}

pub fn key(i: u8) -> SecretKey {
    SecretKey::from_seed(&[i; 32])
}
