//! Evidence of Byzantine validators: consensus reports a validator that signed two
//! different proposals in one view (notarize or finalize) or both nullified and finalized a
//! view; each report is kept with the offender, the view and the kind, and logged.

use std::sync::Arc;

use commonware_actor::Feedback;
use commonware_consensus::{
    Epochable, Reporter, Viewable,
    simplex::types::{Activity, Attributable},
};
use commonware_cryptography::sha256::Digest;
use parking_lot::Mutex;

use crate::Scheme;

/// One fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evidence {
    /// The epoch (whose validator set `validator` indexes).
    pub epoch: u64,
    /// The offender's index in the epoch's validator set.
    pub validator: u32,
    /// The view.
    pub view: u64,
    /// `conflicting_notarize`, `conflicting_finalize`, `nullify_finalize` (signed votes) or
    /// `invalid_proposal` (a sealed block that does not re-execute).
    pub kind: &'static str,
}

/// Faults observed, shared by clones.
#[derive(Clone, Default)]
pub struct EvidenceLog(Arc<Mutex<Vec<Evidence>>>);

impl EvidenceLog {
    /// Everything recorded so far.
    pub fn all(&self) -> Vec<Evidence> {
        self.0.lock().clone()
    }

    /// Records one fault (once).
    pub fn record(&self, e: Evidence) {
        tracing::warn!(
            epoch = e.epoch,
            validator = e.validator,
            view = e.view,
            kind = e.kind,
            "consensus fault evidence"
        );
        let mut l = self.0.lock();
        if !l.contains(&e) {
            l.push(e);
        }
    }
}

/// A reporter that records faults and passes every activity on.
#[derive(Clone)]
pub struct Recorder<R> {
    inner: R,
    log: EvidenceLog,
}

impl<R> Recorder<R> {
    /// Wraps `inner`.
    pub fn new(inner: R, log: EvidenceLog) -> Self {
        Recorder { inner, log }
    }
}

impl<R: Reporter<Activity = Activity<Scheme, Digest>>> Reporter for Recorder<R> {
    type Activity = Activity<Scheme, Digest>;

    fn report(&mut self, activity: Self::Activity) -> Feedback {
        let fault = match &activity {
            Activity::ConflictingNotarize(c) => {
                Some((c.epoch(), c.signer(), c.view(), "conflicting_notarize"))
            }
            Activity::ConflictingFinalize(c) => {
                Some((c.epoch(), c.signer(), c.view(), "conflicting_finalize"))
            }
            Activity::NullifyFinalize(c) => {
                Some((c.epoch(), c.signer(), c.view(), "nullify_finalize"))
            }
            _ => None,
        };
        if let Some((epoch, signer, view, kind)) = fault {
            self.log.record(Evidence {
                epoch: epoch.get(),
                validator: signer.get(),
                view: view.get(),
                kind,
            });
        }
        self.inner.report(activity)
    }
}
