//! The ledger application over durable storage.

use std::sync::Arc;

use carechain_crypto::{PublicKey, SecretKey};
use carechain_log::{Checkpoint, NoteSigner};
use carechain_state::{
    BlockContext, ChainRules, ChangeSet, Entries, StateView, ViewError, bucket_of,
};
use carechain_storage::{BlockCommit, StorageError, Store};
use carechain_types::{Block, FORMAT_VERSION, Header, Receipt, Role, SignedTx};
use std::collections::BTreeMap;

use crate::check::{BlockError, ChainTip, Executed, check_block_on, execute};

/// Failures of the application (not of a transaction: those are receipts).
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// Storage failed; the node must stop.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A proposed block is invalid.
    #[error(transparent)]
    Invalid(#[from] BlockError),
    /// The block was executed on another tip than the current one.
    #[error("the chain moved on since this block was executed")]
    Stale,
    /// This node's key is not in the validator set in force at the height it would propose.
    #[error("this node is not in the validator set at height {height}")]
    NotValidator {
        /// The height.
        height: u64,
    },
}

/// A contract query's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContractAnswer {
    /// The height of the state it ran on.
    pub height: u64,
    /// The contract's JSON and the fuel it burned, or why it failed.
    pub result: Result<(Vec<u8>, u64), carechain_types::RejectReason>,
}

/// The log origin (and checkpoint key name) for a chain.
pub fn checkpoint_origin(chain_id: &str) -> String {
    format!("carechain/{chain_id}")
}

/// The checkpoint cosigners of a chain: every genesis validator (see [`cosigners_of`]).
pub fn validator_cosigners(
    genesis: &carechain_types::Genesis,
) -> Vec<carechain_log::CosignatureVerifier> {
    cosigners_of(
        genesis
            .identities
            .iter()
            .filter(|i| i.role == Role::Validator)
            .map(|i| &i.key),
    )
}

/// Validator keys as checkpoint cosigners, each named by its did (C2SP `cosignature/v1`,
/// type 0x04 — a message no ledger, note or consensus signature can be).
pub fn cosigners_of<'a>(
    keys: impl IntoIterator<Item = &'a PublicKey>,
) -> Vec<carechain_log::CosignatureVerifier> {
    keys.into_iter()
        .map(|k| carechain_log::CosignatureVerifier::new(&k.did().to_string(), *k))
        .collect()
}

/// How many of `n` validators make a BFT quorum (n − f, with f = ⌊(n − 1) / 3⌋ faulty):
/// a checkpoint cosigned by that many is agreed by at least 2/3 of the validators.
pub fn cosign_quorum(n: usize) -> usize {
    n - n.saturating_sub(1) / 3
}

/// What a consensus engine asks of the application.
pub trait Application {
    /// Builds and seals the next block from transactions in the given order. `verified[i]` is
    /// the key that already checked transaction `i`'s signature, if any.
    fn propose(
        &self,
        txs: Vec<SignedTx>,
        verified: Vec<Option<PublicKey>>,
        timestamp_ms: u64,
    ) -> Result<(Block, Executed), LedgerError>;
    /// Checks a block proposed elsewhere by re-executing it.
    fn verify(&self, block: &Block) -> Result<Executed, LedgerError>;
    /// Makes an executed block durable and publishes its checkpoint; returns the checkpoint.
    fn finalize(&self, block: &Block, executed: &Executed) -> Result<String, LedgerError>;
}

/// The ledger: state machine + verifiable log + storage, with this node's signing key.
pub struct Ledger {
    store: Arc<Store>,
    key: SecretKey,
    note_signer: NoteSigner,
    cosigner: carechain_log::Cosigner,
    origin: String,
    validators: Vec<PublicKey>,
}

impl Ledger {
    /// A ledger over `store`, signing blocks and checkpoints with `key`.
    pub fn new(store: Arc<Store>, key: SecretKey) -> Result<Ledger, LedgerError> {
        let origin = checkpoint_origin(&store.genesis().chain_id);
        let note_signer = NoteSigner::new(&origin, key.clone())
            .map_err(|e| LedgerError::Storage(StorageError::Setup(e.to_string())))?;
        let cosigner = carechain_log::Cosigner::new(&key.public().did().to_string(), key.clone())
            .map_err(|e| LedgerError::Storage(StorageError::Setup(e.to_string())))?;
        let validators = store
            .genesis()
            .identities
            .iter()
            .filter(|i| i.role == Role::Validator)
            .map(|i| i.key)
            .collect();
        Ok(Ledger {
            store,
            key,
            note_signer,
            cosigner,
            origin,
            validators,
        })
    }

    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The log origin line.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The verifier key string of this node's checkpoints.
    pub fn checkpoint_verifier_key(&self) -> String {
        self.note_signer.verifier_key()
    }

    /// This node's key.
    pub fn node_key(&self) -> PublicKey {
        self.key.public()
    }

    /// This node's `cosignature/v1` line for a checkpoint body, at `timestamp` (seconds).
    pub fn cosign(&self, checkpoint_text: &str, timestamp: u64) -> String {
        self.cosigner.cosign(checkpoint_text, timestamp)
    }

    /// The genesis validators (the set governance starts from).
    pub fn genesis_validators(&self) -> &[PublicKey] {
        &self.validators
    }

    /// The validator schedule of the durable state: every set, past and scheduled, with the
    /// height it starts at.
    pub fn validator_schedule(&self) -> Result<carechain_state::ValidatorSchedule, LedgerError> {
        let snapshot = self.store.snapshot()?;
        carechain_state::validator_schedule(&snapshot, &self.validators)
            .map_err(|e| LedgerError::Storage(StorageError::View(e)))
    }

    /// A governance proposal in the durable state.
    pub fn validator_proposal(
        &self,
        id: &carechain_crypto::Hash,
    ) -> Result<Option<carechain_state::Proposal>, LedgerError> {
        let snapshot = self.store.snapshot()?;
        carechain_state::proposal(&snapshot, id)
            .map_err(|e| LedgerError::Storage(StorageError::View(e)))
    }

    /// Runs the `query` entry point of contract `address` with `msg` (JSON) on the durable
    /// state, at its height and block time: the contract's answer with the fuel it burned,
    /// or why it failed.
    pub fn query_contract(
        &self,
        address: &carechain_crypto::Hash,
        msg: &[u8],
    ) -> Result<ContractAnswer, LedgerError> {
        let rules = ChainRules::of(self.store.genesis(), &self.validators);
        self.store
            .with_durable(|d| {
                let q = carechain_state::QueryContext {
                    rules: &rules,
                    height: d.height,
                    timestamp_ms: d.timestamp_ms,
                };
                carechain_state::query(d.snapshot, &q, address, msg).map(|result| ContractAnswer {
                    height: d.height,
                    result,
                })
            })?
            .map_err(|e| LedgerError::Storage(StorageError::View(e)))
    }

    /// The current tip.
    pub fn tip(&self) -> ChainTip {
        ChainTip {
            chain_id: self.store.genesis().chain_id.clone(),
            height: self.store.head(),
            hash: self.store.head_hash(),
            timestamp_ms: self.store.head_timestamp(),
        }
    }
}

/// A parent block that is executed but perhaps not durable yet, with everything needed to
/// execute on top of it: the chain tip it forms, the state changes of every not-yet-durable
/// block from the durable tip up to it (merged in chain order, later blocks winning), their
/// bucket updates merged likewise, and the log after it. Layering changes that did become
/// durable meanwhile is harmless (idempotent), so the durable tip may move on while this
/// is used, up to the parent itself; past it, execution on the parent is refused as
/// [`LedgerError::Stale`].
pub struct Unfinalized<'a> {
    /// The tip the parent forms.
    pub tip: ChainTip,
    /// Merged state changes.
    pub changes: &'a ChangeSet,
    /// Merged bucket updates.
    pub bucket_updates: &'a BTreeMap<u16, carechain_crypto::Hash>,
    /// The log after the parent.
    pub log: &'a carechain_log::CompactRange,
}

impl<'a> Unfinalized<'a> {
    /// One executed block on top of the durable tip.
    pub fn single(block: &Block, executed: &'a Executed) -> Unfinalized<'a> {
        Unfinalized {
            tip: ChainTip {
                chain_id: block.header.chain_id.clone(),
                height: block.header.height,
                hash: block.header.hash(),
                timestamp_ms: block.header.timestamp_ms,
            },
            changes: &executed.execution.changes,
            bucket_updates: &executed.execution.bucket_updates,
            log: &executed.log_after,
        }
    }
}

impl Ledger {
    /// Proposes the block after `pending` — a block executed but perhaps not yet durable — or
    /// after the durable tip when `pending` is `None`. This lets an engine execute block k+1
    /// while block k is being committed: state reads see k's changes layered on the durable
    /// state (idempotently, whether or not k's commit has landed).
    pub fn propose_after(
        &self,
        pending: Option<(&Block, &Executed)>,
        txs: Vec<SignedTx>,
        verified: Vec<Option<PublicKey>>,
        timestamp_ms: u64,
    ) -> Result<(Block, Executed), LedgerError> {
        let parent = pending.map(|(b, e)| Unfinalized::single(b, e));
        self.propose_on(parent.as_ref(), txs, verified, timestamp_ms)
    }

    /// Proposes the block after `parent` (the durable tip when `None`).
    pub fn propose_on(
        &self,
        parent: Option<&Unfinalized<'_>>,
        txs: Vec<SignedTx>,
        verified: Vec<Option<PublicKey>>,
        timestamp_ms: u64,
    ) -> Result<(Block, Executed), LedgerError> {
        let genesis = self.store.genesis();
        let chain_id = genesis.chain_id.clone();
        let rules = ChainRules::of(genesis, &self.validators);
        let me = self.key.public();
        let (tip, ex) = self.on_parent(parent, |tip, view, c, updates, log| {
            let height = tip.height + 1;
            let db = |e: carechain_state::ViewError| LedgerError::Storage(StorageError::View(e));
            if !carechain_state::may_propose(view, &self.validators, height, &me).map_err(db)? {
                return Err(LedgerError::NotValidator { height });
            }
            let ctx = BlockContext {
                rules,
                height,
                timestamp_ms: timestamp_ms.max(tip.timestamp_ms),
                proposer: me,
                log_size: log.size(),
                parent_updates: updates,
            };
            execute(view, c, log, &ctx, &txs, &verified).map_err(db)
        })?;
        let header = Header {
            version: FORMAT_VERSION,
            chain_id,
            height: tip.height + 1,
            parent: tip.hash,
            timestamp_ms: timestamp_ms.max(tip.timestamp_ms),
            proposer: self.key.public(),
            tx_count: txs.len() as u32,
            tx_root: Block::compute_tx_root(&txs),
            receipts_root: Receipt::compute_root(&ex.execution.receipts),
            state_root: ex.execution.state_root,
            log_size: ex.log_after.size(),
            log_root: ex.log_after.root(),
        };
        Ok((Block::seal(header, txs, &self.key), ex))
    }

    /// Checks `block`, proposed elsewhere, by re-executing it on `parent` (the durable tip
    /// when `None`); `checked` as in [`check_block_on`].
    pub fn verify_on(
        &self,
        parent: Option<&Unfinalized<'_>>,
        block: &Block,
        checked: Option<&[Option<PublicKey>]>,
    ) -> Result<Executed, LedgerError> {
        let (_, ex) = self.on_parent(parent, |tip, view, c, updates, log| {
            let rules = ChainRules::of(self.store.genesis(), &self.validators);
            check_block_on(tip, view, c, updates, log, &rules, block, checked)
                .map_err(LedgerError::from)
        })?;
        Ok(ex)
    }

    /// Runs `f` on the state, commitment, pending bucket updates and log of `parent` (or of
    /// the durable tip), all read from one durable block even while others are committed.
    /// [`LedgerError::Stale`] when the durable chain has moved past `parent` (its child, or a
    /// block conflicting with it, is durable): its changes can no longer be layered.
    fn on_parent<T>(
        &self,
        parent: Option<&Unfinalized<'_>>,
        f: impl FnOnce(
            &ChainTip,
            &dyn StateView,
            &carechain_state::StateCommitment,
            Option<&BTreeMap<u16, carechain_crypto::Hash>>,
            &carechain_log::CompactRange,
        ) -> Result<T, LedgerError>,
    ) -> Result<(ChainTip, T), LedgerError> {
        self.store.with_durable(|d| match parent {
            None => {
                let tip = ChainTip {
                    chain_id: self.store.genesis().chain_id.clone(),
                    height: d.height,
                    hash: d.hash,
                    timestamp_ms: d.timestamp_ms,
                };
                let out = f(&tip, d.snapshot, d.commitment, None, d.log)?;
                Ok((tip, out))
            }
            Some(p) => {
                if d.height > p.tip.height || (d.height == p.tip.height && d.hash != p.tip.hash) {
                    return Err(LedgerError::Stale);
                }
                let view = Layered::new(d.snapshot, p.changes);
                let out = f(&p.tip, &view, d.commitment, Some(p.bucket_updates), p.log)?;
                Ok((p.tip.clone(), out))
            }
        })?
    }
}

/// Durable state with one pending block's changes on top.
struct Layered<'a, V: StateView + ?Sized> {
    base: &'a V,
    changes: &'a ChangeSet,
    by_bucket: BTreeMap<u16, Vec<&'a Vec<u8>>>,
}

impl<'a, V: StateView + ?Sized> Layered<'a, V> {
    fn new(base: &'a V, changes: &'a ChangeSet) -> Self {
        let mut by_bucket: BTreeMap<u16, Vec<&'a Vec<u8>>> = BTreeMap::new();
        for k in changes.keys() {
            by_bucket.entry(bucket_of(k)).or_default().push(k);
        }
        Layered {
            base,
            changes,
            by_bucket,
        }
    }
}

impl<V: StateView + ?Sized> StateView for Layered<'_, V> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ViewError> {
        match self.changes.get(key) {
            Some(v) => Ok(v.clone()),
            None => self.base.get(key),
        }
    }

    fn bucket_entries(&self, bucket: u16) -> Result<Entries, ViewError> {
        let base = self.base.bucket_entries(bucket)?;
        let Some(keys) = self.by_bucket.get(&bucket) else {
            return Ok(base);
        };
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = base.into_iter().collect();
        for k in keys {
            match self.changes.get(*k) {
                Some(Some(v)) => {
                    merged.insert((*k).clone(), v.clone());
                }
                _ => {
                    merged.remove(*k);
                }
            }
        }
        Ok(merged.into_iter().collect())
    }
}

impl Application for Ledger {
    fn propose(
        &self,
        txs: Vec<SignedTx>,
        verified: Vec<Option<PublicKey>>,
        timestamp_ms: u64,
    ) -> Result<(Block, Executed), LedgerError> {
        self.propose_after(None, txs, verified, timestamp_ms)
    }

    fn verify(&self, block: &Block) -> Result<Executed, LedgerError> {
        self.verify_on(None, block, None)
    }

    fn finalize(&self, block: &Block, executed: &Executed) -> Result<String, LedgerError> {
        if block.header.height != self.store.head() + 1
            || block.header.parent != self.store.head_hash()
        {
            return Err(LedgerError::Stale);
        }
        let cp = Checkpoint {
            origin: self.origin.clone(),
            size: executed.log_after.size(),
            root: executed.log_after.root(),
            extensions: vec![],
        };
        let checkpoint = self.note_signer.sign_checkpoint(&cp);
        self.store.commit_block(&BlockCommit {
            block,
            receipts: &executed.execution.receipts,
            changes: &executed.execution.changes,
            bucket_updates: &executed.execution.bucket_updates,
            log_nodes: &executed.log_nodes,
            log_entries: &executed.execution.applied,
            log_after: &executed.log_after,
            checkpoint: &checkpoint,
        })?;
        Ok(checkpoint)
    }
}
