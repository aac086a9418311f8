//! Validator-set governance through the CLI and the HTTP API of a single node (whose node key
//! is the only genesis validator, so its proposal is its own two-thirds).

use carechain_types::{EPOCH_LENGTH, GovernanceChange, proposal_id};

use crate::common::*;

#[test]
fn validators_are_proposed_approved_and_listed_with_their_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let org = key(1);
    init_chain(dir.path(), std::slice::from_ref(&org));
    let node = NodeProc::start(dir.path(), &[]);
    let node_key = dir.path().join("node.key");
    let node_key = node_key.to_str().unwrap();

    let (s, v) = get(&format!("{}/v1/validators", node.url));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["current"].as_array().unwrap().len(), 1);
    assert_eq!(v["approval_quorum"], 1);
    assert_eq!(v["epoch_length"], EPOCH_LENGTH);
    let me = v["current"][0].as_str().unwrap().to_string();

    // A new validator, from the first epoch start two epochs ahead (the default).
    let new_key = dir.path().join("new.key");
    let new_did = carechain_ok(&["key", "new", "--out", new_key.to_str().unwrap()])
        .trim()
        .to_string();
    let out = carechain_ok(&[
        "validator",
        "propose",
        "--key",
        node_key,
        "--add",
        &new_did,
        "--url",
        &node.url,
    ]);
    assert!(out.contains("\"applied\""), "{out}");
    let at = 2 * EPOCH_LENGTH;
    let did: carechain_crypto::Did = new_did.parse().unwrap();
    let id = proposal_id(
        &GovernanceChange::AddValidator {
            key: did.public_key(),
        },
        at,
    );
    let shown = carechain_ok(&["validator", "show", &id.to_hex(), "--url", &node.url]);
    let p: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(p["state"], "approved", "{p}");
    assert_eq!(p["action"], "add");
    assert_eq!(p["effective_height"], at);
    assert_eq!(p["approvals"], serde_json::json!([me]));

    let listed: serde_json::Value =
        serde_json::from_str(&carechain_ok(&["validator", "list", "--url", &node.url])).unwrap();
    assert_eq!(
        listed["current"],
        serde_json::json!([me]),
        "not before {at}"
    );
    let sets = listed["sets"].as_array().unwrap();
    assert_eq!(sets.len(), 2, "{listed}");
    assert_eq!(sets[1]["from_height"], at);
    assert!(
        sets[1]["validators"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!(new_did))
    );
    // The new validator is an identity with the validator role.
    let ident = carechain_ok(&["identity", "show", &new_did, "--url", &node.url]);
    assert!(ident.contains("\"role\": \"validator\""), "{ident}");

    // Refused, with the reason: a height that is no epoch start, the same change twice, a
    // proposal by a non-validator.
    let org_key = crate::fhir::key_file(dir.path(), "org.key", &org);
    for (args, reason) in [
        (
            vec!["--key", node_key, "--remove", &me, "--at", "65"],
            "effective height must be a future multiple",
        ),
        (
            vec!["--key", node_key, "--add", &new_did, "--at", "128"],
            "already proposed",
        ),
        (
            vec!["--key", org_key.to_str().unwrap(), "--add", &new_did],
            "not in the current validator set",
        ),
    ] {
        let mut all = vec!["validator", "propose", "--url", &node.url];
        all.extend(args);
        let out = carechain(&all);
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && text.contains(reason), "{text}");
    }

    // Bad ids are 4xx JSON, not 500s.
    let (s, v) = get(&format!("{}/v1/validators/proposals/zz", node.url));
    assert_eq!((s, v["code"].as_str()), (400, Some("bad_proposal_id")));
    let (s, v) = get(&format!(
        "{}/v1/validators/proposals/{}",
        node.url,
        "0".repeat(64)
    ));
    assert_eq!((s, v["code"].as_str()), (404, Some("proposal_not_found")));

    // The chain with governance in it verifies offline.
    carechain_ok(&["verify", "--url", &node.url]);
}
