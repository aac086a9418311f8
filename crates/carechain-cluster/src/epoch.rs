//! Validator sets by epoch: the consensus scheme (participants, and this validator's signing
//! key when it is one of them) of each epoch, read from the ledger's validator schedule.
//!
//! An epoch is [`EPOCH_LENGTH`] heights (epoch `e` holds heights `e·L ..= e·L + L − 1`, as
//! Commonware's `FixedEpocher`); governance changes take effect only at an epoch's first
//! height and are approved before it, so the set of epoch `e` is fixed once the block at
//! height `e·L − 1` (the previous epoch's last) is durable. Simplex runs one instance per
//! epoch over that set; marshal verifies each epoch's certificates with it.

use std::{collections::BTreeMap, num::NonZeroU64, sync::Arc};

use carechain_node::Node;
use carechain_types::EPOCH_LENGTH;
use commonware_consensus::types::{Epoch, FixedEpocher};
use commonware_cryptography::{
    certificate::{Provider, Scoped},
    ed25519::{PrivateKey, PublicKey},
};
use commonware_utils::ordered::Set;
use parking_lot::Mutex;

use crate::{Scheme, consensus_public, engine::CONSENSUS_NAMESPACE};

/// The epoch schedule consensus and marshal share.
pub fn epocher() -> FixedEpocher {
    FixedEpocher::new(NonZeroU64::new(EPOCH_LENGTH).expect("a nonzero epoch length"))
}

/// The epoch holding `height`.
pub fn epoch_of(height: u64) -> Epoch {
    Epoch::new(height / EPOCH_LENGTH)
}

/// The last height of `epoch`.
pub fn last_height(epoch: Epoch) -> u64 {
    (epoch.get() + 1) * EPOCH_LENGTH - 1
}

/// Each epoch's consensus scheme, derived from the durable validator schedule and kept once
/// derived (a set never changes after its epoch is fixed). Shared by clones.
#[derive(Clone)]
pub struct EpochSchemes {
    node: Arc<Node>,
    key: PrivateKey,
    known: Arc<Mutex<BTreeMap<u64, Arc<Scheme>>>>,
}

impl EpochSchemes {
    /// Schemes for the validator whose consensus key is `key`, over `node`'s ledger.
    pub fn new(node: Arc<Node>, key: PrivateKey) -> EpochSchemes {
        EpochSchemes {
            node,
            key,
            known: Arc::default(),
        }
    }

    /// The scheme of `epoch`: a signer when this validator is in the epoch's set, else a
    /// verifier (it follows the epoch's certificates without voting). `None` while the set is
    /// not fixed yet (the previous epoch's last block is not durable here).
    pub fn scheme(&self, epoch: Epoch) -> Option<Arc<Scheme>> {
        if let Some(s) = self.known.lock().get(&epoch.get()) {
            return Some(s.clone());
        }
        let first = epoch.get().checked_mul(EPOCH_LENGTH)?;
        // The head is read before the schedule: a later snapshot holds the same set for an
        // epoch that was already fixed.
        if first > 0 && self.node.store().head() < first - 1 {
            return None;
        }
        let schedule = self.node.ledger().validator_schedule().ok()?;
        let set = Set::from_iter_dedup(schedule.at(first).iter().map(consensus_public));
        if set.is_empty() {
            return None;
        }
        let scheme = Arc::new(
            Scheme::signer(CONSENSUS_NAMESPACE, set.clone(), self.key.clone())
                .unwrap_or_else(|| Scheme::verifier(CONSENSUS_NAMESPACE, set)),
        );
        self.known.lock().insert(epoch.get(), scheme.clone());
        Some(scheme)
    }

    /// The validators of `epoch`, if fixed.
    pub fn participants(&self, epoch: Epoch) -> Option<Set<PublicKey>> {
        use commonware_cryptography::certificate::Scheme as _;
        self.scheme(epoch).map(|s| s.participants().clone())
    }

    /// Whether this validator votes in `epoch`.
    pub fn is_member(&self, epoch: Epoch) -> bool {
        use commonware_cryptography::certificate::Scheme as _;
        self.scheme(epoch).is_some_and(|s| s.me().is_some())
    }

    /// Forgets the schemes of epochs before `epoch` (they are derived again if asked for,
    /// e.g. to serve an old certificate to a peer that is catching up).
    pub fn forget_before(&self, epoch: Epoch) {
        self.known.lock().retain(|e, _| *e >= epoch.get());
    }
}

impl Provider for EpochSchemes {
    type Scope = Epoch;
    type Scheme = Scheme;

    fn scoped(&self, epoch: Epoch) -> Option<Scoped<Scheme>> {
        self.scheme(epoch).map(Scoped::scheme)
    }
}
