//! Node tests through its public API: pipelined block production re-verifies from genesis,
//! the tip read as one block during commits, admission errors, back-pressure, restart
//! recovery, a storage failure that stops the node, and the mempool after blocks finalized by
//! an external engine.

#![allow(clippy::unwrap_used)]

use std::{sync::Arc, time::Duration};

use carechain_consensus::{StoreSource, audit_chain};
use carechain_crypto::{Namespace, SecretKey, sha256};
use carechain_node::{Node, NodeConfig, SubmitError};
use carechain_storage::Store;
use carechain_types::{
    Genesis, GenesisIdentity, Payload, Role, TxBody, encode, rotation_proof_message,
};

const CHAIN: &str = "node-test";

fn key(i: u32) -> SecretKey {
    SecretKey::from_seed(&sha256(&i.to_le_bytes()).0)
}

fn genesis(node: &SecretKey, orgs: &[SecretKey]) -> Genesis {
    let mut identities = vec![GenesisIdentity {
        key: node.public(),
        role: Role::Validator,
        parent: None,
    }];
    identities.extend(orgs.iter().map(|k| GenesisIdentity {
        key: k.public(),
        role: Role::Organization,
        parent: None,
    }));
    Genesis {
        token: Default::default(),
        contracts: Default::default(),
        chain_id: CHAIN.into(),
        timestamp_ms: 1,
        identities,
    }
}

fn tx(k: &SecretKey, nonce: u64, payload: Payload) -> Vec<u8> {
    encode(
        &TxBody {
            chain_id: CHAIN.into(),
            signer: k.public(),
            nonce,
            payload,
        }
        .sign(k),
    )
}

fn anchor(k: &SecretKey, nonce: u64) -> Vec<u8> {
    tx(
        k,
        nonce,
        Payload::Anchor {
            kind: "t".into(),
            commitment: sha256(&[&k.public().0[..], &nonce.to_le_bytes()].concat()),
        },
    )
}

fn wait_for_log(node: &Node, size: u64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let mut rx = node.subscribe();
    while node.store().log().size() < size {
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(30), rx.changed()).await })
            .expect("blocks keep coming")
            .unwrap();
    }
}

fn start(
    dir: &std::path::Path,
    node_key: &SecretKey,
    orgs: &[SecretKey],
    config: NodeConfig,
) -> Arc<Node> {
    let path = dir.join("ledger.redb");
    let store = if path.exists() {
        Store::open(&path).unwrap()
    } else {
        Store::create(&path, &genesis(node_key, orgs)).unwrap()
    };
    Node::start(Arc::new(store), node_key.clone(), config).unwrap()
}

#[test]
fn pipelined_blocks_reexecute_to_the_same_roots() {
    let dir = tempfile::tempdir().unwrap();
    let node_key = key(0);
    let orgs: Vec<SecretKey> = (1..=20).map(key).collect();
    // Small blocks cut on a fixed 1 ms cadence (not only when the committer is idle), so that
    // many blocks are executed on top of a block still being committed; fewer transactions per
    // block than signers, so a block and its parent touch different state buckets (a root that
    // left out the parent's updates would then differ).
    let config = NodeConfig {
        block_interval: Duration::from_millis(1),
        fixed_interval: true,
        max_block_txs: 7,
        mempool_capacity: 100_000,
    };
    let node = start(dir.path(), &node_key, &orgs, config);
    let mut expected = 0;
    for round in 0..30u64 {
        let mut batch = Vec::new();
        for o in &orgs {
            batch.push(anchor(o, round));
            expected += 1;
        }
        for r in node.submit_batch(batch) {
            r.unwrap();
        }
    }
    wait_for_log(&node, expected);
    assert!(
        node.store().head() > 10,
        "expected many blocks, got {}",
        node.store().head()
    );
    node.shutdown();
    drop(node);
    // The whole chain re-executes from genesis to the stored roots, receipts, log and state.
    let report = audit_chain(&StoreSource::open(&dir.path().join("ledger.redb")).unwrap()).unwrap();
    assert_eq!(report.applied, expected);
    assert_eq!(report.checkpoints, report.blocks);
}

#[test]
fn the_tip_is_read_as_one_block_while_blocks_commit() {
    let dir = tempfile::tempdir().unwrap();
    let node_key = key(0);
    let orgs: Vec<SecretKey> = (1..=10).map(key).collect();
    let config = NodeConfig {
        block_interval: Duration::from_millis(1),
        fixed_interval: true,
        max_block_txs: 3,
        mempool_capacity: 100_000,
    };
    let node = start(dir.path(), &node_key, &orgs, config);
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // A reader as `/v1/status` is one: each tip it sees is the header of the block at its
    // height, in hash, state root and log, whatever is being committed meanwhile.
    let reader = {
        let (node, done) = (node.clone(), done.clone());
        std::thread::spawn(move || {
            let mut seen = std::collections::BTreeSet::new();
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let tip = node.store().tip();
                if tip.height == 0 {
                    continue;
                }
                let header = node
                    .store()
                    .snapshot()
                    .unwrap()
                    .block(tip.height)
                    .unwrap()
                    .unwrap()
                    .header;
                assert_eq!(tip.hash, header.hash(), "height {}", tip.height);
                assert_eq!(tip.state_root, header.state_root, "height {}", tip.height);
                assert_eq!(tip.log.size(), header.log_size, "height {}", tip.height);
                assert_eq!(tip.log.root(), header.log_root, "height {}", tip.height);
                assert_eq!(
                    tip.timestamp_ms, header.timestamp_ms,
                    "height {}",
                    tip.height
                );
                seen.insert(tip.height);
            }
            seen.len()
        })
    };
    let mut expected = 0;
    for round in 0..20u64 {
        let batch: Vec<Vec<u8>> = orgs.iter().map(|o| anchor(o, round)).collect();
        expected += batch.len() as u64;
        for r in node.submit_batch(batch) {
            r.unwrap();
        }
    }
    wait_for_log(&node, expected);
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let heights_seen = reader.join().unwrap();
    assert!(heights_seen > 10, "the reader saw {heights_seen} heights");
    node.shutdown();
}

#[test]
fn admission_checks_and_back_pressure() {
    let dir = tempfile::tempdir().unwrap();
    let node_key = key(0);
    let org = key(1);
    // A producer that cuts rarely (even when idle), and a tiny mempool.
    let config = NodeConfig {
        block_interval: Duration::from_secs(3600),
        fixed_interval: true,
        max_block_txs: 1000,
        mempool_capacity: 3,
    };
    let node = start(dir.path(), &node_key, std::slice::from_ref(&org), config);
    assert!(node.submit(anchor(&org, 0)).is_ok());
    assert_eq!(
        node.submit(anchor(&org, 0)).unwrap_err(),
        SubmitError::Duplicate(sha256(&anchor(&org, 0)).to_hex())
    );
    assert!(matches!(
        node.submit(anchor(&org, 5)),
        Err(SubmitError::NonceGap {
            expected: 1,
            got: 5
        })
    ));
    assert!(node.submit(anchor(&org, 1)).is_ok());
    assert!(node.submit(anchor(&org, 2)).is_ok());
    assert_eq!(node.submit(anchor(&org, 3)).unwrap_err(), SubmitError::Busy);
    assert_eq!(node.mempool_len(), 3);
    assert_eq!(node.submit(b"garbage".to_vec()).unwrap_err().code(), "busy");
    assert_eq!(SubmitError::Busy.code(), "busy");
    node.shutdown();
    // Shutdown drains: what was admitted is committed.
    assert_eq!(node.store().log().size(), 3);
    assert_eq!(
        node.submit(anchor(&org, 3)).unwrap_err(),
        SubmitError::Stopped
    );
}

#[test]
fn rotation_then_old_key_is_refused_at_admission() {
    let dir = tempfile::tempdir().unwrap();
    let node_key = key(0);
    let org = key(1);
    let new = key(2);
    let config = NodeConfig {
        block_interval: Duration::from_millis(2),
        ..NodeConfig::default()
    };
    let node = start(dir.path(), &node_key, std::slice::from_ref(&org), config);
    let msg = rotation_proof_message(CHAIN, &org.public(), &new.public(), 0);
    let rotate = tx(
        &org,
        0,
        Payload::RotateKey {
            new_key: new.public(),
            proof: new.sign(Namespace::KeyRotation, &msg),
        },
    );
    node.submit(rotate).unwrap();
    wait_for_log(&node, 1);
    let by_old = tx(
        &org,
        1,
        Payload::Anchor {
            kind: "t".into(),
            commitment: sha256(b"a"),
        },
    );
    assert_eq!(node.submit(by_old).unwrap_err(), SubmitError::BadSignature);
    let by_new = encode(
        &TxBody {
            chain_id: CHAIN.into(),
            signer: org.public(),
            nonce: 1,
            payload: Payload::Anchor {
                kind: "t".into(),
                commitment: sha256(b"b"),
            },
        }
        .sign(&new),
    );
    node.submit(by_new).unwrap();
    wait_for_log(&node, 2);
    assert!(matches!(
        node.submit(anchor(&key(77), 0)),
        Err(SubmitError::UnknownSigner)
    ));
    assert!(matches!(
        node.submit(encode(
            &TxBody {
                chain_id: "elsewhere".into(),
                signer: org.public(),
                nonce: 2,
                payload: Payload::Deactivate {
                    subject: org.public()
                }
            }
            .sign(&new)
        )),
        Err(SubmitError::WrongChain { .. })
    ));
}

#[test]
fn restart_recovers_head_state_and_log() {
    let dir = tempfile::tempdir().unwrap();
    let node_key = key(0);
    let orgs: Vec<SecretKey> = (1..=4).map(key).collect();
    let config = NodeConfig {
        block_interval: Duration::from_millis(2),
        fixed_interval: false,
        max_block_txs: 5,
        mempool_capacity: 1000,
    };
    let node = start(dir.path(), &node_key, &orgs, config.clone());
    for n in 0..6 {
        for r in node.submit_batch(orgs.iter().map(|o| anchor(o, n)).collect()) {
            r.unwrap();
        }
    }
    wait_for_log(&node, 24);
    let (head, root, log_root, cp) = (
        node.store().head(),
        node.store().commitment().root(),
        node.store().log().root(),
        node.store().latest_checkpoint(),
    );
    // No clean shutdown: the store is dropped as a crash would leave it (everything
    // acknowledged is in committed redb transactions).
    node.shutdown();
    drop(node);
    let node = start(dir.path(), &node_key, &orgs, config);
    assert_eq!(node.store().head(), head);
    assert_eq!(node.store().commitment().root(), root);
    assert_eq!(node.store().log().root(), log_root);
    assert_eq!(node.store().latest_checkpoint(), cp);
    // Nonces continue where they were.
    node.submit(anchor(&orgs[0], 6)).unwrap();
    let replay = tx(
        &orgs[1],
        0,
        Payload::Anchor {
            kind: "t".into(),
            commitment: sha256(b"other"),
        },
    );
    assert!(matches!(
        node.submit(replay),
        Err(SubmitError::NonceReplayed {
            expected: 6,
            got: 0
        })
    ));
    // An already committed transaction is refused as a duplicate.
    assert!(matches!(
        node.submit(anchor(&orgs[1], 0)),
        Err(SubmitError::Duplicate(_))
    ));
    wait_for_log(&node, 25);
}

/// Transactions signed by the node on submission are admitted like verified ones, committed,
/// and re-verify from genesis; a key that is not the signer's current key, a wrong chain or an
/// unknown signer is refused without anything reaching the mempool.
#[test]
fn signed_on_submission_is_admitted_and_reverifies() {
    let dir = tempfile::tempdir().unwrap();
    let node_key = key(0);
    let orgs: Vec<SecretKey> = (1..=2).map(key).collect();
    let node = start(dir.path(), &node_key, &orgs, NodeConfig::default());
    let body = |k: &SecretKey, nonce: u64, chain: &str| TxBody {
        chain_id: chain.into(),
        signer: k.public(),
        nonce,
        payload: Payload::Anchor {
            kind: "t".into(),
            commitment: sha256(&nonce.to_le_bytes()),
        },
    };
    let ok = node.sign_and_submit(&orgs[0], (0..5).map(|n| body(&orgs[0], n, CHAIN)).collect());
    assert!(ok.iter().all(Result::is_ok), "{ok:?}");
    // Each hash is the transaction's id, as with submit_batch.
    let again = node.submit(tx(
        &orgs[0],
        0,
        Payload::Anchor {
            kind: "t".into(),
            commitment: sha256(&0u64.to_le_bytes()),
        },
    ));
    assert!(again.is_err(), "the same transaction admitted twice");
    let mut forged = body(&orgs[1], 0, CHAIN);
    forged.signer = orgs[0].public();
    let refused = node.sign_and_submit(&orgs[1], vec![forged]);
    assert!(
        matches!(refused[0], Err(SubmitError::BadSignature)),
        "{refused:?}"
    );
    let refused = node.sign_and_submit(&orgs[1], vec![body(&orgs[1], 0, "other-chain")]);
    assert!(
        matches!(refused[0], Err(SubmitError::WrongChain { .. })),
        "{refused:?}"
    );
    let stranger = key(99);
    let refused = node.sign_and_submit(&stranger, vec![body(&stranger, 0, CHAIN)]);
    assert!(
        matches!(refused[0], Err(SubmitError::UnknownSigner)),
        "{refused:?}"
    );
    wait_for_log(&node, 5);
    let first = ok[0].as_ref().unwrap().hash;
    assert!(
        node.snapshot()
            .unwrap()
            .tx_location(&first)
            .unwrap()
            .is_some()
    );
    node.shutdown();
    drop(node);
    let report = audit_chain(&StoreSource::open(&dir.path().join("ledger.redb")).unwrap()).unwrap();
    assert_eq!(report.applied, 5);
}

/// Where each of `txs` is, by the store and by `snap`: both must agree with the blocks.
fn assert_located(node: &Node, snap: &carechain_storage::Snapshot, txs: &[carechain_crypto::Hash]) {
    for h in txs {
        let loc = node
            .store()
            .tx_location(h)
            .unwrap()
            .unwrap_or_else(|| panic!("{h:?} not found by the store"));
        assert_eq!(
            snap.tx_location(h).unwrap(),
            Some(loc),
            "the snapshot disagrees"
        );
        let block = snap.block(loc.height).unwrap().unwrap();
        assert_eq!(block.txs[loc.position as usize].hash(), *h);
    }
}

/// The transaction index is merged in bulk in the background: every committed transaction is
/// found before its merge (held in memory), after it (in the table) — also by a snapshot taken
/// before the merge — after a crash that left blocks unmerged, and by a read-only handle.
#[test]
fn committed_transactions_are_found_before_and_after_the_index_merge_and_across_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let node_key = key(0);
    let orgs: Vec<SecretKey> = (1..=4).map(key).collect();
    let config = NodeConfig {
        block_interval: Duration::from_millis(1),
        fixed_interval: false,
        max_block_txs: 3,
        mempool_capacity: 1000,
    };
    let node = start(dir.path(), &node_key, &orgs, config.clone());
    // Merges only when asked.
    node.store()
        .set_index_merge(usize::MAX, Duration::from_secs(3600));
    let submit = |node: &Node, txs: &mut Vec<carechain_crypto::Hash>, round: u64| {
        for r in node.submit_batch(orgs.iter().map(|o| anchor(o, round)).collect()) {
            txs.push(r.unwrap().hash);
        }
    };
    let mut txs = Vec::new();
    for round in 0..5 {
        submit(&node, &mut txs, round);
    }
    wait_for_log(&node, 20);
    let before = node.snapshot().unwrap();
    assert_eq!(node.store().tx_indexed().unwrap(), 0, "nothing merged yet");
    assert_located(&node, &before, &txs);
    node.store().merge_index().unwrap();
    assert_eq!(node.store().tx_indexed().unwrap(), node.store().head());
    // The snapshot from before the merge reads the merged blocks themselves.
    assert_located(&node, &before, &txs);
    assert_located(&node, &node.snapshot().unwrap(), &txs);
    // More blocks, held in memory only, then a crash.
    for round in 5..10 {
        submit(&node, &mut txs, round);
    }
    wait_for_log(&node, 40);
    let merged = node.store().tx_indexed().unwrap();
    assert!(
        merged < node.store().head(),
        "the new blocks are not merged"
    );
    node.shutdown();
    drop(node);
    let read_only = carechain_storage::open_read_only(&dir.path().join("ledger.redb")).unwrap();
    let snap = read_only.snapshot().unwrap();
    for h in &txs {
        let loc = snap
            .tx_location(h)
            .unwrap()
            .expect("found by a read-only handle");
        assert_eq!(
            snap.block(loc.height).unwrap().unwrap().txs[loc.position as usize].hash(),
            *h
        );
    }
    drop(snap);
    drop(read_only);
    let node = start(dir.path(), &node_key, &orgs, config);
    node.store()
        .set_index_merge(usize::MAX, Duration::from_secs(3600));
    assert_eq!(node.store().tx_indexed().unwrap(), merged);
    assert_located(&node, &node.snapshot().unwrap(), &txs);
    // A committed transaction submitted again is still a duplicate.
    assert!(matches!(
        node.submit(anchor(&orgs[2], 7)),
        Err(SubmitError::Duplicate(_))
    ));
    node.store().merge_index().unwrap();
    assert_located(&node, &node.snapshot().unwrap(), &txs);
}

#[test]
fn a_finalized_block_takes_its_transactions_and_the_stale_ones_out_and_the_nonce_book_follows() {
    let dir = tempfile::tempdir().unwrap();
    let (node_key, a, b) = (key(1), key(2), key(3));
    let path = dir.path().join("ledger.redb");
    let store = Store::create(&path, &genesis(&node_key, &[a.clone(), b.clone()])).unwrap();
    let node = Node::start_external(Arc::new(store), node_key, NodeConfig::default()).unwrap();
    let submit = |raw: Vec<u8>| node.submit(raw).map(|_| ());
    for n in 0..5 {
        submit(anchor(&a, n)).unwrap();
    }
    for n in 0..3 {
        submit(anchor(&b, n)).unwrap();
    }
    // Another validator's block: a's nonces 0 and 1, then a different transaction of a with
    // nonce 2 (never seen here), which makes the pending a/2 stale.
    let other = tx(
        &a,
        2,
        Payload::Anchor {
            kind: "other".into(),
            commitment: sha256(b"other"),
        },
    );
    let (mut txs, mut keys) = node.proposal(2, |_| false);
    txs.push(carechain_types::decode_tx(&other).unwrap());
    keys.push(None);
    let commit = |txs, keys, ts| {
        let (block, executed) = node.ledger().propose_on(None, txs, keys, ts).unwrap();
        node.commit_finalized(&block, &executed).unwrap();
    };
    commit(txs, keys, 2);
    // Left: a/3, a/4 and b/0..2; a's next nonce is 5, b's 3.
    assert_eq!(node.mempool_len(), 5);
    let (left, _) = node.proposal(usize::MAX, |_| false);
    let nonces: Vec<(bool, u64)> = left
        .iter()
        .map(|t| (t.body.signer == a.public(), t.body.nonce))
        .collect();
    assert_eq!(
        nonces,
        [(true, 3), (true, 4), (false, 0), (false, 1), (false, 2)]
    );
    // `seen` is still known (a duplicate), the book's next nonce is `next`: one past it is a
    // gap, and `next` itself is admitted.
    let book_says = |k: &SecretKey, seen: u64, next: u64| {
        assert_eq!(
            submit(anchor(k, seen)),
            Err(SubmitError::Duplicate(sha256(&anchor(k, seen)).to_hex()))
        );
        assert_eq!(
            submit(anchor(k, next + 1)),
            Err(SubmitError::NonceGap {
                expected: next,
                got: next + 1
            })
        );
        submit(anchor(k, next)).unwrap();
    };
    book_says(&a, 3, 5);
    // Everything pending goes into the next block: the book forgets both signers, and the
    // state's nonces apply again.
    let (txs, keys) = node.proposal(usize::MAX, |_| false);
    commit(txs, keys, 3);
    assert_eq!(node.mempool_len(), 0);
    book_says(&b, 2, 3);
    submit(anchor(&a, 6)).unwrap();
    // Another validator's block uses b's nonces 3 and 4 with transactions never seen here:
    // the pending b/3 is stale, and b's next nonce comes from the state again (5).
    let theirs: Vec<_> = [3u8, 4]
        .map(|n| {
            let payload = Payload::Anchor {
                kind: "other".into(),
                commitment: sha256(&[n]),
            };
            carechain_types::decode_tx(&tx(&b, n.into(), payload)).unwrap()
        })
        .into();
    commit(theirs, vec![None, None], 4);
    assert_eq!(node.mempool_len(), 1, "a/6 stays");
    submit(anchor(&b, 5)).unwrap();
}
