//! Tampering with stored data is detected by `carechain verify`, which names the first bad
//! block or log leaf.

use std::path::Path;

use carechain_storage::tables;
use carechain_types::{decode_block, decode_receipts, encode};
use redb::{ReadableDatabase, ReadableTable};

use crate::common::*;

/// A chain of several blocks, built through the real node over HTTP.
fn build_chain(dir: &Path) {
    let org = key(3);
    init_chain(dir, std::slice::from_ref(&org));
    let mut node = NodeProc::start(dir, &[]);
    for n in 0..4u64 {
        let (s, v) = post_raw(&format!("{}/v1/txs", node.url), &raw(&anchor(&org, n, n)));
        assert_eq!(s, 200, "{v}");
    }
    node.stop();
}

fn copy_of(src: &Path) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::copy(src.join("ledger.redb"), d.path().join("ledger.redb")).unwrap();
    d
}

fn verify_fails(dir: &Path) -> serde_json::Value {
    let out = carechain(&["verify", "--data", dir.to_str().unwrap()]);
    assert!(!out.status.success(), "verify passed a tampered chain");
    serde_json::from_slice(&out.stdout).expect("verify prints a JSON report")
}

fn with_db(dir: &Path, f: impl FnOnce(&redb::WriteTransaction)) {
    let db = redb::Database::open(dir.join("ledger.redb")).unwrap();
    let txn = db.begin_write().unwrap();
    f(&txn);
    txn.commit().unwrap();
}

#[test]
fn verify_names_what_was_altered() {
    let base = tempfile::tempdir().unwrap();
    build_chain(base.path());
    let out = carechain_ok(&["verify", "--data", base.path().to_str().unwrap()]);
    assert!(out.contains("\"ok\": true"), "{out}");
    let db = redb::Database::open(base.path().join("ledger.redb")).unwrap();
    let head = {
        let rt = db.begin_read().unwrap();
        let t = rt.open_table(tables::BLOCKS).unwrap();
        t.last().unwrap().unwrap().0.value()
    };
    drop(db);
    assert!(head >= 3);

    // One byte of a transaction signature inside block 2.
    let d = copy_of(base.path());
    with_db(d.path(), |txn| {
        let mut t = txn.open_table(tables::BLOCKS).unwrap();
        let mut b = decode_block(t.get(2).unwrap().unwrap().value()).unwrap();
        b.txs[0].signature.0[10] ^= 0x40;
        t.insert(2, encode(&b).as_slice()).unwrap();
    });
    let r = verify_fails(d.path());
    assert_eq!(r["first_bad_block"], 2, "{r}");

    // One byte of the stored block encoding (the header's timestamp) of block 3.
    let d = copy_of(base.path());
    with_db(d.path(), |txn| {
        let mut t = txn.open_table(tables::BLOCKS).unwrap();
        let mut bytes = t.get(3).unwrap().unwrap().value().to_vec();
        // version (2) + chain id (4 + len) + height (8) + parent (32) → timestamp.
        let off = 2 + 4 + "test-chain".len() + 8 + 32;
        bytes[off] ^= 1;
        t.insert(3, bytes.as_slice()).unwrap();
    });
    let r = verify_fails(d.path());
    assert_eq!(r["first_bad_block"], 3, "{r}");

    // A receipt rewritten to say "rejected".
    let d = copy_of(base.path());
    with_db(d.path(), |txn| {
        let mut t = txn.open_table(tables::RECEIPTS).unwrap();
        let mut rs = decode_receipts(t.get(1).unwrap().unwrap().value()).unwrap();
        rs[0].outcome =
            carechain_types::Outcome::Rejected(carechain_types::RejectReason::Unauthorized);
        t.insert(1, encode(&rs).as_slice()).unwrap();
    });
    assert_eq!(verify_fails(d.path())["first_bad_block"], 1);

    // A log entry replaced.
    let d = copy_of(base.path());
    with_db(d.path(), |txn| {
        let mut t = txn.open_table(tables::LOG_ENTRIES).unwrap();
        t.insert(1, &[9u8; 32]).unwrap();
    });
    assert_eq!(verify_fails(d.path())["first_bad_leaf"], 1);

    // A stored log node (what tiles are served from) replaced.
    let d = copy_of(base.path());
    with_db(d.path(), |txn| {
        let mut t = txn.open_table(tables::LOG_NODES).unwrap();
        t.insert((1u8, 1u64), &[7u8; 32]).unwrap();
    });
    assert_eq!(verify_fails(d.path())["first_bad_leaf"], 2);

    // A state value altered.
    let d = copy_of(base.path());
    with_db(d.path(), |txn| {
        let mut t = txn.open_table(tables::STATE).unwrap();
        let (k, mut v) = {
            let first = t.first().unwrap().unwrap();
            (first.0.value().to_vec(), first.1.value().to_vec())
        };
        let last = v.len() - 1;
        v[last] ^= 1;
        t.insert(k.as_slice(), v.as_slice()).unwrap();
    });
    assert!(
        verify_fails(d.path())["reason"]
            .as_str()
            .unwrap()
            .contains("state")
    );

    // A checkpoint whose root was changed (signature no longer verifies).
    let d = copy_of(base.path());
    with_db(d.path(), |txn| {
        let mut t = txn.open_table(tables::CHECKPOINTS).unwrap();
        let (size, note) = {
            let last = t.last().unwrap().unwrap();
            (last.0.value(), last.1.value().to_string())
        };
        let lines: Vec<&str> = note.split('\n').collect();
        let forged = note.replacen(lines[2], "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", 1);
        t.insert(size, forged.as_str()).unwrap();
    });
    assert!(
        verify_fails(d.path())["reason"]
            .as_str()
            .unwrap()
            .contains("checkpoint")
    );
}
