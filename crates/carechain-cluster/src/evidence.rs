//! Evidence of Byzantine validators: consensus reports a validator that signed two
//! different proposals in one view (notarize or finalize) or both nullified and finalized a
//! view, and the application one that sealed a block that does not re-execute; each fault is
//! kept with the offender, the view, the kind and its proof (the offender's signed messages),
//! logged, appended to the validator's evidence file (kept across restarts) and handed to the
//! node, whose API shows it (`GET /v1/evidence`).

use std::{
    fs,
    io::{self, Write as _},
    path::{Path, PathBuf},
    sync::Arc,
};

use commonware_actor::Feedback;
use commonware_codec::Encode as _;
use commonware_consensus::{
    Epochable, Reporter, Viewable,
    simplex::types::{Activity, Attributable},
};
use commonware_cryptography::sha256::Digest;
use parking_lot::Mutex;

use crate::{Scheme, epoch::EpochSchemes};

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
    /// The offender's identity (`did:key`), empty when its epoch's set is not known here.
    pub offender: String,
    /// The proof: for votes, the Commonware activity as consensus reported it (both signed
    /// votes, [`Activity`]'s encoding); for an invalid proposal, the block's header (its
    /// canonical encoding) followed by its 64-byte seal, the proposer's signature
    /// (re-executing the block's transactions on its parent shows the header false).
    pub proof: Vec<u8>,
}

impl Evidence {
    /// The same fault (a second report of it, whatever its proof).
    fn same(&self, other: &Evidence) -> bool {
        (self.epoch, self.validator, self.view, self.kind)
            == (other.epoch, other.validator, other.view, other.kind)
    }

    /// The line of the evidence file: `kind epoch view validator offender proof-hex`.
    fn line(&self) -> String {
        let offender = if self.offender.is_empty() {
            "-"
        } else {
            &self.offender
        };
        format!(
            "{} {} {} {} {} {}\n",
            self.kind,
            self.epoch,
            self.view,
            self.validator,
            offender,
            hex::encode(&self.proof)
        )
    }

    /// Parses a line of the evidence file (`None` for a torn or foreign one).
    fn parse(line: &str) -> Option<Evidence> {
        let mut f = line.split(' ');
        let kind = KINDS
            .iter()
            .copied()
            .find(|k| Some(*k) == f.clone().next())?;
        f.next();
        let epoch = f.next()?.parse().ok()?;
        let view = f.next()?.parse().ok()?;
        let validator = f.next()?.parse().ok()?;
        let offender = match f.next()? {
            "-" => String::new(),
            d => d.to_string(),
        };
        let proof = hex::decode(f.next()?).ok()?;
        if f.next().is_some() {
            return None;
        }
        Some(Evidence {
            epoch,
            validator,
            view,
            kind,
            offender,
            proof,
        })
    }

    /// As the node keeps it.
    fn fault(&self) -> carechain_node::Fault {
        carechain_node::Fault {
            epoch: self.epoch,
            view: self.view,
            offender: self.offender.clone(),
            kind: self.kind.to_string(),
            proof: self.proof.clone(),
        }
    }
}

/// Every kind of fault recorded.
pub const KINDS: [&str; 4] = [
    "conflicting_notarize",
    "conflicting_finalize",
    "nullify_finalize",
    "invalid_proposal",
];

type Sink = Arc<dyn Fn(&Evidence) + Send + Sync>;

#[derive(Default)]
struct Inner {
    all: Vec<Evidence>,
    /// The evidence file, while writes to it succeed.
    file: Option<(PathBuf, fs::File)>,
    sink: Option<Sink>,
}

/// Faults observed, shared by clones.
#[derive(Clone, Default)]
pub struct EvidenceLog(Arc<Mutex<Inner>>);

impl EvidenceLog {
    /// A log kept in the file at `path` too: the faults already in it are read (a torn last
    /// line is skipped), and each new one is appended and synced.
    pub fn open(path: &Path) -> io::Result<EvidenceLog> {
        let mut all: Vec<Evidence> = Vec::new();
        match fs::read_to_string(path) {
            Ok(text) => {
                for e in text.lines().filter_map(Evidence::parse) {
                    if !all.iter().any(|x| x.same(&e)) {
                        all.push(e);
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        // A torn last line (a crash mid-append) is ended, so the next one starts clean.
        let len = file.metadata()?.len();
        if len > 0 && !fs::read(path)?.ends_with(b"\n") {
            file.write_all(b"\n")?;
        }
        Ok(EvidenceLog(Arc::new(Mutex::new(Inner {
            all,
            file: Some((path.to_path_buf(), file)),
            sink: None,
        }))))
    }

    /// Hands every fault, those recorded so far and each new one, to `sink` (the node).
    pub fn set_sink(&self, sink: impl Fn(&Evidence) + Send + Sync + 'static) {
        let sink: Sink = Arc::new(sink);
        let mut inner = self.0.lock();
        for e in &inner.all {
            sink(e);
        }
        inner.sink = Some(sink);
    }

    /// Hands every fault to `node` (its API shows them).
    pub fn report_to(&self, node: Arc<carechain_node::Node>) {
        self.set_sink(move |e| node.record_fault(e.fault()));
    }

    /// Everything recorded so far.
    pub fn all(&self) -> Vec<Evidence> {
        self.0.lock().all.clone()
    }

    /// Records one fault (once).
    pub fn record(&self, e: Evidence) {
        let mut inner = self.0.lock();
        if inner.all.iter().any(|x| x.same(&e)) {
            return;
        }
        tracing::warn!(
            epoch = e.epoch,
            validator = e.validator,
            offender = %e.offender,
            view = e.view,
            kind = e.kind,
            "consensus fault evidence"
        );
        if let Some((path, file)) = &mut inner.file {
            let written = file
                .write_all(e.line().as_bytes())
                .and_then(|()| file.sync_data());
            if let Err(err) = written {
                // Evidence is not ledger data: the validator goes on, keeping it in memory.
                tracing::error!(path = %path.display(), error = %err, "evidence file not written; no longer written");
                inner.file = None;
            }
        }
        if let Some(sink) = &inner.sink {
            sink(&e);
        }
        inner.all.push(e);
    }
}

/// A reporter that records faults and passes every activity on.
#[derive(Clone)]
pub struct Recorder<R> {
    inner: R,
    log: EvidenceLog,
    schemes: EpochSchemes,
}

impl<R> Recorder<R> {
    /// Wraps `inner`; `schemes` names the offender of each fault.
    pub fn new(inner: R, log: EvidenceLog, schemes: EpochSchemes) -> Self {
        Recorder {
            inner,
            log,
            schemes,
        }
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
            let offender = self
                .schemes
                .participants(epoch)
                .and_then(|set| set.get(usize::from(signer)).cloned())
                .map(|k| crate::ledger_did(&k))
                .unwrap_or_default();
            self.log.record(Evidence {
                epoch: epoch.get(),
                validator: signer.get(),
                view: view.get(),
                kind,
                offender,
                proof: activity.encode().to_vec(),
            });
        }
        self.inner.report(activity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evidence(view: u64, kind: &'static str) -> Evidence {
        Evidence {
            epoch: 2,
            validator: 3,
            view,
            kind,
            offender: "did:key:z6Mkexample".into(),
            proof: vec![1, 2, 3, view as u8],
        }
    }

    #[test]
    fn the_evidence_file_keeps_each_fault_once_across_restarts_and_survives_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("evidence");
        let log = EvidenceLog::open(&path).unwrap();
        log.record(evidence(7, "conflicting_notarize"));
        log.record(evidence(7, "conflicting_notarize"));
        log.record(evidence(9, "invalid_proposal"));
        drop(log);
        // A crash in the middle of a third append.
        let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"conflicting_finalize 2 11 3 did:key:z6Mk")
            .unwrap();
        drop(f);
        let log = EvidenceLog::open(&path).unwrap();
        assert_eq!(
            log.all(),
            [
                evidence(7, "conflicting_notarize"),
                evidence(9, "invalid_proposal")
            ]
        );
        // The node is told of every fault, old and new, once.
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        log.set_sink(move |e| s.lock().push(e.view));
        log.record(evidence(12, "nullify_finalize"));
        log.record(evidence(9, "invalid_proposal"));
        assert_eq!(*seen.lock(), [7, 9, 12]);
        drop(log);
        let log = EvidenceLog::open(&path).unwrap();
        assert_eq!(log.all().len(), 3);
        assert_eq!(log.all()[2], evidence(12, "nullify_finalize"));
    }
}
