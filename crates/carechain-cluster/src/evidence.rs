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
use commonware_codec::{Decode as _, Encode as _};
use commonware_consensus::{
    Epochable, Reporter, Viewable,
    simplex::types::{Activity, Attributable},
};
use commonware_cryptography::{certificate::Verifier as _, sha256::Digest};
use commonware_parallel::Sequential;
use commonware_utils::ordered::Set;
use parking_lot::Mutex;
use rand_core::CryptoRng;

use crate::{Scheme, engine::CONSENSUS_NAMESPACE, epoch::EpochSchemes};

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
        let kind = f.next()?;
        let kind = KINDS.iter().copied().find(|k| *k == kind)?;
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

    /// As the node keeps (and shows) it.
    pub fn fault(&self) -> carechain_node::Fault {
        carechain_node::Fault {
            epoch: self.epoch,
            view: self.view,
            offender: self.offender.clone(),
            kind: self.kind.to_string(),
            proof: self.proof.clone(),
        }
    }
}

/// The proof of an `invalid_proposal` fault: the block's header (its canonical encoding)
/// followed by its 64-byte seal, the proposer's signature over it.
pub fn invalid_proposal_proof(block: &carechain_types::Block) -> Vec<u8> {
    [
        carechain_types::encode(&block.header),
        block.seal.0.to_vec(),
    ]
    .concat()
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
        let bytes = match fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let mut all: Vec<Evidence> = Vec::new();
        for e in String::from_utf8_lossy(&bytes)
            .lines()
            .filter_map(Evidence::parse)
        {
            if !all.iter().any(|x| x.same(&e)) {
                all.push(e);
            }
        }
        let mut file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        // A torn last line (a crash mid-append) is ended, so the next one starts clean.
        if !bytes.is_empty() && !bytes.ends_with(b"\n") {
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

/// Why a fault's proof does not hold.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProofError {
    /// Not a kind of fault this validator records.
    #[error("unknown kind of fault {0:?}")]
    UnknownKind(String),
    /// The proof's bytes are not what the kind says.
    #[error("the proof does not decode as {0}")]
    Malformed(String),
    /// The proof is of another kind, epoch or view than the fault claims.
    #[error("the proof is of {0}, not of the fault claimed")]
    Mismatch(String),
    /// A signature in the proof does not verify.
    #[error("the signatures in the proof do not verify")]
    BadSignature,
    /// The proof was signed by someone other than the named offender, or by someone outside
    /// the epoch's validator set.
    #[error("the proof was signed by {signer}, not by the offender named")]
    WrongOffender {
        /// Who signed it (a did, or "no validator of the epoch").
        signer: String,
    },
}

/// Checks a fault's proof on its own, against `set`, the validator set of the fault's epoch
/// (the ledger keys in force at the epoch's first height, from a chain the caller trusts):
/// the offender's signed messages must be of the kind, epoch and view claimed, verify, and be
/// signed by the named offender, a validator of that epoch. For `invalid_proposal` that
/// shows the offender sealed the header; that the header is false needs the block's
/// transactions and its parent state, which the proof does not carry.
pub fn verify_proof<R: CryptoRng>(
    rng: &mut R,
    fault: &carechain_node::Fault,
    set: &[carechain_crypto::PublicKey],
) -> Result<(), ProofError> {
    let kind = KINDS
        .iter()
        .find(|k| **k == fault.kind)
        .ok_or_else(|| ProofError::UnknownKind(fault.kind.clone()))?;
    let named = |signer: String| {
        if signer == fault.offender {
            Ok(())
        } else {
            Err(ProofError::WrongOffender { signer })
        }
    };
    if *kind == "invalid_proposal" {
        let cut = fault
            .proof
            .len()
            .checked_sub(64)
            .ok_or_else(|| ProofError::Malformed("a header and its seal".into()))?;
        let header = carechain_types::decode_header(&fault.proof[..cut])
            .map_err(|_| ProofError::Malformed("a header and its seal".into()))?;
        let seal = carechain_crypto::Signature(
            fault.proof[cut..]
                .try_into()
                .map_err(|_| ProofError::Malformed("a header and its seal".into()))?,
        );
        if crate::epoch::epoch_of(header.height).get() != fault.epoch {
            return Err(ProofError::Mismatch(format!("height {}", header.height)));
        }
        let proposer = header.proposer;
        let sealed = carechain_types::Block {
            header,
            txs: Vec::new(),
            seal,
        };
        sealed.verify_seal().map_err(|_| ProofError::BadSignature)?;
        if !set.contains(&proposer) {
            return Err(ProofError::WrongOffender {
                signer: "no validator of the epoch".into(),
            });
        }
        return named(proposer.did().to_string());
    }
    let participants = Set::from_iter_dedup(set.iter().map(crate::consensus_public));
    let scheme = Scheme::verifier(CONSENSUS_NAMESPACE, participants.clone());
    let activity = Activity::<Scheme, Digest>::decode_cfg(
        bytes::Bytes::copy_from_slice(&fault.proof),
        &scheme.certificate_codec_config(),
    )
    .map_err(|_| ProofError::Malformed("a consensus activity".into()))?;
    let (what, epoch, view, signer) = match &activity {
        Activity::ConflictingNotarize(c) => {
            ("conflicting_notarize", c.epoch(), c.view(), c.signer())
        }
        Activity::ConflictingFinalize(c) => {
            ("conflicting_finalize", c.epoch(), c.view(), c.signer())
        }
        Activity::NullifyFinalize(c) => ("nullify_finalize", c.epoch(), c.view(), c.signer()),
        _ => {
            return Err(ProofError::Mismatch(
                "a vote or certificate, not a fault".into(),
            ));
        }
    };
    if (what, epoch.get(), view.get()) != (*kind, fault.epoch, fault.view) {
        return Err(ProofError::Mismatch(format!(
            "{what} in epoch {} view {}",
            epoch.get(),
            view.get()
        )));
    }
    if !activity.verify(rng, &scheme, &Sequential) {
        return Err(ProofError::BadSignature);
    }
    let signer = participants
        .get(usize::from(signer))
        .map(crate::ledger_did)
        .ok_or(ProofError::WrongOffender {
            signer: "no validator of the epoch".into(),
        })?;
    named(signer)
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
        // A line that is not evidence (not even text), then a crash in the middle of a
        // third append.
        let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"\xff\xfe not evidence\n").unwrap();
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

    /// Validator keys 0..4 (ledger keys) and the consensus scheme of validator `i` over them.
    fn validators() -> (
        Vec<carechain_crypto::SecretKey>,
        Vec<carechain_crypto::PublicKey>,
    ) {
        let keys: Vec<_> = (0..4u8)
            .map(|i| carechain_crypto::SecretKey::from_seed(&[i + 1; 32]))
            .collect();
        let public = keys.iter().map(|k| k.public()).collect();
        (keys, public)
    }

    fn signer(keys: &[carechain_crypto::SecretKey], i: usize) -> Scheme {
        let set = Set::from_iter_dedup(keys.iter().map(|k| crate::consensus_public(&k.public())));
        Scheme::signer(CONSENSUS_NAMESPACE, set, crate::consensus_key(&keys[i])).unwrap()
    }

    /// Validator `i`'s two notarizes of different blocks at epoch 1, view 5, as consensus
    /// reports them.
    fn conflicting(keys: &[carechain_crypto::SecretKey], i: usize) -> carechain_node::Fault {
        use commonware_consensus::{
            simplex::types::{ConflictingNotarize, Notarize, Proposal},
            types::{Epoch, Round, View},
        };
        use commonware_cryptography::{Hasher as _, Sha256};
        let scheme = signer(keys, i);
        let round = Round::new(Epoch::new(1), View::new(5));
        let vote = |b: &[u8]| {
            Notarize::<Scheme, Digest>::sign(
                &scheme,
                Proposal::new(round, View::new(4), Sha256::hash(&[b])),
            )
            .unwrap()
        };
        let activity =
            Activity::ConflictingNotarize(ConflictingNotarize::new(vote(b"a"), vote(b"b")));
        carechain_node::Fault {
            epoch: 1,
            view: 5,
            offender: keys[i].public().did().to_string(),
            kind: "conflicting_notarize".into(),
            proof: activity.encode().to_vec(),
        }
    }

    #[test]
    fn conflicting_votes_prove_their_signer_and_nothing_else() {
        let (keys, set) = validators();
        let rng = &mut commonware_utils::test_rng();
        let f = conflicting(&keys, 2);
        assert_eq!(verify_proof(rng, &f, &set), Ok(()));
        // Someone else named as the offender.
        let blamed = carechain_node::Fault {
            offender: keys[1].public().did().to_string(),
            ..f.clone()
        };
        assert_eq!(
            verify_proof(rng, &blamed, &set),
            Err(ProofError::WrongOffender {
                signer: keys[2].public().did().to_string()
            })
        );
        // Another view, another kind, a flipped bit, bytes that are no proof.
        let other_view = carechain_node::Fault {
            view: 6,
            ..f.clone()
        };
        assert!(matches!(
            verify_proof(rng, &other_view, &set),
            Err(ProofError::Mismatch(_))
        ));
        let other_kind = carechain_node::Fault {
            kind: "conflicting_finalize".into(),
            ..f.clone()
        };
        assert!(matches!(
            verify_proof(rng, &other_kind, &set),
            Err(ProofError::Mismatch(_))
        ));
        let mut flipped = f.clone();
        let last = flipped.proof.len() - 1;
        flipped.proof[last] ^= 1;
        assert_eq!(
            verify_proof(rng, &flipped, &set),
            Err(ProofError::BadSignature)
        );
        let garbage = carechain_node::Fault {
            proof: vec![0x0a, 0x0b],
            ..f.clone()
        };
        assert!(matches!(
            verify_proof(rng, &garbage, &set),
            Err(ProofError::Malformed(_))
        ));
        // Checked against a set without the signer, the same votes prove nothing.
        let other_set: Vec<_> = (0..4u8)
            .map(|i| carechain_crypto::SecretKey::from_seed(&[i + 50; 32]).public())
            .collect();
        assert!(verify_proof(rng, &f, &other_set).is_err());
        let unknown = carechain_node::Fault {
            kind: "late".into(),
            ..f
        };
        assert_eq!(
            verify_proof(rng, &unknown, &set),
            Err(ProofError::UnknownKind("late".into()))
        );
    }

    #[test]
    fn an_invalid_proposal_proves_its_sealer() {
        let (keys, set) = validators();
        let rng = &mut commonware_utils::test_rng();
        let header = carechain_types::Header {
            version: carechain_types::FORMAT_VERSION,
            chain_id: "c".into(),
            height: 70,
            parent: carechain_crypto::sha256(b"parent"),
            timestamp_ms: 1,
            proposer: keys[3].public(),
            tx_count: 0,
            tx_root: carechain_crypto::sha256(b"t"),
            receipts_root: carechain_crypto::sha256(b"r"),
            state_root: carechain_crypto::sha256(b"not the state"),
            log_size: 0,
            log_root: carechain_crypto::sha256(b"l"),
        };
        let block = carechain_types::Block::seal(header, Vec::new(), &keys[3]);
        let f = carechain_node::Fault {
            epoch: 1,
            view: 9,
            offender: keys[3].public().did().to_string(),
            kind: "invalid_proposal".into(),
            proof: invalid_proposal_proof(&block),
        };
        assert_eq!(verify_proof(rng, &f, &set), Ok(()));
        let mut forged = f.clone();
        forged.proof[10] ^= 1;
        assert!(verify_proof(rng, &forged, &set).is_err());
        assert!(matches!(
            verify_proof(
                rng,
                &carechain_node::Fault {
                    epoch: 2,
                    ..f.clone()
                },
                &set
            ),
            Err(ProofError::Mismatch(_))
        ));
        assert!(matches!(
            verify_proof(rng, &f, &set[..3]),
            Err(ProofError::WrongOffender { .. })
        ));
    }
}
