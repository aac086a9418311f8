//! Which validators have entered which epoch: each validator announces on its own p2p channel
//! that it has started an epoch's simplex instance, and the leader of the epoch's first block
//! waits (at most `ValidatorConfig::epoch_start_wait`) until the epoch's whole validator set
//! has, instead of a fixed time.
//!
//! Why the leader waits at all: a new simplex instance has heard from no one, and its skip
//! heuristic takes a view's leader for inactive unless something of that leader's arrived in
//! the instance before the view began (view 2's leader also leads view 1, see
//! [`crate::leader`]; view 3's has to be heard by the end of view 2). Validators enter an
//! epoch when they have made the previous epoch's last block durable, tens of milliseconds
//! apart on a busy host; a validator still committing votes late, and when it leads the next
//! view the quicker ones nullify that view while the rest notarize, and nothing moves until
//! the certification timeout (seconds). Waiting for everyone costs only the actual skew.

use std::collections::{BTreeMap, BTreeSet};

use commonware_cryptography::ed25519::PublicKey;
use commonware_utils::ordered::Set;
use parking_lot::Mutex;
use tokio::sync::watch;

/// How many epochs past this validator's own an announcement may be for (later ones are
/// dropped: a peer cannot make this validator hold announcements without bound).
pub const AHEAD: u64 = 2;

/// Encodes an announcement: the epoch entered (8 bytes, big-endian).
pub fn encode(epoch: u64) -> Vec<u8> {
    epoch.to_be_bytes().to_vec()
}

/// Decodes an announcement; `None` for anything but exactly 8 bytes.
pub fn decode(msg: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(msg.try_into().ok()?))
}

/// Who has entered which epoch, as far as this validator knows (its own entries and its
/// peers' announcements), for the epoch it is in and the next [`AHEAD`].
pub struct Entered {
    state: Mutex<State>,
    changed: watch::Sender<u64>,
}

#[derive(Default)]
struct State {
    /// The epoch this validator is in.
    mine: u64,
    /// Who entered each epoch from `mine` on.
    epochs: BTreeMap<u64, BTreeSet<PublicKey>>,
}

impl Default for Entered {
    fn default() -> Self {
        Entered {
            state: Mutex::default(),
            changed: watch::Sender::new(0),
        }
    }
}

impl Entered {
    /// This validator (`me`) entered `epoch`: earlier epochs are forgotten.
    pub fn enter(&self, epoch: u64, me: PublicKey) {
        {
            let mut s = self.state.lock();
            s.mine = s.mine.max(epoch);
            let mine = s.mine;
            s.epochs.retain(|e, _| *e >= mine);
        }
        self.record(epoch, me);
    }

    /// `who` says it entered `epoch`; kept if the epoch is this validator's or one of the
    /// next [`AHEAD`]. Returns whether it was kept.
    pub fn record(&self, epoch: u64, who: PublicKey) -> bool {
        {
            let mut s = self.state.lock();
            if epoch < s.mine || epoch > s.mine.saturating_add(AHEAD) {
                return false;
            }
            if !s.epochs.entry(epoch).or_default().insert(who) {
                return true;
            }
        }
        self.changed.send_modify(|n| *n += 1);
        true
    }

    /// Whether every member of `set` has entered `epoch`.
    pub fn all(&self, epoch: u64, set: &Set<PublicKey>) -> bool {
        let s = self.state.lock();
        s.epochs
            .get(&epoch)
            .is_some_and(|who| set.iter().all(|k| who.contains(k)))
    }

    /// Resolves once every member of `set` has entered `epoch` (callers cap the wait).
    pub async fn wait_all(&self, epoch: u64, set: &Set<PublicKey>) {
        let mut changes = self.changed.subscribe();
        while !self.all(epoch, set) {
            if changes.changed().await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use commonware_cryptography::{Signer as _, ed25519::PrivateKey};

    fn key(i: u64) -> PublicKey {
        PrivateKey::from_seed(i).public_key()
    }

    #[test]
    fn waits_for_the_whole_set_and_keeps_only_the_next_epochs() {
        let entered = Entered::default();
        let set = Set::from_iter_dedup((0..3).map(key));
        entered.enter(4, key(0));
        assert!(entered.record(5, key(1)), "the next epoch is kept");
        assert!(!entered.record(4 + AHEAD + 1, key(1)), "too far ahead");
        assert!(!entered.record(3, key(1)), "a past epoch");
        assert!(entered.record(4, key(1)));
        assert!(!entered.all(4, &set));
        // A key outside the set does not count.
        assert!(entered.record(4, key(9)));
        assert!(!entered.all(4, &set));
        let waiting = entered.wait_all(4, &set);
        futures::pin_mut!(waiting);
        let waker = futures::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        assert!(waiting.as_mut().poll(&mut cx).is_pending());
        assert!(entered.record(4, key(2)));
        assert!(waiting.as_mut().poll(&mut cx).is_ready());
        assert!(entered.all(4, &set));
        // Entering epoch 5 forgets epoch 4 but keeps what was announced for 5.
        entered.enter(5, key(0));
        assert!(!entered.all(4, &set));
        assert!(!entered.all(5, &set));
        assert!(entered.record(5, key(2)));
        assert!(
            entered.all(5, &set),
            "key 1 announced epoch 5 before key 0 entered it"
        );
    }

    #[test]
    fn announcements_are_exactly_eight_bytes() {
        assert_eq!(decode(&encode(7)), Some(7));
        assert_eq!(decode(&[0; 7]), None);
        assert_eq!(decode(&[0; 9]), None);
        assert_eq!(decode(&[]), None);
    }
}
