//! Proof verification: RFC 9162 inclusion and consistency, and the subtree inclusion and
//! consistency proofs of draft-davidben-tls-merkle-tree-certs (appendix B).

use carechain_crypto::{Hash, merkle::node_hash};

/// Why a proof does not verify.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProofError {
    /// Sizes or indices that cannot form a valid proof.
    #[error("invalid proof request: {0}")]
    Invalid(&'static str),
    /// The proof has the wrong number of hashes.
    #[error("wrong proof length {got}, expected {want}")]
    WrongLength {
        /// Hashes supplied.
        got: usize,
        /// Hashes required.
        want: usize,
    },
    /// A hash is not 32 bytes.
    #[error("a proof or root hash is not 32 bytes")]
    BadHashLength,
    /// The computed root differs from the expected one.
    #[error("computed root does not match the expected root")]
    RootMismatch,
}

/// Converts raw byte strings to hashes, rejecting any that are not 32 bytes.
pub fn hashes_from_bytes(raw: &[Vec<u8>]) -> Result<Vec<Hash>, ProofError> {
    raw.iter()
        .map(|b| Hash::from_slice(b).ok_or(ProofError::BadHashLength))
        .collect()
}

fn decomp_incl_proof(index: u64, size: u64) -> (usize, usize) {
    let inner = (64 - (index ^ (size - 1)).leading_zeros()) as usize;
    let border = (index >> inner).count_ones() as usize;
    (inner, border)
}

fn chain_inner(mut seed: Hash, proof: &[Hash], index: u64) -> Hash {
    for (i, h) in proof.iter().enumerate() {
        seed = if (index >> i) & 1 == 0 {
            node_hash(&seed, h)
        } else {
            node_hash(h, &seed)
        };
    }
    seed
}

fn chain_inner_right(mut seed: Hash, proof: &[Hash], index: u64) -> Hash {
    for (i, h) in proof.iter().enumerate() {
        if (index >> i) & 1 == 1 {
            seed = node_hash(h, &seed);
        }
    }
    seed
}

fn chain_border_right(mut seed: Hash, proof: &[Hash]) -> Hash {
    for h in proof {
        seed = node_hash(h, &seed);
    }
    seed
}

/// The root implied by an inclusion proof for leaf `index` in a tree of `size`.
pub fn root_from_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
) -> Result<Hash, ProofError> {
    if index >= size {
        return Err(ProofError::Invalid("index is beyond size"));
    }
    let (inner, border) = decomp_incl_proof(index, size);
    if proof.len() != inner + border {
        return Err(ProofError::WrongLength {
            got: proof.len(),
            want: inner + border,
        });
    }
    let r = chain_inner(*leaf, &proof[..inner], index);
    Ok(chain_border_right(r, &proof[inner..]))
}

/// Verifies an RFC 9162 inclusion proof.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if root_from_inclusion(index, size, leaf, proof)? == *root {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

/// Verifies an RFC 9162 consistency proof between trees of `size1` and `size2`.
pub fn verify_consistency(
    size1: u64,
    size2: u64,
    proof: &[Hash],
    root1: &Hash,
    root2: &Hash,
) -> Result<(), ProofError> {
    if size2 < size1 {
        return Err(ProofError::Invalid("size2 < size1"));
    }
    if size1 == size2 {
        if !proof.is_empty() {
            return Err(ProofError::Invalid(
                "size1 = size2 but the proof is not empty",
            ));
        }
        return if root1 == root2 {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    if size1 == 0 {
        return Err(ProofError::Invalid(
            "a consistency proof from the empty tree is meaningless",
        ));
    }
    if proof.is_empty() {
        return Err(ProofError::Invalid("empty proof"));
    }
    let (mut inner, border) = decomp_incl_proof(size1 - 1, size2);
    let shift = size1.trailing_zeros() as usize;
    inner -= shift;
    let (seed, start) = if size1 == 1u64 << shift {
        (*root1, 0)
    } else {
        (proof[0], 1)
    };
    if proof.len() != start + inner + border {
        return Err(ProofError::WrongLength {
            got: proof.len(),
            want: start + inner + border,
        });
    }
    let proof = &proof[start..];
    let mask = (size1 - 1) >> shift;
    let h1 = chain_border_right(
        chain_inner_right(seed, &proof[..inner], mask),
        &proof[inner..],
    );
    if h1 != *root1 {
        return Err(ProofError::RootMismatch);
    }
    let h2 = chain_border_right(chain_inner(seed, &proof[..inner], mask), &proof[inner..]);
    if h2 != *root2 {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Whether `[start, end)` is a valid subtree: non-empty and `start` is a multiple of the
/// smallest power of two that is at least `end - start`.
pub fn is_valid_subtree(start: u64, end: u64) -> bool {
    if start >= end {
        return false;
    }
    let Some(width) = (end - start).checked_next_power_of_two() else {
        return false;
    };
    start.is_multiple_of(width)
}

/// Evaluates a subtree consistency proof: checks that `node_hash` is the hash of subtree
/// `[start, end)` of a tree of `size` leaves and returns the implied tree root.
pub fn root_from_subtree_consistency(
    size: u64,
    start: u64,
    end: u64,
    proof: &[Hash],
    subtree_hash: &Hash,
) -> Result<Hash, ProofError> {
    if !is_valid_subtree(start, end) || size < end {
        return Err(ProofError::Invalid("not a valid subtree of the tree"));
    }
    let (mut fnum, mut snum, mut tnum) = (start, end - 1, size - 1);
    if snum == tnum {
        while fnum != snum {
            fnum >>= 1;
            snum >>= 1;
            tnum >>= 1;
        }
    } else {
        while fnum != snum && snum & 1 == 1 {
            fnum >>= 1;
            snum >>= 1;
            tnum >>= 1;
        }
    }
    let mut rest = proof.iter();
    let (mut fr, mut sr) = if fnum == snum {
        (*subtree_hash, *subtree_hash)
    } else {
        let first = rest.next().ok_or(ProofError::Invalid("empty proof"))?;
        (*first, *first)
    };
    for p in rest {
        if tnum == 0 {
            return Err(ProofError::Invalid(
                "proof is longer than the path to the root",
            ));
        }
        if snum & 1 == 1 || snum == tnum {
            if fnum < snum {
                fr = node_hash(p, &fr);
            }
            sr = node_hash(p, &sr);
            while snum & 1 == 0 {
                fnum >>= 1;
                snum >>= 1;
                tnum >>= 1;
            }
        } else {
            sr = node_hash(&sr, p);
        }
        fnum >>= 1;
        snum >>= 1;
        tnum >>= 1;
    }
    if tnum != 0 {
        return Err(ProofError::Invalid(
            "proof is shorter than the path to the root",
        ));
    }
    if fr != *subtree_hash {
        return Err(ProofError::RootMismatch);
    }
    Ok(sr)
}

/// Verifies an RFC 9162 consistency proof given as raw byte strings (as received from a
/// client or a test vector). Equal sizes with an empty proof compare the roots byte for byte,
/// exactly as the reference implementation does; otherwise every hash must be 32 bytes.
pub fn verify_consistency_bytes(
    size1: u64,
    size2: u64,
    proof: &[Vec<u8>],
    root1: &[u8],
    root2: &[u8],
) -> Result<(), ProofError> {
    if size1 == size2 && size1 > 0 && proof.is_empty() {
        return if root1 == root2 {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    let proof = hashes_from_bytes(proof)?;
    let r1 = Hash::from_slice(root1).ok_or(ProofError::BadHashLength)?;
    let r2 = Hash::from_slice(root2).ok_or(ProofError::BadHashLength)?;
    verify_consistency(size1, size2, &proof, &r1, &r2)
}

/// Verifies a subtree consistency proof given as raw byte strings. Beyond
/// [`verify_subtree_consistency`], it accepts the two degenerate cases of the reference
/// implementation: the empty subtree (`start == end <= size`), proven by an empty proof when
/// its hash is the empty-tree hash, and the whole tree (`[0, size)`), proven by an empty
/// proof when both roots are equal.
pub fn verify_subtree_consistency_bytes(
    size: u64,
    start: u64,
    end: u64,
    proof: &[Vec<u8>],
    subtree_hash: &[u8],
    root: &[u8],
) -> Result<(), ProofError> {
    if start == end && end <= size {
        if !proof.is_empty() {
            return Err(ProofError::Invalid("an empty subtree has an empty proof"));
        }
        return if subtree_hash == carechain_crypto::merkle::empty_root().0 {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    if start == 0 && end == size && proof.is_empty() {
        return if subtree_hash == root {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    let proof = hashes_from_bytes(proof)?;
    let s = Hash::from_slice(subtree_hash).ok_or(ProofError::BadHashLength)?;
    let r = Hash::from_slice(root).ok_or(ProofError::BadHashLength)?;
    verify_subtree_consistency(size, start, end, &proof, &s, &r)
}

/// Verifies a subtree consistency proof against the tree root.
pub fn verify_subtree_consistency(
    size: u64,
    start: u64,
    end: u64,
    proof: &[Hash],
    subtree_hash: &Hash,
    root: &Hash,
) -> Result<(), ProofError> {
    if root_from_subtree_consistency(size, start, end, proof, subtree_hash)? == *root {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

/// Verifies that leaf `index` is in subtree `[start, end)` whose hash is `subtree_hash`.
pub fn verify_subtree_inclusion(
    index: u64,
    start: u64,
    end: u64,
    leaf: &Hash,
    proof: &[Hash],
    subtree_hash: &Hash,
) -> Result<(), ProofError> {
    if !is_valid_subtree(start, end) || index < start || index >= end {
        return Err(ProofError::Invalid("leaf is not inside a valid subtree"));
    }
    let i = index - start;
    let got = root_from_subtree_consistency(end - start, i, i + 1, proof, leaf)?;
    if got == *subtree_hash {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}
