//! The ledger application over durable storage.

use std::sync::Arc;

use carechain_crypto::{PublicKey, SecretKey};
use carechain_log::{Checkpoint, NoteSigner};
use carechain_storage::{BlockCommit, StorageError, Store};
use carechain_types::{Block, FORMAT_VERSION, Header, Receipt, Role, SignedTx};

use crate::check::{BlockError, ChainTip, Executed, check_block, execute};

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
}

/// The log origin (and checkpoint key name) for a chain.
pub fn checkpoint_origin(chain_id: &str) -> String {
    format!("carechain/{chain_id}")
}

/// A block executed and ready to be made durable.
pub struct FinalizedBlock {
    /// The block.
    pub block: Block,
    /// Its receipts.
    pub receipts: Vec<Receipt>,
    /// The signed checkpoint published with it.
    pub checkpoint: String,
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
    /// Makes an executed block durable and publishes its checkpoint.
    fn finalize(&self, block: Block, executed: Executed) -> Result<FinalizedBlock, LedgerError>;
}

/// The ledger: state machine + verifiable log + storage, with this node's signing key.
pub struct Ledger {
    store: Arc<Store>,
    key: SecretKey,
    note_signer: NoteSigner,
    origin: String,
    validators: Vec<PublicKey>,
}

impl Ledger {
    /// A ledger over `store`, signing blocks and checkpoints with `key`.
    pub fn new(store: Arc<Store>, key: SecretKey) -> Result<Ledger, LedgerError> {
        let origin = checkpoint_origin(&store.genesis().chain_id);
        let note_signer = NoteSigner::new(&origin, key.clone())
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

    /// The validators allowed to propose (from genesis).
    pub fn validators(&self) -> &[PublicKey] {
        &self.validators
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

impl Application for Ledger {
    fn propose(
        &self,
        txs: Vec<SignedTx>,
        verified: Vec<Option<PublicKey>>,
        timestamp_ms: u64,
    ) -> Result<(Block, Executed), LedgerError> {
        let tip = self.tip();
        let snapshot = self.store.snapshot()?;
        let log = self.store.log();
        let height = tip.height + 1;
        let ex = self.store.with_commitment(|c| {
            execute(&snapshot, c, &log, &tip.chain_id, height, &txs, &verified)
        });
        let ex = ex.map_err(|e| LedgerError::Storage(StorageError::Db(e.to_string())))?;
        let header = Header {
            version: FORMAT_VERSION,
            chain_id: tip.chain_id.clone(),
            height,
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

    fn verify(&self, block: &Block) -> Result<Executed, LedgerError> {
        let tip = self.tip();
        let snapshot = self.store.snapshot()?;
        let log = self.store.log();
        let ex = self
            .store
            .with_commitment(|c| check_block(&tip, &snapshot, c, &log, &self.validators, block))?;
        Ok(ex)
    }

    fn finalize(&self, block: Block, executed: Executed) -> Result<FinalizedBlock, LedgerError> {
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
            block: &block,
            receipts: &executed.execution.receipts,
            changes: &executed.execution.changes,
            bucket_updates: &executed.execution.bucket_updates,
            log_nodes: &executed.log_nodes,
            log_entries: &executed.execution.applied,
            log_after: &executed.log_after,
            checkpoint: &checkpoint,
        })?;
        Ok(FinalizedBlock {
            block,
            receipts: executed.execution.receipts,
            checkpoint,
        })
    }
}
