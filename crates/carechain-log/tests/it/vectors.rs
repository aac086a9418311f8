//! All proof vectors of transparency-dev/merkle (RFC 6962 and subtree proofs).

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use carechain_crypto::Hash;
use carechain_log::proof::{
    hashes_from_bytes, verify_consistency_bytes, verify_inclusion,
    verify_subtree_consistency_bytes, verify_subtree_inclusion,
};
use serde_json::Value;

fn b64(v: &Value) -> Vec<u8> {
    B64.decode(v.as_str().expect("base64 string"))
        .expect("valid base64")
}

fn hash(v: &Value) -> Option<Hash> {
    Hash::from_slice(&b64(v))
}

fn raw_proof(v: &Value) -> Vec<Vec<u8>> {
    match v {
        Value::Null => vec![],
        Value::Array(a) => a.iter().map(b64).collect(),
        other => panic!("unexpected proof {other}"),
    }
}

fn proof(v: &Value) -> Option<Vec<Hash>> {
    hashes_from_bytes(&raw_proof(v)).ok()
}

fn u(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_else(|| panic!("field {k}"))
}

fn check(kind: &str, v: &Value) -> bool {
    match kind {
        "inclusion" => {
            let (Some(leaf), Some(root), Some(p)) =
                (hash(&v["leafHash"]), hash(&v["root"]), proof(&v["proof"]))
            else {
                return false;
            };
            verify_inclusion(u(v, "leafIdx"), u(v, "treeSize"), &leaf, &p, &root).is_ok()
        }
        "consistency" => verify_consistency_bytes(
            u(v, "size1"),
            u(v, "size2"),
            &raw_proof(&v["proof"]),
            &b64(&v["root1"]),
            &b64(&v["root2"]),
        )
        .is_ok(),
        "subtreeinclusion" => {
            let (Some(leaf), Some(root), Some(p)) =
                (hash(&v["leafHash"]), hash(&v["root"]), proof(&v["proof"]))
            else {
                return false;
            };
            verify_subtree_inclusion(
                u(v, "leafIdx"),
                u(v, "start"),
                u(v, "end"),
                &leaf,
                &p,
                &root,
            )
            .is_ok()
        }
        "subtreeconsistency" => verify_subtree_consistency_bytes(
            u(v, "size"),
            u(v, "start"),
            u(v, "end"),
            &raw_proof(&v["proof"]),
            &b64(&v["root1"]),
            &b64(&v["root2"]),
        )
        .is_ok(),
        other => panic!("unknown vector kind {other}"),
    }
}

fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read dir") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|x| x == "json") {
            out.push(p);
        }
    }
}

#[test]
fn all_518_transparency_dev_vectors_pass() {
    let root = super::shared_data().join("tlog/merkle-vectors");
    let mut files = Vec::new();
    walk(&root, &mut files);
    files.sort();
    assert_eq!(files.len(), 518, "expected the 518 vectors");
    let mut failures = Vec::new();
    let mut by_kind = std::collections::BTreeMap::<String, usize>::new();
    for f in &files {
        let kind = f
            .strip_prefix(&root)
            .unwrap()
            .iter()
            .next()
            .unwrap()
            .to_string_lossy()
            .to_string();
        let v: Value = serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap();
        let want_err = v["wantErr"].as_bool().unwrap_or(false);
        let ok = check(&kind, &v);
        if ok == want_err {
            failures.push(format!(
                "{} ({}): verified={ok} wantErr={want_err}",
                f.display(),
                v["desc"]
            ));
        }
        *by_kind.entry(kind).or_default() += 1;
    }
    assert!(
        failures.is_empty(),
        "{} vectors failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(by_kind.len(), 4, "{by_kind:?}");
}
