//! Our reader verifies the real trillian-tessera test log: every checkpoint signature, every
//! tree root from the tiles, every entry against its leaf hash, inclusion and consistency.

use carechain_crypto::merkle;
use carechain_log::{
    NoteVerifier, consistency_proof, inclusion_proof,
    proof::{verify_consistency, verify_inclusion},
    root,
    tiles::{TileNodeSource, decode_entry_bundle, entries_path},
};

const VKEY: &str = "example.com/log/testdata+33d7b496+AeHTu4Q3hEIMHNqc6fASMsq3rKNx280NI+oO5xCFkkSx";
const LEAVES: [&str; 15] = [
    "one", "two", "three", "four", "five", "six", "seven", "eit", "nain", "ten", "ileven", "twelf",
    "threeten", "fourten", "fivten",
];

#[test]
fn tessera_log_verifies_end_to_end() {
    let dir = super::shared_data().join("tlog/tessera-log");
    let verifier = NoteVerifier::parse(VKEY).expect("verifier key");
    let fetch = |p: &str| std::fs::read(dir.join(p)).map_err(|e| e.to_string());

    let mut checkpoints = Vec::new();
    for i in 0..16 {
        let note = std::fs::read_to_string(dir.join(format!("checkpoint.{i}"))).unwrap();
        let cp = verifier
            .verify_checkpoint(&note)
            .unwrap_or_else(|e| panic!("checkpoint.{i}: {e}"));
        assert_eq!(cp.origin, "example.com/log/testdata");
        checkpoints.push(cp);
    }
    let latest = verifier
        .verify_checkpoint(&std::fs::read_to_string(dir.join("checkpoint")).unwrap())
        .unwrap();
    assert_eq!(latest.size, 15);

    for cp in &checkpoints {
        if cp.size == 0 {
            assert_eq!(cp.root, merkle::empty_root());
            continue;
        }
        let src = TileNodeSource::new(cp.size, fetch);
        assert_eq!(
            root(&src, cp.size).unwrap(),
            cp.root,
            "root from tiles at size {}",
            cp.size
        );
        // Entries match the leaf hashes in the level-0 tile, and are the documented leaves.
        let bundle = decode_entry_bundle(&fetch(&entries_path(0, cp.size)).unwrap()).unwrap();
        assert_eq!(bundle.len() as u64, cp.size);
        let tile = src.tile(0, 0).unwrap();
        for (i, e) in bundle.iter().enumerate() {
            assert_eq!(e.as_slice(), LEAVES[i].as_bytes());
            assert_eq!(merkle::leaf_hash(e), tile[i]);
            let p = inclusion_proof(&src, i as u64, cp.size).unwrap();
            verify_inclusion(i as u64, cp.size, &tile[i], &p, &cp.root).unwrap();
        }
    }
    // Consistency between every pair of non-empty checkpoints, proven from the newest tiles.
    let src = TileNodeSource::new(15, fetch);
    for a in checkpoints.iter().filter(|c| c.size > 0) {
        for b in checkpoints.iter().filter(|c| c.size >= a.size) {
            let p = consistency_proof(&src, a.size, b.size).unwrap();
            verify_consistency(a.size, b.size, &p, &a.root, &b.root)
                .unwrap_or_else(|e| panic!("{} -> {}: {e}", a.size, b.size));
        }
    }
}

#[test]
fn a_forged_checkpoint_is_rejected() {
    let dir = super::shared_data().join("tlog/tessera-log");
    let verifier = NoteVerifier::parse(VKEY).unwrap();
    let note = std::fs::read_to_string(dir.join("checkpoint.5")).unwrap();
    let forged = note.replacen("\n5\n", "\n6\n", 1);
    assert!(verifier.verify_checkpoint(&forged).is_err());
}
