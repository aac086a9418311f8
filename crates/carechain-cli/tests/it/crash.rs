//! SIGKILL during sustained submissions: every acknowledged transaction survives the restart,
//! and the chain verifies.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, Ordering},
};

use carechain_crypto::Hash;

use crate::common::*;

#[test]
fn sigkill_under_load_loses_no_acknowledged_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let signers: Vec<_> = (10..16).map(key).collect();
    init_chain(dir.path(), &signers);
    let mut node = NodeProc::start(dir.path(), &["--block-interval-ms", "5"]);
    let acked: Arc<Mutex<Vec<Hash>>> = Arc::default();
    let (ack_tx, ack_rx) = std::sync::mpsc::channel::<()>();
    let stop = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = signers
        .iter()
        .cloned()
        .map(|k| {
            let (acked, stop, url, ack_tx) = (
                acked.clone(),
                stop.clone(),
                format!("{}/v1/txs", node.url),
                ack_tx.clone(),
            );
            std::thread::spawn(move || {
                // Each client sends its transactions in nonce order and records acknowledgements.
                for nonce in 0u64.. {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let tx = anchor(&k, nonce, nonce);
                    let resp = agent()
                        .post(&url)
                        .header("content-type", "application/octet-stream")
                        .send(&raw(&tx)[..]);
                    let Ok(mut r) = resp else { break };
                    if r.status().as_u16() != 200 {
                        break;
                    }
                    let v: serde_json::Value =
                        serde_json::from_slice(&r.body_mut().read_to_vec().unwrap_or_default())
                            .unwrap_or_default();
                    if v["status"] == "committed" {
                        acked.lock().unwrap().push(tx.hash());
                        let _ = ack_tx.send(());
                    } else {
                        break;
                    }
                }
            })
        })
        .collect();
    // Kill once a good number of transactions are acknowledged, while clients still submit.
    for _ in 0..400 {
        ack_rx
            .recv()
            .expect("clients stopped before 400 acknowledgements");
    }
    node.kill9();
    stop.store(true, Ordering::SeqCst);
    for h in handles {
        h.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 400);

    let node = NodeProc::start(dir.path(), &[]);
    for h in &acked {
        let (s, v) = get(&format!("{}/v1/txs/{}", node.url, h.to_hex()));
        assert_eq!(
            (s, v["status"].as_str()),
            (200, Some("committed")),
            "acknowledged tx {h} lost"
        );
        assert_eq!(v["receipt"]["outcome"], "applied");
    }
    // The restarted node keeps working on the same chain.
    let (s, v) = post_raw(
        &format!("{}/v1/txs", node.url),
        &raw(&anchor(&key(99), 0, 0)),
    );
    assert_eq!((s, v["code"].as_str()), (422, Some("unknown_signer")));
    drop(node);
    let out = carechain_ok(&["verify", "--data", dir.path().to_str().unwrap()]);
    assert!(out.contains("\"ok\": true"), "{out}");
}
