//! Consensus messages of an epoch this validator has not entered yet, kept until it does.
//!
//! Validators enter an epoch when they have made the previous epoch's last block durable, so
//! some enter a few milliseconds before others. The first ones' votes and certificates for the
//! new epoch reach the others before those have an instance (and a mux sub-channel) for it.
//! Dropped, those messages cost more than a lost message: simplex records who it has heard from
//! in an epoch, takes a leader it has not heard from for inactive and nullifies its view at
//! once, while the validators that did hear it notarize — a split that only the certification
//! timeout (seconds) resolves. So each mux's backup queue feeds an [`Early`] store: messages
//! of the next few epochs are kept (a bounded number per epoch and channel) and handed to the
//! epoch's instance, ahead of the live sub-channel, when the validator enters it.

use std::{
    collections::{BTreeMap, VecDeque},
    num::NonZeroUsize,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use commonware_cryptography::ed25519::PublicKey;
use commonware_p2p::{Message, Receiver};
use parking_lot::Mutex;

/// Messages kept per epoch and channel (a peer cannot fill memory with future epochs).
pub const EARLY_LIMIT: usize = 1024;
/// How many epochs ahead of the current one messages are kept.
pub const EARLY_EPOCHS: u64 = 2;

/// Early messages of one channel, by epoch, and the epoch the validator is in.
#[derive(Clone)]
pub struct Early {
    current: Arc<AtomicU64>,
    kept: Arc<Mutex<BTreeMap<u64, VecDeque<Message<PublicKey>>>>>,
}

impl Early {
    /// A store shared with the orchestrator through `current` (the epoch entered last).
    pub fn new(current: Arc<AtomicU64>) -> Early {
        Early {
            current,
            kept: Arc::default(),
        }
    }

    /// Keeps `message` if it belongs to one of the next epochs and there is room; returns
    /// whether it was kept.
    pub fn keep(&self, epoch: u64, message: Message<PublicKey>) -> bool {
        let current = self.current.load(Ordering::SeqCst);
        if epoch <= current || epoch > current + EARLY_EPOCHS {
            return false;
        }
        let mut kept = self.kept.lock();
        let queue = kept.entry(epoch).or_default();
        if queue.len() >= EARLY_LIMIT {
            return false;
        }
        queue.push_back(message);
        true
    }

    /// The messages kept for `epoch` (now entered: the caller has registered its sub-channel
    /// and set the current epoch), forgetting those of earlier epochs.
    pub fn take(&self, epoch: u64) -> VecDeque<Message<PublicKey>> {
        let mut kept = self.kept.lock();
        let mine = kept.remove(&epoch).unwrap_or_default();
        kept.retain(|e, _| *e > epoch);
        mine
    }
}

/// A receiver that yields the messages kept for its epoch first, then the live sub-channel.
pub struct Prepended<R> {
    early: VecDeque<Message<PublicKey>>,
    inner: R,
}

impl<R> Prepended<R> {
    /// `early` ahead of `inner`.
    pub fn new(early: VecDeque<Message<PublicKey>>, inner: R) -> Prepended<R> {
        Prepended { early, inner }
    }
}

impl<R> std::fmt::Debug for Prepended<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Prepended({} early)", self.early.len())
    }
}

impl<R: Receiver<PublicKey = PublicKey>> Receiver for Prepended<R> {
    type Error = R::Error;
    type PublicKey = PublicKey;

    async fn recv(&mut self) -> Result<Message<PublicKey>, R::Error> {
        if let Some(m) = self.early.pop_front() {
            return Ok(m);
        }
        self.inner.recv().await
    }

    fn capacity(&self) -> NonZeroUsize {
        self.inner.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use commonware_cryptography::{Signer as _, ed25519::PrivateKey};

    fn msg(n: u8) -> Message<PublicKey> {
        (
            PrivateKey::from_seed(1).public_key(),
            commonware_runtime::IoBuf::from(vec![n]),
        )
    }

    #[test]
    fn keeps_only_the_next_epochs_up_to_the_limit_and_hands_them_over_once() {
        let current = Arc::new(AtomicU64::new(3));
        let early = Early::new(current.clone());
        assert!(
            !early.keep(3, msg(0)),
            "the current epoch has its sub-channel"
        );
        assert!(!early.keep(2, msg(0)), "a past epoch is over");
        assert!(!early.keep(3 + EARLY_EPOCHS + 1, msg(0)), "too far ahead");
        for i in 0..EARLY_LIMIT {
            assert!(early.keep(4, msg(i as u8)));
        }
        assert!(!early.keep(4, msg(0)), "bounded per epoch");
        assert!(early.keep(5, msg(9)));
        current.store(4, Ordering::SeqCst);
        let four = early.take(4);
        assert_eq!(four.len(), EARLY_LIMIT);
        assert_eq!(four[1].1.as_ref(), &[1u8][..], "in arrival order");
        assert!(early.take(4).is_empty(), "handed over once");
        assert_eq!(early.take(5).len(), 1);
    }

    #[derive(Debug, thiserror::Error)]
    #[error("closed")]
    struct Closed;

    #[derive(Debug)]
    struct Live(VecDeque<Message<PublicKey>>);

    impl Receiver for Live {
        type Error = Closed;
        type PublicKey = PublicKey;

        async fn recv(&mut self) -> Result<Message<PublicKey>, Closed> {
            self.0.pop_front().ok_or(Closed)
        }

        fn capacity(&self) -> NonZeroUsize {
            NonZeroUsize::MIN
        }
    }

    #[test]
    fn an_entered_epoch_reads_what_was_kept_before_its_live_channel() {
        let kept: VecDeque<_> = [msg(1), msg(2)].into();
        let mut r = Prepended::new(kept, Live([msg(3)].into()));
        let got: Vec<u8> = (0..3)
            .map(|_| futures::executor::block_on(r.recv()).unwrap().1.as_ref()[0])
            .collect();
        assert_eq!(got, [1, 2, 3]);
        assert!(futures::executor::block_on(r.recv()).is_err());
    }
}
