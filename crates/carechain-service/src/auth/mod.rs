//! Authentication: OAuth2 client credentials with a `private_key_jwt` assertion (RFC 7523)
//! signed with the caller's registered Ed25519 key (JWS `EdDSA`, RFC 8037), and SMART v2
//! scopes. Tokens are opaque random strings held in memory with their session.
//!
//! The compact JWS check is written here rather than pulled from a JOSE crate: it is one
//! algorithm (EdDSA over Ed25519, the only one accepted), verified with the same
//! `ed25519-dalek` code the ledger uses, and a JOSE crate would add a second Ed25519, RSA and
//! NIST-curve stack to the build for nothing.

mod assertion;
mod challenges;
mod scope;
mod tokens;

use std::collections::HashMap;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64URL};
use carechain_crypto::{Did, PublicKey, Signature};
use carechain_types::Role;
use parking_lot::Mutex;
use serde_json::Value;

/// Why a token request or a token is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// The assertion is not a well-formed EdDSA JWT.
    #[error("invalid client assertion: {0}")]
    BadAssertion(&'static str),
    /// The signature does not verify under the identity's current key.
    #[error("client assertion signature does not verify")]
    BadSignature,
    /// The assertion is expired, not yet valid, or valid for too long.
    #[error("client assertion is expired or its lifetime is too long")]
    Expired,
    /// The identity is not registered or not active on the ledger.
    #[error("client is not an active identity on the ledger")]
    UnknownClient,
    /// A scope is not understood.
    #[error("invalid scope {0:?}")]
    BadScope(String),
    /// No token, or an unknown or expired one.
    #[error("missing, unknown or expired bearer token")]
    BadToken,
    /// The assertion was used before (its `jti`).
    #[error("client assertion was already used (jti)")]
    Replayed,
    /// Too many tokens, assertions or sign-ins at once: try again later.
    #[error("too many tokens or sign-ins in progress; try again later")]
    Busy,
}

pub use assertion::{Assertion, make_assertion, verify_assertion, verify_assertion_signature};
pub use challenges::{CHALLENGE_TTL_MS, Challenges, challenge_field};
pub use scope::{Origin, PeerOrigin, Scope, Session, SignInProof, web_scopes};
pub use tokens::{JTIS_PER_IDENTITY, MAX_TOKENS, TOKENS_PER_IDENTITY, Tokens};
