//! The verifiable log: an append-only RFC 6962 / RFC 9162 Merkle tree of SHA-256 leaf hashes,
//! with inclusion and consistency proofs (and the subtree proofs of the Merkle Tree
//! Certificates draft), C2SP signed-note checkpoints, and the C2SP tlog-tiles layout.
//!
//! Nothing here does I/O: complete tree nodes come from a [`NodeSource`] (a database, a
//! vector, or tiles fetched by the caller), so the same code serves the node, the offline
//! verifier and tests.

pub mod checkpoint;
pub mod proof;
pub mod tiles;
mod tree;

pub use checkpoint::{
    Checkpoint, CosignatureVerifier, Cosigner, NoteError, NoteSignature, NoteSigner, NoteVerifier,
    SignedNote, verify_cosigned,
};
pub use proof::ProofError;
pub use tree::{
    CompactRange, MemoryLog, NodeSource, consistency_proof, inclusion_proof, range_hash, root,
};

/// Errors of the log crate.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A node the computation needs is not available from the source.
    #[error("log node at level {level} index {index} is not available")]
    MissingNode {
        /// Tree level (0 = leaves).
        level: u8,
        /// Index within the level.
        index: u64,
    },
    /// A request outside the tree (index beyond size, size1 > size2).
    #[error("{0}")]
    OutOfRange(String),
    /// The node source failed (I/O, decoding).
    #[error("node source failed: {0}")]
    Source(String),
}
