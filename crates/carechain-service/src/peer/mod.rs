//! Records across organizations: one node asks another, node to node, for a patient's records
//! on behalf of its signed-in user; the custodian decides with its own access layer (the
//! patient's consents, FHIR and ledger) at its own height, audits, and answers signed.
//!
//! A request names the requesting node (a node an organization registered on the ledger,
//! `register_node`), the custodian, the ledger height the requester stood at, a fresh nonce
//! and time, the patient (her identity), the query, and the user's own signed sign-in (the
//! challenge she signed in the browser, or her API client's assertion), whose audience must be
//! the requesting node's token URL. The requesting node signs the whole under
//! `Namespace::PeerRequest`; the custodian signs its answer under `Namespace::PeerAnswer`,
//! binding the request's hash. So a node can ask only for users who signed in at it, only for
//! its own organizations' members (patients may sign in anywhere), and only while their
//! sign-in lasts; every refusal of a node-signed request is audited in the patient's log.
//!
//! Mechanism: records are served, not replicated — a revocation finalized at height h stops
//! every request the custodian decides at h or later, and no copy outlives it. A custodian
//! behind the requester's height first waits (briefly) to catch up, so it never decides on a
//! state older than the one the requester saw.
//!
//! `serve` is the custodian's side; `gather` the requester's (fan-out to every node of the
//! patient's record locator).

mod gather;
mod locate;
mod network;
mod serve;

use borsh::{BorshDeserialize, BorshSerialize};
use carechain_crypto::{Hash, Namespace, PublicKey, SecretKey, Signature, sha256};
use carechain_types::encode;

pub use gather::{Gathered, Unavailable};
pub(crate) use serve::Nonces;

use crate::auth::SignInProof;

/// The largest request a custodian reads.
pub const MAX_PEER_REQUEST: usize = 64 * 1024;
/// The largest answer a requester reads.
pub const MAX_PEER_ANSWER: usize = 64 * 1024 * 1024;
/// How many blocks a requester's height may trail the custodian's: older, and the request is
/// refused as stale (it may have been decided on, or replayed from, an older state).
pub const MAX_PEER_LAG: u64 = 64;
/// How far a request's time may be from the custodian's clock (ms); nonces are remembered
/// this long.
pub const PEER_CLOCK_SKEW_MS: u64 = 120_000;
/// How long a custodian behind the requester's height waits to catch up (ms).
pub const PEER_CATCH_UP_MS: u64 = 3_000;

/// What a node asks of a custodian.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum PeerQuery {
    /// A search of one resource type within the patient's compartment (FHIR search
    /// parameters; the custodian adds the compartment itself).
    Search {
        /// The resource type.
        resource_type: String,
        /// Search parameters.
        params: Vec<(String, String)>,
    },
    /// Every record of hers the user may see (`Patient/$everything`).
    Everything,
    /// Her access log (only she may read it).
    AccessLog,
}

/// A node's request, as signed.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct PeerRequest {
    /// The chain both nodes follow.
    pub chain_id: String,
    /// The requesting node's key.
    pub from: PublicKey,
    /// The custodian node's key.
    pub to: PublicKey,
    /// The requester's ledger height when it asked.
    pub height: u64,
    /// When it asked (ms since the epoch).
    pub issued_ms: u64,
    /// Fresh randomness: each request is served once.
    pub nonce: [u8; 16],
    /// The user (her identity).
    pub actor: PublicKey,
    /// The user's signed sign-in at the requesting node.
    pub proof: SignInProof,
    /// The purpose of use (v3 ActReason code).
    pub purpose: String,
    /// The patient (her identity).
    pub patient: PublicKey,
    /// What is asked.
    pub query: PeerQuery,
}

/// A request and the requesting node's signature over it.
#[derive(Clone, Debug, BorshSerialize, BorshDeserialize)]
pub struct SignedPeerRequest {
    /// The request.
    pub request: PeerRequest,
    /// Signature by `request.from` under `Namespace::PeerRequest`.
    pub signature: Signature,
}

impl PeerRequest {
    /// Signs the request with the requesting node's key.
    pub fn sign(self, key: &SecretKey) -> SignedPeerRequest {
        let signature = key.sign(Namespace::PeerRequest, &encode(&self));
        SignedPeerRequest {
            request: self,
            signature,
        }
    }
}

impl SignedPeerRequest {
    /// The hash an answer binds.
    pub fn hash(&self) -> Hash {
        sha256(&encode(self))
    }
}

/// Why a custodian refuses a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum PeerRefusal {
    /// Not a well-formed request for this chain and this node.
    Malformed,
    /// The requester is not a node registered by an organization.
    UnknownNode,
    /// The request's signature does not verify under the requesting node's key.
    BadSignature,
    /// The request was seen before, or its time is too far from the custodian's clock.
    Replayed,
    /// The requester's height trails the custodian's by more than [`MAX_PEER_LAG`].
    StaleHeight,
    /// The custodian could not reach the requester's height in time.
    Behind,
    /// The user's sign-in does not verify, is expired, was not made at the requesting node,
    /// or the user is not of an organization the requesting node serves.
    BadActor,
    /// The access layer refused (consent, scope or role).
    Forbidden,
}

impl PeerRefusal {
    /// Stable code.
    pub fn code(self) -> &'static str {
        match self {
            PeerRefusal::Malformed => "malformed",
            PeerRefusal::UnknownNode => "unknown-node",
            PeerRefusal::BadSignature => "bad-signature",
            PeerRefusal::Replayed => "replayed",
            PeerRefusal::StaleHeight => "stale-height",
            PeerRefusal::Behind => "behind",
            PeerRefusal::BadActor => "bad-actor",
            PeerRefusal::Forbidden => "forbidden",
        }
    }
}

/// The custodian's answer.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum PeerOutcome {
    /// The records the user may see: a JSON array of resources (UTF-8).
    Served {
        /// The JSON array.
        resources: Vec<u8>,
    },
    /// Refused, with a message that names no health data.
    Refused {
        /// Why.
        refusal: PeerRefusal,
        /// A human-readable explanation.
        message: String,
    },
}

/// A custodian's answer, as signed.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct PeerAnswer {
    /// The hash of the signed request it answers.
    pub request: Hash,
    /// The custodian node.
    pub custodian: PublicKey,
    /// The custodian's ledger height the decision was taken at.
    pub height: u64,
    /// The outcome.
    pub outcome: PeerOutcome,
}

/// An answer and the custodian's signature over it.
#[derive(Clone, Debug, BorshSerialize, BorshDeserialize)]
pub struct SignedPeerAnswer {
    /// The answer.
    pub answer: PeerAnswer,
    /// Signature by `answer.custodian` under `Namespace::PeerAnswer`.
    pub signature: Signature,
}

impl PeerAnswer {
    fn sign(self, key: &SecretKey) -> SignedPeerAnswer {
        let signature = key.sign(Namespace::PeerAnswer, &encode(&self));
        SignedPeerAnswer {
            answer: self,
            signature,
        }
    }
}

impl SignedPeerAnswer {
    /// Whether the signature verifies under `custodian`'s key.
    pub fn verifies(&self, custodian: &PublicKey) -> bool {
        self.answer.custodian == *custodian
            && custodian
                .verify(
                    Namespace::PeerAnswer,
                    &encode(&self.answer),
                    &self.signature,
                )
                .is_ok()
    }
}

/// How a node reaches another: `POST {endpoint}/v1/peer` with the encoded signed request,
/// answered by the encoded signed answer. Implemented at the HTTP edge.
pub trait Transport: Send + Sync {
    /// Sends `body` to the node at `endpoint`; the answer's bytes, or why there is none.
    fn post(&self, endpoint: &str, body: Vec<u8>) -> Result<Vec<u8>, String>;
}
