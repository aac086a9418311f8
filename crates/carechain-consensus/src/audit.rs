//! The auditor: re-verifies a whole chain from genesis — every block seal, every transaction
//! signature, every state transition (by re-execution), the stored receipts, state and log, and
//! every signed checkpoint with consistency between consecutive ones — and names the first
//! block or log leaf that does not check out.

use carechain_crypto::{Hash, PublicKey};
use carechain_log::{
    CompactRange, MemoryLog, NodeSource, NoteVerifier, consistency_proof,
    proof::verify_consistency, range_hash,
};
use carechain_state::{MemoryState, StateCommitment, StateView, genesis_changes};
use carechain_types::{Genesis, Receipt, Role, decode_block};

use crate::{ChainTip, check_block, checkpoint_origin};

/// Where the auditor reads a chain from: a (copied) data directory or a node's HTTP API.
pub trait ChainSource {
    /// The genesis description.
    fn genesis(&self) -> Result<Genesis, String>;
    /// Height of the last block.
    fn head(&self) -> Result<u64, String>;
    /// The stored encoding of a block.
    fn block_bytes(&self, height: u64) -> Result<Vec<u8>, String>;
    /// The stored receipts of a block, if the source keeps them separately.
    fn receipts(&self, height: u64) -> Result<Option<Vec<Receipt>>, String>;
    /// All published checkpoints `(log size, signed note)`, oldest first.
    fn checkpoints(&self) -> Result<Vec<(u64, String)>, String>;
    /// The stored log entries (transaction hashes) `from..to`, if the source has them.
    fn log_entries(&self, from: u64, to: u64) -> Result<Option<Vec<Hash>>, String>;
    /// The stored log nodes, if the source has them (compared with the rebuilt log).
    fn log_node(&self, level: u8, index: u64) -> Result<Option<Hash>, String>;
    /// All stored state entries, sorted by `(bucket, key)`, if the source has them.
    fn state_entries(&self) -> Result<Option<carechain_state::Entries>, String>;
    /// A consistency proof served by the source between two sizes, if it serves them.
    fn consistency_proof(&self, first: u64, second: u64) -> Result<Option<Vec<Hash>>, String>;
}

/// What a successful audit checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditReport {
    /// Chain id.
    pub chain_id: String,
    /// Blocks re-executed.
    pub blocks: u64,
    /// Transactions whose signatures and effects were checked.
    pub transactions: u64,
    /// Of which applied.
    pub applied: u64,
    /// Signed checkpoints verified.
    pub checkpoints: u64,
    /// Consistency proofs between consecutive checkpoints verified.
    pub consistency_proofs: u64,
    /// Final state root.
    pub state_root: Hash,
    /// Final log size.
    pub log_size: u64,
    /// Final log root.
    pub log_root: Hash,
    /// Every validator set of the chain by first height (the schedule in the re-executed
    /// state).
    pub validator_sets: Vec<(u64, Vec<PublicKey>)>,
    /// The log size after each block (index `h − 1` for height `h`).
    log_sizes: Vec<u64>,
}

impl AuditReport {
    /// The validator sets that may have cosigned the checkpoint at log size `size`: the sets
    /// in force at the blocks whose log ends at `size` (several blocks may end at one size
    /// when some applied nothing). Empty when no block ends there.
    pub fn cosigner_sets(&self, size: u64) -> Vec<Vec<PublicKey>> {
        let first = self.log_sizes.partition_point(|&s| s < size);
        let last = self.log_sizes.partition_point(|&s| s <= size);
        let mut sets: Vec<Vec<PublicKey>> = Vec::new();
        for h in (first + 1)..=last {
            let set = self.validators_at(h as u64);
            if !sets.contains(&set) {
                sets.push(set);
            }
        }
        sets
    }

    /// The validator set in force at `height` (as the schedule's `at`; the genesis set is in
    /// force from height 0).
    pub fn validators_at(&self, height: u64) -> Vec<PublicKey> {
        self.validator_sets
            .iter()
            .rev()
            .find(|(from, _)| *from <= height)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }
}

/// Where and why an audit failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct AuditFailure {
    /// The first bad block, if a block is at fault.
    pub block: Option<u64>,
    /// The first bad log leaf, if a log entry is at fault.
    pub leaf: Option<u64>,
    /// What is wrong.
    pub reason: String,
}

impl AuditFailure {
    fn block(h: u64, reason: impl Into<String>) -> AuditFailure {
        AuditFailure {
            block: Some(h),
            leaf: None,
            reason: reason.into(),
        }
    }
    fn other(reason: impl Into<String>) -> AuditFailure {
        AuditFailure {
            block: None,
            leaf: None,
            reason: reason.into(),
        }
    }
    fn describe(&self) -> String {
        match (self.block, self.leaf) {
            (Some(b), _) => format!("first bad block: {b}: {}", self.reason),
            (None, Some(l)) => format!("first bad log leaf: {l}: {}", self.reason),
            _ => self.reason.clone(),
        }
    }
}

struct Nodes<'a>(&'a MemoryLog);

impl NodeSource for Nodes<'_> {
    fn node(&self, level: u8, index: u64) -> Result<Hash, carechain_log::LogError> {
        self.0.node(level, index)
    }
}

/// Audits the whole chain of `source`.
pub fn audit_chain(source: &dyn ChainSource) -> Result<AuditReport, AuditFailure> {
    let genesis = source.genesis().map_err(AuditFailure::other)?;
    let validators: Vec<PublicKey> = genesis
        .identities
        .iter()
        .filter(|i| i.role == Role::Validator)
        .map(|i| i.key)
        .collect();
    let origin = checkpoint_origin(&genesis.chain_id);
    let mut verifiers: Vec<NoteVerifier> = validators
        .iter()
        .map(|k| NoteVerifier::new(&origin, *k))
        .collect();

    let mut state = MemoryState::new();
    let mut commitment = StateCommitment::empty();
    let changes = genesis_changes(&genesis);
    state.apply(&changes);
    let mut buckets = std::collections::BTreeMap::new();
    for k in changes.keys() {
        let b = carechain_state::bucket_of(k);
        let entries = state
            .bucket_entries(b)
            .map_err(|e| AuditFailure::other(e.to_string()))?;
        buckets.insert(
            b,
            carechain_state::bucket_hash(
                entries
                    .iter()
                    .map(|(k, v)| (k.as_slice(), carechain_state::value_hash(v))),
            ),
        );
    }
    commitment.apply(&buckets);

    let mut tip = ChainTip {
        chain_id: genesis.chain_id.clone(),
        height: 0,
        hash: genesis.hash(),
        timestamp_ms: genesis.timestamp_ms,
    };
    let mut log = CompactRange::empty();
    let mut full_log = MemoryLog::new();
    let mut report = AuditReport {
        chain_id: genesis.chain_id.clone(),
        blocks: 0,
        transactions: 0,
        applied: 0,
        checkpoints: 0,
        consistency_proofs: 0,
        state_root: commitment.root(),
        log_size: 0,
        log_root: log.root(),
        validator_sets: Vec::new(),
        log_sizes: Vec::new(),
    };
    let head = source.head().map_err(AuditFailure::other)?;
    for h in 1..=head {
        let bytes = source
            .block_bytes(h)
            .map_err(|e| AuditFailure::block(h, e))?;
        let block = decode_block(&bytes)
            .map_err(|e| AuditFailure::block(h, format!("does not decode: {e}")))?;
        let rules = carechain_state::ChainRules::of(&genesis, &validators);
        let ex = check_block(&tip, &state, &commitment, &log, &rules, &block)
            .map_err(|e| AuditFailure::block(h, e.to_string()))?;
        if let Some(stored) = source.receipts(h).map_err(|e| AuditFailure::block(h, e))?
            && stored != ex.execution.receipts
        {
            return Err(AuditFailure::block(
                h,
                "stored receipts differ from re-execution",
            ));
        }
        let first_leaf = log.size();
        if let Some(stored) = source
            .log_entries(first_leaf, first_leaf + ex.execution.applied.len() as u64)
            .map_err(|e| AuditFailure::block(h, e))?
        {
            for (i, (s, a)) in stored.iter().zip(&ex.execution.applied).enumerate() {
                if s != a {
                    return Err(AuditFailure {
                        block: None,
                        leaf: Some(first_leaf + i as u64),
                        reason: "stored log entry differs from the applied transaction".into(),
                    });
                }
            }
            if stored.len() != ex.execution.applied.len() {
                return Err(AuditFailure {
                    block: None,
                    leaf: Some(first_leaf + stored.len() as u64),
                    reason: "log entry missing".into(),
                });
            }
        }
        for a in &ex.execution.applied {
            full_log.append(&a.0);
        }
        state.apply(&ex.execution.changes);
        commitment.apply(&ex.execution.bucket_updates);
        log = ex.log_after;
        report.blocks += 1;
        report.log_sizes.push(log.size());
        report.transactions += block.txs.len() as u64;
        report.applied += ex.execution.applied.len() as u64;
        tip = ChainTip {
            chain_id: tip.chain_id,
            height: h,
            hash: block.header.hash(),
            timestamp_ms: block.header.timestamp_ms,
        };
    }

    // Stored log nodes must be the rebuilt ones (they are what tiles and proofs are served from).
    for level in 0..64u8 {
        let count = full_log.size() >> level;
        if count == 0 {
            break;
        }
        for i in 0..count {
            let want = full_log
                .node(level, i)
                .map_err(|e| AuditFailure::other(e.to_string()))?;
            match source.log_node(level, i).map_err(AuditFailure::other)? {
                None => break,
                Some(got) if got == want => {}
                Some(_) => {
                    return Err(AuditFailure {
                        block: None,
                        leaf: Some(i << level),
                        reason: format!(
                            "stored log node (level {level}, index {i}) differs from the rebuilt log"
                        ),
                    });
                }
            }
        }
    }

    if let Some(stored) = source.state_entries().map_err(AuditFailure::other)? {
        let mut rebuilt = Vec::new();
        for b in 0..=u16::MAX {
            rebuilt.extend(
                state
                    .bucket_entries(b)
                    .map_err(|e| AuditFailure::other(e.to_string()))?,
            );
        }
        if stored != rebuilt {
            return Err(AuditFailure::other(
                "stored state differs from the state rebuilt by re-execution",
            ));
        }
    }

    // Checkpoints: signature by a validator (of any set the chain has had: each node signs its
    // own), (size, root) equal to the rebuilt log at that size, and consistency between
    // consecutive checkpoints.
    let schedule = carechain_state::validator_schedule(&state, &validators)
        .map_err(|e| AuditFailure::other(e.to_string()))?;
    report.validator_sets = schedule
        .sets
        .iter()
        .map(|s| (s.from_height, s.validators.clone()))
        .collect();
    let mut signers: Vec<PublicKey> = validators.clone();
    for set in &schedule.sets {
        for k in &set.validators {
            if !signers.contains(k) {
                signers.push(*k);
                verifiers.push(NoteVerifier::new(&origin, *k));
            }
        }
    }
    let checkpoints = source.checkpoints().map_err(AuditFailure::other)?;
    let mut previous: Option<(u64, Hash)> = None;
    for (size, note) in &checkpoints {
        let cp = verifiers
            .iter()
            .find_map(|v| v.verify_checkpoint(note).ok())
            .ok_or_else(|| {
                AuditFailure::other(format!(
                    "checkpoint at size {size} is not signed by a validator of this chain"
                ))
            })?;
        if cp.origin != origin || cp.size != *size {
            return Err(AuditFailure::other(format!(
                "checkpoint at size {size} names another log or size"
            )));
        }
        if cp.size > full_log.size() {
            return Err(AuditFailure::other(format!(
                "checkpoint at size {size} is beyond the rebuilt log ({})",
                full_log.size()
            )));
        }
        let root = range_hash(&Nodes(&full_log), 0, cp.size)
            .map_err(|e| AuditFailure::other(e.to_string()))?;
        if root != cp.root {
            return Err(AuditFailure {
                block: None,
                leaf: Some(cp.size.saturating_sub(1)),
                reason: format!(
                    "checkpoint at size {size} has a root the rebuilt log does not have"
                ),
            });
        }
        if let Some((s1, r1)) = previous
            && s1 > 0
            && s1 < cp.size
        {
            let proof = match source
                .consistency_proof(s1, cp.size)
                .map_err(AuditFailure::other)?
            {
                Some(p) => p,
                None => consistency_proof(&Nodes(&full_log), s1, cp.size)
                    .map_err(|e| AuditFailure::other(e.to_string()))?,
            };
            verify_consistency(s1, cp.size, &proof, &r1, &cp.root).map_err(|e| {
                AuditFailure::other(format!(
                    "checkpoints {s1} -> {}: not consistent: {e}",
                    cp.size
                ))
            })?;
            report.consistency_proofs += 1;
        }
        previous = Some((cp.size, cp.root));
        report.checkpoints += 1;
    }
    if head > 0 && checkpoints.last().map(|(s, _)| *s) != Some(log.size()) {
        return Err(AuditFailure::other(
            "no signed checkpoint covers the final log",
        ));
    }

    report.state_root = commitment.root();
    report.log_size = log.size();
    report.log_root = log.root();
    Ok(report)
}

/// A data directory's database (opened read-only; works on a copy).
pub struct StoreSource {
    db: carechain_storage::ReadOnly,
    snap: carechain_storage::Snapshot,
}

impl StoreSource {
    /// Opens the database file read-only.
    pub fn open(path: &std::path::Path) -> Result<StoreSource, String> {
        let db = carechain_storage::open_read_only(path).map_err(|e| e.to_string())?;
        let snap = db.snapshot().map_err(|e| e.to_string())?;
        Ok(StoreSource { db, snap })
    }
}

impl ChainSource for StoreSource {
    fn genesis(&self) -> Result<Genesis, String> {
        self.db.genesis().map_err(|e| e.to_string())
    }
    fn head(&self) -> Result<u64, String> {
        self.snap.head().map_err(|e| e.to_string())
    }
    fn block_bytes(&self, height: u64) -> Result<Vec<u8>, String> {
        self.snap
            .block_bytes(height)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "block is missing".to_string())
    }
    fn receipts(&self, height: u64) -> Result<Option<Vec<Receipt>>, String> {
        match self.snap.receipts(height) {
            Ok(Some(r)) => Ok(Some(r)),
            Ok(None) => Err("receipts are missing".into()),
            Err(e) => Err(e.to_string()),
        }
    }
    fn checkpoints(&self) -> Result<Vec<(u64, String)>, String> {
        self.snap.checkpoints().map_err(|e| e.to_string())
    }
    fn log_entries(&self, from: u64, to: u64) -> Result<Option<Vec<Hash>>, String> {
        self.snap
            .log_entries(from, to)
            .map(Some)
            .map_err(|e| e.to_string())
    }
    fn log_node(&self, level: u8, index: u64) -> Result<Option<Hash>, String> {
        match self
            .snap
            .log_node(level, index)
            .map_err(|e| e.to_string())?
        {
            Some(h) => Ok(Some(h)),
            None => Err(format!(
                "log node (level {level}, index {index}) is missing"
            )),
        }
    }
    fn state_entries(&self) -> Result<Option<carechain_state::Entries>, String> {
        self.snap
            .state_entries()
            .map(Some)
            .map_err(|e| e.to_string())
    }
    fn consistency_proof(&self, _first: u64, _second: u64) -> Result<Option<Vec<Hash>>, String> {
        Ok(None)
    }
}
