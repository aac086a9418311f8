//! Property tests: generated proofs verify for random sizes, fail when altered, and the
//! compact range agrees with the full tree.

use carechain_crypto::{Hash, merkle};
use carechain_log::{
    CompactRange, MemoryLog, consistency_proof, inclusion_proof,
    proof::{verify_consistency, verify_inclusion},
};
use proptest::prelude::*;

fn log_of(n: u64) -> MemoryLog {
    let mut log = MemoryLog::new();
    for i in 0..n {
        log.append(&i.to_be_bytes());
    }
    log
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// The in-memory path (for a block's transactions and receipts) is the log's proof.
    #[test]
    fn in_memory_inclusion_paths_equal_the_logs_proofs(n in 1u64..300, seed in any::<u64>()) {
        let log = log_of(n);
        let index = seed % n;
        let leaves: Vec<Hash> = (0..n).map(|i| merkle::leaf_hash(&i.to_be_bytes())).collect();
        let path = merkle::inclusion_path(&leaves, index as usize);
        prop_assert_eq!(&path, &inclusion_proof(&log, index, n).unwrap());
        prop_assert!(verify_inclusion(index, n, &leaves[index as usize], &path, &merkle::root_of_leaf_hashes(&leaves)).is_ok());
    }

    #[test]
    fn inclusion_proofs_verify_and_detect_changes(n in 1u64..600, seed in any::<u64>(), flip in any::<usize>()) {
        let log = log_of(n);
        let index = seed % n;
        let leaf = merkle::leaf_hash(&index.to_be_bytes());
        let mut proof = inclusion_proof(&log, index, n).unwrap();
        prop_assert!(verify_inclusion(index, n, &leaf, &proof, &log.root()).is_ok());
        prop_assert!(verify_inclusion(index, n, &merkle::leaf_hash(b"other"), &proof, &log.root()).is_err());
        if !proof.is_empty() {
            let i = flip % proof.len();
            proof[i].0[0] ^= 1;
            prop_assert!(verify_inclusion(index, n, &leaf, &proof, &log.root()).is_err());
        }
    }

    #[test]
    fn consistency_proofs_verify(n2 in 1u64..600, seed in any::<u64>()) {
        let n1 = 1 + seed % n2;
        let log = log_of(n2);
        let root1 = log_of(n1).root();
        let proof = consistency_proof(&log, n1, n2).unwrap();
        prop_assert!(verify_consistency(n1, n2, &proof, &root1, &log.root()).is_ok());
        let wrong = Hash([7; 32]);
        prop_assert!(verify_consistency(n1, n2, &proof, &wrong, &log.root()).is_err());
    }

    #[test]
    fn compact_range_matches_full_tree(n in 0u64..1100) {
        let mut cr = CompactRange::empty();
        let mut log = MemoryLog::new();
        for i in 0..n {
            let leaf = merkle::leaf_hash(&i.to_be_bytes());
            let created = cr.append(leaf);
            log.append_leaf_hash(leaf);
            for (level, index, h) in created {
                prop_assert_eq!(carechain_log::NodeSource::node(&log, level, index).unwrap(), h);
            }
        }
        prop_assert_eq!(cr.root(), log.root());
        prop_assert_eq!(CompactRange::from_source(&log, n).unwrap(), cr);
    }
}
