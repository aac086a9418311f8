//! Who leads each view of an epoch's simplex instance: Commonware's round robin, except that
//! the leader of view 2 also leads view 1.
//!
//! Why: a simplex instance starts having heard from no one, and its skip heuristic
//! (`SkipPolicy`) nullifies a view at once when quorum − 1 peers have been heard from
//! in this instance but the view's leader has not. Under plain round robin the leader of
//! view 2 is a validator whose first message in the instance is its vote on view 1; when
//! that vote is the last to arrive (it verified the proposal last), the validators that
//! formed view 1's notarization without it enter view 2, find its leader "inactive" and
//! nullify, while the others notarize its proposal. Two against two, nothing moves until the
//! timeouts (seconds). With view 1's leader also leading view 2, the leader of view 2 has
//! already been heard by everyone who voted on view 1 (a proposal is its leader's vote), and
//! every later leader has had a whole view more to be heard. A leader that is down is still
//! skipped: at view 1 after the leader timeout as before, at view 2 at once.

use commonware_consensus::{
    simplex::elector::{Config, Elector, Input, RoundRobin, RoundRobinElector, Scheduled, Terms},
    types::{Participant, Round, View},
};
use commonware_cryptography::{Sha256, certificate::Scheme};
use commonware_utils::ordered::Set;

/// The elector configuration every validator uses (leader election is consensus-critical:
/// all validators of an epoch must use the same).
#[derive(Clone, Debug, Default)]
pub struct SecondLeadsFirst {
    round_robin: RoundRobin<Sha256>,
}

/// [`SecondLeadsFirst`] built over one epoch's participants.
#[derive(Clone, Debug)]
pub struct SecondLeadsFirstElector<S: Scheme> {
    round_robin: RoundRobinElector<S>,
}

impl<S: Scheme> Config<S> for SecondLeadsFirst {
    type Elector = SecondLeadsFirstElector<S>;

    fn build(self, participants: &Set<S::PublicKey>) -> Self::Elector {
        SecondLeadsFirstElector {
            round_robin: self.round_robin.build(participants),
        }
    }
}

impl<S: Scheme> Elector<S> for SecondLeadsFirstElector<S> {
    type Mode = Scheduled;

    fn terms(&self) -> Terms {
        self.round_robin.terms()
    }

    fn elect(&self, round: Round, input: Input<'_, S, Self>) -> Participant {
        let view = if round.view() == View::new(1) {
            View::new(2)
        } else {
            round.view()
        };
        self.round_robin
            .elect(Round::new(round.epoch(), view), input)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Scheme as Ed25519Scheme;
    use commonware_consensus::types::Epoch;
    use commonware_cryptography::{
        Signer as _,
        ed25519::{self, PrivateKey},
    };

    /// The consensus keys of `n` validators.
    fn keys(n: u64) -> Set<ed25519::PublicKey> {
        Set::from_iter_dedup((0..n).map(|i| PrivateKey::from_seed(i).public_key()))
    }

    #[test]
    fn view_one_is_led_by_view_twos_leader_and_every_later_view_as_round_robin_has_it() {
        for n in [1, 4, 7] {
            let ours = Config::<Ed25519Scheme>::build(SecondLeadsFirst::default(), &keys(n));
            let theirs = Config::<Ed25519Scheme>::build(RoundRobin::<Sha256>::default(), &keys(n));
            for epoch in 0..5 {
                let at = |v: u64| Round::new(Epoch::new(epoch), View::new(v));
                assert_eq!(ours.elect(at(1), ()), theirs.elect(at(2), ()));
                for v in 2..40 {
                    assert_eq!(ours.elect(at(v), ()), theirs.elect(at(v), ()));
                }
                // Every validator still leads once in any n consecutive views.
                let mut led: Vec<_> = (2..2 + n).map(|v| ours.elect(at(v), ())).collect();
                led.sort();
                led.dedup();
                assert_eq!(led.len() as u64, n);
            }
        }
    }
}
