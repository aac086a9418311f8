//! The whole path over HTTP: submit → commit → receipt with inclusion proof → verified against
//! the signed checkpoint → offline verification of the data directory; bad input; and the
//! CLI's output into a closed pipe.

use base64::Engine;
use carechain_crypto::{Hash, Namespace, merkle};
use carechain_log::{NoteVerifier, proof::verify_inclusion};
use carechain_types::{Payload, Role, TxBody, encode};

use crate::common::*;

#[test]
fn submit_commit_prove_and_verify_offline() {
    let dir = tempfile::tempdir().unwrap();
    let org = key(1);
    init_chain(dir.path(), std::slice::from_ref(&org));
    let mut node = NodeProc::start(dir.path(), &[]);

    // CLI: a patient key registers itself; the org anchors a commitment.
    let patient_key = dir.path().join("patient.key");
    let did = carechain_ok(&["key", "new", "--out", patient_key.to_str().unwrap()])
        .trim()
        .to_string();
    let out = carechain_ok(&[
        "identity",
        "register",
        "--key",
        patient_key.to_str().unwrap(),
        "--role",
        "patient",
        "--url",
        &node.url,
    ]);
    assert!(out.contains("\"applied\""), "{out}");
    let shown = carechain_ok(&["identity", "show", &did, "--url", &node.url]);
    assert!(shown.contains("\"role\": \"patient\""), "{shown}");
    // Its state proof holds against the state root in the header of the block it names.
    let (_, ident) = get(&format!("{}/v1/identities/{did}", node.url));
    let sp = &ident["state_proof"];
    let (_, block) = get(&format!("{}/v1/blocks/{}", node.url, sp["height"]));
    assert_eq!(sp["state_root"], block["header"]["state_root"], "{ident}");
    let proof: carechain_state::StateProof =
        borsh::from_slice(&hex::decode(sp["proof"].as_str().unwrap()).unwrap()).unwrap();
    let root = Hash::from_hex(sp["state_root"].as_str().unwrap()).unwrap();
    let patient: carechain_crypto::Did = did.parse().unwrap();
    let value = proof
        .verify(&root, &carechain_state::identity_key(&patient.0))
        .unwrap();
    assert_eq!(
        value.map(|h| h.to_hex()),
        sp["value_hash"].as_str().map(String::from)
    );

    // HTTP: submit and wait for the receipt.
    let tx = anchor(&org, 0, 1);
    let (status, v) = post_raw(&format!("{}/v1/txs", node.url), &raw(&tx));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "committed");
    assert_eq!(v["receipt"]["outcome"], "applied");
    assert_eq!(hash_of(&v), tx.hash());

    // The inclusion proof verifies against the signed checkpoint, under the node's key.
    let (_, status_v) = get(&format!("{}/v1/status", node.url));
    let verifier = NoteVerifier::parse(status_v["checkpoint_key"].as_str().unwrap()).unwrap();
    let (_, t) = get(&format!("{}/v1/txs/{}", node.url, tx.hash().to_hex()));
    let inc = &t["inclusion"];
    let cp = verifier
        .verify_checkpoint(inc["checkpoint"].as_str().unwrap())
        .unwrap();
    assert_eq!(cp.size, inc["tree_size"].as_u64().unwrap());
    let proof: Vec<Hash> = inc["proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| Hash::from_hex(h.as_str().unwrap()).unwrap())
        .collect();
    let leaf = merkle::leaf_hash(&tx.hash().0);
    verify_inclusion(
        inc["log_index"].as_u64().unwrap(),
        cp.size,
        &leaf,
        &proof,
        &cp.root,
    )
    .unwrap();
    assert!(
        verify_inclusion(
            inc["log_index"].as_u64().unwrap(),
            cp.size,
            &merkle::leaf_hash(b"x"),
            &proof,
            &cp.root
        )
        .is_err()
    );

    // Checkpoint and tiles are served in the C2SP formats.
    let (s, note) = get_text(&format!("{}/checkpoint", node.url));
    assert_eq!(s, 200);
    let latest = verifier.verify_checkpoint(&note).unwrap();
    let mut r = agent()
        .get(&format!("{}/tile/0/000.p/{}", node.url, latest.size))
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let tile = r.body_mut().read_to_vec().unwrap();
    assert_eq!(tile.len() as u64, latest.size * 32);
    let b64 = base64::engine::general_purpose::STANDARD.encode(latest.root.0);
    assert!(note.contains(&b64));

    // Block by height and by hash; identity; metrics; OpenAPI; explorer page.
    let h = t["height"].as_u64().unwrap();
    let (s, b) = get(&format!("{}/v1/blocks/{h}", node.url));
    assert_eq!(s, 200);
    let (s, b2) = get(&format!(
        "{}/v1/blocks/{}",
        node.url,
        b["header"]["hash"].as_str().unwrap()
    ));
    assert_eq!((s, &b2["header"]), (200, &b["header"]));
    let (s, m) = get_text(&format!("{}/metrics", node.url));
    assert!(s == 200 && m.contains("carechain_txs_applied_total"), "{m}");
    let (s, api) = get(&format!("{}/openapi.json", node.url));
    assert_eq!(s, 200);
    for p in [
        "/v1/txs",
        "/v1/txs/{hash}",
        "/v1/blocks/{id}",
        "/v1/identities/{did}",
        "/checkpoint",
        "/tile/{path}",
        "/health",
        "/metrics",
        "/login/challenge",
        "/login",
        "/explorer",
        "/v1/token",
        "/v1/token/balances/{account}",
        "/v1/contracts/{address}/query",
        "/fhir/Claim/$submit",
        "/epcis/capture",
        "/epcis/events",
        "/verify",
    ] {
        assert!(api["paths"].get(p).is_some(), "OpenAPI lacks {p}");
    }
    let (s, html) = get_text(&format!("{}/explorer", node.url));
    assert!(s == 200 && html.contains("Latest blocks"));
    let (s, html) = get_text(&format!("{}/", node.url));
    assert!(s == 200 && html.contains("Sign in with your key"));

    // Verify through the API while it runs, then offline on a copy after it stops.
    carechain_ok(&["verify", "--url", &node.url]);
    let pinned = dir.path().join("genesis.bin");
    carechain_ok(&[
        "verify",
        "--url",
        &node.url,
        "--genesis",
        pinned.to_str().unwrap(),
    ]);
    // A different genesis (another chain) does not verify against this node.
    let other = tempfile::tempdir().unwrap();
    init_chain(other.path(), &[]);
    let out = carechain(&[
        "verify",
        "--url",
        &node.url,
        "--genesis",
        other.path().join("genesis.bin").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    node.stop();
    let copy = tempfile::tempdir().unwrap();
    std::fs::copy(
        dir.path().join("ledger.redb"),
        copy.path().join("ledger.redb"),
    )
    .unwrap();
    let out = carechain_ok(&["verify", "--data", copy.path().to_str().unwrap()]);
    assert!(out.contains("\"ok\": true"), "{out}");
}

#[test]
fn bad_input_gets_clear_errors_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let org = key(2);
    init_chain(dir.path(), std::slice::from_ref(&org));
    let node = NodeProc::start(dir.path(), &[]);
    let url = format!("{}/v1/txs", node.url);

    let good = anchor(&org, 0, 7);
    let (s, v) = post_raw(&url, &raw(&good));
    assert_eq!(
        (s, v["receipt"]["outcome"].as_str()),
        (200, Some("applied"))
    );

    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (b"not a transaction".to_vec(), 400, "malformed_tx"),
        (
            vec![0u8; carechain_types::MAX_TX_BYTES + 1],
            413,
            "tx_too_large",
        ),
        (
            {
                let mut t = anchor(&org, 1, 8);
                t.signature.0[5] ^= 1;
                raw(&t)
            },
            422,
            "bad_signature",
        ),
        (
            raw(&TxBody {
                chain_id: "other-chain".into(),
                ..anchor(&org, 1, 9).body
            }
            .sign(&org)),
            400,
            "wrong_chain",
        ),
        (raw(&good), 409, "duplicate_tx"),
        (raw(&anchor(&org, 0, 10)), 409, "nonce_replayed"),
        (raw(&anchor(&org, 5, 11)), 409, "nonce_gap"),
        (raw(&anchor(&key(99), 0, 12)), 422, "unknown_signer"),
        // A rotation signed by the wrong key.
        (
            {
                let new = key(50);
                let msg = carechain_types::rotation_proof_message(
                    "test-chain",
                    &org.public(),
                    &new.public(),
                    1,
                );
                let body = TxBody {
                    chain_id: "test-chain".into(),
                    signer: org.public(),
                    nonce: 1,
                    payload: Payload::RotateKey {
                        new_key: new.public(),
                        proof: new.sign(Namespace::KeyRotation, &msg),
                    },
                };
                let mut t = body.clone().sign(&key(51));
                t.body = body;
                raw(&t)
            },
            422,
            "bad_signature",
        ),
    ];
    for (body, status, code) in cases {
        let (s, v) = post_raw(&url, &body);
        assert_eq!((s, v["code"].as_str()), (status, Some(code)), "{v}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // JSON body form, bad hex, and an unauthorized registration recorded as a rejected receipt.
    let mut r = agent()
        .post(&url)
        .header("content-type", "application/json")
        .send("{\"tx\": \"zz\"}")
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.body_mut().read_to_string().unwrap().contains("bad_hex"));
    let reg = TxBody {
        chain_id: "test-chain".into(),
        signer: org.public(),
        nonce: 1,
        payload: Payload::Register {
            subject: key(60).public(),
            role: Role::Validator,
            parent: None,
        },
    }
    .sign(&org);
    let body = serde_json::json!({ "tx": hex::encode(encode(&reg)) }).to_string();
    let mut r = agent()
        .post(&url)
        .header("content-type", "application/json")
        .send(body)
        .unwrap();
    let v: serde_json::Value =
        serde_json::from_slice(&r.body_mut().read_to_vec().unwrap()).unwrap();
    assert_eq!(v["receipt"]["outcome"], "rejected", "{v}");
    assert_eq!(v["receipt"]["reason"]["code"], "unauthorized");
    // Bad paths and ids.
    assert_eq!(
        get(&format!("{}/v1/txs/xyz", node.url)).1["code"],
        "bad_hash"
    );
    assert_eq!(
        get(&format!("{}/v1/txs/{}", node.url, "0".repeat(64))).1["code"],
        "tx_not_found"
    );
    assert_eq!(
        get(&format!("{}/v1/identities/did:web:x", node.url)).1["code"],
        "bad_did"
    );
    assert_eq!(
        get(&format!("{}/v1/blocks/999999", node.url)).1["code"],
        "block_not_found"
    );
    assert_eq!(get_text(&format!("{}/tile/0/x000.p/1", node.url)).0, 404);

    // Nothing accepted was lost: the first transaction is still there, the node is healthy,
    // and the next valid one commits.
    let (s, v) = get(&format!("{}/v1/txs/{}", node.url, good.hash().to_hex()));
    assert_eq!((s, v["status"].as_str()), (200, Some("committed")));
    assert_eq!(get(&format!("{}/health", node.url)).1["status"], "ok");
    let (s, v) = post_raw(&url, &raw(&anchor(&org, 1, 13)));
    assert_eq!(
        (s, v["receipt"]["outcome"].as_str()),
        (200, Some("applied")),
        "{v}"
    );
}

#[test]
fn a_full_mempool_answers_busy_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let org = key(4);
    init_chain(dir.path(), std::slice::from_ref(&org));
    let mut node = NodeProc::start(
        dir.path(),
        &[
            "--mempool-capacity",
            "1",
            "--block-interval-ms",
            "600000",
            "--fixed-block-interval",
        ],
    );
    let url = format!("{}/v1/txs?wait=false", node.url);
    let first = anchor(&org, 0, 1);
    let (s, v) = post_raw(&url, &raw(&first));
    assert_eq!((s, v["status"].as_str()), (202, Some("pending")), "{v}");
    let (s, v) = get(&format!("{}/v1/txs/{}", node.url, first.hash().to_hex()));
    assert_eq!((s, v["status"].as_str()), (200, Some("pending")));
    let r = agent()
        .post(&url)
        .header("content-type", "application/octet-stream")
        .send(&raw(&anchor(&org, 1, 2))[..])
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    assert_eq!(
        r.headers().get("retry-after").and_then(|v| v.to_str().ok()),
        Some("1")
    );
    // A clean stop commits what was admitted before exiting.
    node.stop();
    let out = carechain_ok(&["verify", "--data", dir.path().to_str().unwrap()]);
    assert!(out.contains("\"applied\": 1"), "{out}");
}

#[test]
fn output_into_a_closed_pipe_ends_the_command_quietly() {
    // `carechain … | head -1`: the reader is gone before the command writes. The work is
    // done, the command ends with success and no panic.
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("k.key");
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = std::process::Command::new(bin())
        .args(["key", "new", "--out", key_file.to_str().unwrap()])
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(key_file.exists());
}
