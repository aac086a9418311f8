//! Integration tests of the verifiable log: the 518 transparency-dev Merkle vectors, the real
//! trillian-tessera log (checkpoints, tiles, entry bundles, proofs), and property tests.

#![allow(clippy::unwrap_used)]

mod proptests;
mod tessera;
mod vectors;

use std::path::PathBuf;

/// The shared external test data folder beside the repository.
pub fn shared_data() -> PathBuf {
    let p = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data"));
    assert!(p.is_dir(), "shared test data not found at {}", p.display());
    p
}
