//! The off-chain half of carechain's records: each record version is encrypted under its own
//! random data key (AES-256-GCM, `ring`), with its context (patient, resource type, id,
//! version) bound as associated data; the data key is wrapped with HPKE (RFC 9180,
//! X25519 / HKDF-SHA256 / ChaCha20-Poly1305) to the node's key-encryption key and to any
//! other recipient (the patient); the ciphertext goes to a content-addressed [`BlobStore`];
//! the ledger gets only a salted [`commitment`]. Erasure destroys the ciphertext and the
//! cached key; with the wrapped keys deleted by the caller, the record is unrecoverable while
//! the commitment on the ledger still verifies as "something was here".
//!
//! This crate knows nothing of FHIR: a record is bytes plus a [`RecordContext`].

mod blob;
mod envelope;
mod pack;

pub use blob::{BlobStore, ContentId, LocalBlobStore};
pub use envelope::{
    EncryptionKey, PublicEncryptionKey, RecordContext, SealedRecord, Vault, WrappedKey, blob_id,
    commitment, open_as, pseudonym,
};
pub use pack::{MAX_BLOB, PACK_LIMIT, PackBlobStore};

/// Errors of the vault. They never contain plaintext or key material.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// Blob storage failed (I/O).
    #[error("blob store: {0}")]
    Store(String),
    /// The ciphertext is not in the blob store (never stored, or erased).
    #[error("ciphertext {0} is not in the blob store (erased or never stored)")]
    Missing(String),
    /// Decryption failed: wrong context, wrong key, or altered ciphertext.
    #[error("decryption failed: the ciphertext, its context or the key does not match")]
    Decrypt,
    /// No wrapped key for this recipient.
    #[error("the record has no data key wrapped for this recipient")]
    NotARecipient,
    /// Key wrapping or unwrapping failed.
    #[error("key wrapping failed")]
    Wrap,
    /// The operating system's random source failed.
    #[error("system randomness unavailable")]
    Randomness,
    /// The ciphertext's hash does not match its content id.
    #[error("blob {0} does not match its content address")]
    Corrupt(String),
}
