//! Cryptographic primitives of carechain: SHA-256 hashes, RFC 6962 Merkle hashing,
//! Ed25519 keys with domain-separated signatures, batch verification and `did:key` identities.
//!
//! Every signature made through [`SecretKey::sign`] is over `namespace || message`, where the
//! namespace is one of the [`Namespace`] constants. The only exception is the C2SP signed-note
//! format used for log checkpoints ([`SecretKey::sign_note`]), whose own structure (key name,
//! key id, origin line) provides the separation and must stay byte-compatible with other
//! transparency-log tools.

mod did;
mod hash;
mod keys;
pub mod merkle;

pub use did::{Did, DidError};
pub use hash::{Hash, HashParseError, sha256, sha256_parts};
pub use keys::{BatchItem, CryptoError, Namespace, PublicKey, SecretKey, Signature, verify_batch};
