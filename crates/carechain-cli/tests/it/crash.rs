//! SIGKILL during sustained submissions (ledger transactions, FHIR creates): everything
//! acknowledged survives the restart, and the chain verifies.

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

/// SIGKILL while clinicians create records over FHIR: after the restart every acknowledged
/// create reads back as written, nothing half-created is visible (every resource a search
/// lists reads back), and the chain verifies.
#[test]
fn sigkill_during_fhir_creates_loses_no_acknowledged_record() {
    use crate::fhir::{call, register_practitioner, token};
    use serde_json::{Value, json};

    let dir = tempfile::tempdir().unwrap();
    let hospital = key(60);
    init_chain(dir.path(), std::slice::from_ref(&hospital));
    let mut node = NodeProc::start(dir.path(), &[]);
    let doc = key(61);
    register_practitioner(&node.url, &hospital, &doc);
    let t = token(&node.url, &doc, "user/*.cruds");
    let (s, p, _) = call(
        "POST",
        &format!("{}/fhir/Patient", node.url),
        &t,
        None,
        Some(&json!({"resourceType": "Patient", "name": [{"family": "Crash"}]})),
    );
    assert_eq!(s, 201, "{p}");
    let pid = p["id"].as_str().unwrap().to_string();
    let acked: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
    let (ack_tx, ack_rx) = std::sync::mpsc::channel::<()>();
    let handles: Vec<_> = (0..8u64)
        .map(|c| {
            let (acked, ack_tx, url, t, pid) = (
                acked.clone(),
                ack_tx.clone(),
                format!("{}/fhir/Observation", node.url),
                t.clone(),
                pid.clone(),
            );
            std::thread::spawn(move || {
                for i in 0u64.. {
                    let value = c * 1_000_000 + i;
                    let obs = json!({"resourceType": "Observation", "status": "final",
                        "code": {"text": "crash test"},
                        "subject": {"reference": format!("Patient/{pid}")},
                        "valueQuantity": {"value": value}});
                    let resp = agent()
                        .post(&url)
                        .header("authorization", format!("Bearer {t}"))
                        .header("content-type", "application/fhir+json")
                        .send(obs.to_string());
                    let Ok(mut r) = resp else { break };
                    if r.status().as_u16() != 201 {
                        break;
                    }
                    let Ok(v) = serde_json::from_slice::<Value>(
                        &r.body_mut().read_to_vec().unwrap_or_default(),
                    ) else {
                        break;
                    };
                    acked
                        .lock()
                        .unwrap()
                        .push((v["id"].as_str().unwrap().to_string(), value));
                    let _ = ack_tx.send(());
                }
            })
        })
        .collect();
    for _ in 0..300 {
        ack_rx
            .recv()
            .expect("clients stopped before 300 acknowledgements");
    }
    node.kill9();
    for h in handles {
        h.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 300);

    let node = NodeProc::start(dir.path(), &[]);
    let t = token(&node.url, &doc, "user/*.cruds");
    let get_fhir = |path: &str| call("GET", &format!("{}/fhir/{path}", node.url), &t, None, None);
    for (id, value) in &acked {
        let (s, v, _) = get_fhir(&format!("Observation/{id}"));
        assert_eq!(s, 200, "acknowledged Observation/{id} lost: {v}");
        assert_eq!(v["valueQuantity"]["value"], *value);
    }
    // Whatever a search lists exists in full: no half-created record is visible.
    let (s, found, _) = get_fhir(&format!("Observation?patient={pid}&_count=1000"));
    assert_eq!(s, 200, "{found}");
    let listed = found["entry"].as_array().unwrap();
    assert!(listed.len() >= acked.len());
    for e in listed {
        let id = e["resource"]["id"].as_str().unwrap();
        let (s, _, _) = get_fhir(&format!("Observation/{id}"));
        assert_eq!(s, 200, "listed Observation/{id} does not read back");
    }
    drop(node);
    let out = carechain_ok(&["verify", "--data", dir.path().to_str().unwrap()]);
    assert!(out.contains("\"ok\": true"), "{out}");
}
