//! RFC 6962 / RFC 9162 Merkle tree hashing: leaf and interior node hashes and the root of a list.

use crate::hash::{Hash, sha256_parts};

/// Hash of a leaf: `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    sha256_parts(&[&[0u8], data])
}

/// Hash of an interior node: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    sha256_parts(&[&[1u8], &left.0, &right.0])
}

/// The root of the empty tree: `SHA-256("")`.
pub fn empty_root() -> Hash {
    sha256_parts(&[])
}

/// The largest power of two strictly smaller than `n` (requires `n >= 2`).
pub fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The Merkle tree hash (MTH) of a list of already-hashed leaves.
pub fn root_of_leaf_hashes(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        _ => {
            // Iterative bottom-up form of the recursive definition: complete pairs are
            // combined level by level and a lone right-most node is carried up unchanged.
            let mut level: Vec<Hash> = leaves.to_vec();
            while level.len() > 1 {
                let mut next = Vec::with_capacity(level.len().div_ceil(2));
                for pair in level.chunks(2) {
                    match pair {
                        [l, r] => next.push(node_hash(l, r)),
                        [l] => next.push(*l),
                        _ => unreachable!("chunks(2) yields one or two items"),
                    }
                }
                level = next;
            }
            level[0]
        }
    }
}

/// The RFC 6962 inclusion path (audit path) of leaf `index` in the tree of `leaves`
/// (already-hashed), from the leaf's sibling up; empty for a tree of one leaf or an index out
/// of range.
pub fn inclusion_path(leaves: &[Hash], index: usize) -> Vec<Hash> {
    if leaves.len() <= 1 || index >= leaves.len() {
        return Vec::new();
    }
    let k = split_point(leaves.len() as u64) as usize;
    let (mut path, sibling) = if index < k {
        (
            inclusion_path(&leaves[..k], index),
            root_of_leaf_hashes(&leaves[k..]),
        )
    } else {
        (
            inclusion_path(&leaves[k..], index - k),
            root_of_leaf_hashes(&leaves[..k]),
        )
    };
    path.push(sibling);
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recursive_mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split_point(n as u64) as usize;
                node_hash(&recursive_mth(&leaves[..k]), &recursive_mth(&leaves[k..]))
            }
        }
    }

    #[test]
    fn iterative_root_equals_rfc_recursive_definition() {
        for n in 0..70u32 {
            let leaves: Vec<Hash> = (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect();
            assert_eq!(
                root_of_leaf_hashes(&leaves),
                recursive_mth(&leaves),
                "n={n}"
            );
        }
    }

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        assert_eq!(
            empty_root().to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn split_point_is_largest_power_of_two_below() {
        assert_eq!(split_point(2), 1);
        assert_eq!(split_point(3), 2);
        assert_eq!(split_point(4), 2);
        assert_eq!(split_point(5), 4);
        assert_eq!(split_point(1 << 40), 1 << 39);
    }
}
