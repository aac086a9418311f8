//! The BFT validator cluster: carechain's ledger ordered by Commonware's simplex consensus.
//!
//! Each validator runs the same [`carechain_consensus::Ledger`] as the single node, under
//! an external engine: Commonware simplex orders block digests and collects votes, marshal
//! disseminates blocks, fetches missing ones from peers and delivers finalized blocks in
//! height order; [`app::App`] proposes from the node's mempool and verifies by re-executing
//! on the (possibly not yet final) parent; [`app::Finalizer`] commits each finalized block
//! durably. Transactions admitted by any validator are gossiped to the others.

pub mod app;
pub mod block;
pub mod chain;
pub mod early;
pub mod engine;
pub mod entered;
pub mod epoch;
pub mod evidence;
pub mod gossip;
pub mod leader;
pub mod net;

/// The consensus signature scheme: Ed25519, attributable (each vote individually signed),
/// over the validators' ledger keys.
pub type Scheme = commonware_consensus::simplex::scheme::ed25519::Scheme;

use carechain_crypto::SecretKey;
use carechain_types::{Genesis, Role};
use commonware_codec::DecodeExt;
use commonware_cryptography::ed25519;
use commonware_utils::ordered::Set;

/// The consensus signing key of a validator: its ledger key (votes are signed under
/// [`engine::CONSENSUS_NAMESPACE`], never a ledger namespace).
pub fn consensus_key(key: &SecretKey) -> ed25519::PrivateKey {
    ed25519::PrivateKey::decode(bytes::Bytes::copy_from_slice(&key.seed()[..]))
        .expect("a 32-byte Ed25519 seed")
}

/// The consensus public key of a ledger key.
pub fn consensus_public(key: &carechain_crypto::PublicKey) -> ed25519::PublicKey {
    ed25519::PublicKey::decode(bytes::Bytes::copy_from_slice(&key.0))
        .expect("a 32-byte Ed25519 public key")
}

/// The ledger identity (`did:key`) of a consensus public key.
pub fn ledger_did(key: &ed25519::PublicKey) -> String {
    let bytes: &[u8] = key.as_ref();
    let key = carechain_crypto::PublicKey(bytes.try_into().expect("32-byte Ed25519 key"));
    key.did().to_string()
}

/// The validator set of a chain: every genesis identity with role `validator`.
pub fn validator_set(genesis: &Genesis) -> Set<ed25519::PublicKey> {
    Set::from_iter_dedup(
        genesis
            .identities
            .iter()
            .filter(|i| i.role == Role::Validator)
            .map(|i| consensus_public(&i.key)),
    )
}
