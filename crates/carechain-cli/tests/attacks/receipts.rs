//! Hole 5: A receipt verifies only for an audit-batch anchor the node signed on this chain: a
//! commitment anyone else anchors proves nothing, in the CLI verifier and in the browser.

use carechain_crypto::SecretKey;
use carechain_types::Payload;
use serde_json::json;

use crate::*;

#[test]
fn a_receipt_for_an_event_anchored_by_someone_else_does_not_verify() {
    let d = Demo::start();
    let alice_id = d.alice_id();
    let log = d.access_log(&d.alice(), &alice_id);
    let (_, status) = get(&format!("{}/v1/status", d.url));
    let vkey = status["checkpoint_key"].as_str().unwrap().to_string();
    let verifier = carechain_log::NoteVerifier::parse(&vkey).unwrap();
    let trust = carechain_service::ReceiptTrust::default();
    let real = log.iter().find(|e| e["inclusion"].is_object()).unwrap();
    carechain_service::verify_receipt(real, &verifier, &trust).unwrap();

    // Bob invents an event ("Dr. Okafor read your record") and anchors its commitment as an
    // audit batch of one, signed by himself, then builds the receipt.
    let bob = d.bob();
    let mut event = real["event"].clone();
    event["outcomeDesc"] = json!("allowed");
    event["agent"][0]["who"]["identifier"]["value"] = json!(d.dan().public().did().to_string());
    let salt = [7u8; 32];
    let commitment = carechain_service::audit_commitment(&salt, &event);
    for kind in ["audit-batch", "record"] {
        let receipt = submit(
            &d,
            &bob,
            Payload::Anchor {
                kind: kind.into(),
                commitment,
            },
        );
        let hash = receipt["tx_hash"].as_str().unwrap().to_string();
        let (_, tx) = get(&format!("{}/v1/txs/{hash}", d.url));
        let raw_tx = fetch_raw_tx(&d, &tx);
        let forged = json!({"event": event, "salt": hex::encode(salt), "tx": raw_tx,
            "inclusion": tx["inclusion"]});
        let err = carechain_service::verify_receipt(&forged, &verifier, &trust).unwrap_err();
        let why = if kind == "audit-batch" {
            "not signed by the node"
        } else {
            "not an audit-batch anchor"
        };
        assert!(err.contains(why), "{kind}: {err}");
        // The command-line verifier refuses it too.
        let file = d.data.join("forged.json");
        std::fs::write(&file, forged.to_string()).unwrap();
        let out = carechain(&[
            "verify-receipt",
            "--file",
            file.to_str().unwrap(),
            "--checkpoint-key",
            &vkey,
        ]);
        assert!(
            !out.status.success(),
            "verify-receipt accepted a forged receipt"
        );
        // Trusting Bob as a validator would accept the audit-batch one (the check is the
        // signer), never the `record` one (the kind).
        let trusting = carechain_service::ReceiptTrust {
            signers: vec![bob.public()],
        };
        let r = carechain_service::verify_receipt(&forged, &verifier, &trusting);
        assert_eq!(r.is_ok(), kind == "audit-batch", "{kind}: {r:?}");
    }
    // A real receipt from another chain's checkpoint key does not verify here.
    let other = carechain_log::NoteVerifier::new(
        "carechain/other",
        SecretKey::from_seed(&[5; 32]).public(),
    );
    assert!(carechain_service::verify_receipt(real, &other, &trust).is_err());
}

/// The raw transaction bytes (hex) of a committed transaction, from its block.
fn fetch_raw_tx(d: &Demo, tx: &serde_json::Value) -> String {
    let height = tx["height"].as_u64().unwrap();
    let pos = tx["position"].as_u64().unwrap() as usize;
    let mut r = agent()
        .get(&format!("{}/v1/blocks/{height}?format=raw", d.url))
        .call()
        .unwrap();
    let bytes = r.body_mut().read_to_vec().unwrap();
    let block: carechain_types::Block = carechain_types::decode_block(&bytes).unwrap();
    hex::encode(carechain_types::encode(&block.txs[pos]))
}
