//! Durable storage of a node in one redb database: blocks, receipts, the transaction index,
//! state with its bucket hashes, the verifiable log's complete nodes and entries, and signed
//! checkpoints.
//!
//! A block and everything it produces are written in ONE redb transaction committed with
//! `Durability::Immediate` (fsync): after [`Store::commit_block`] returns, the block is durable;
//! if the process dies before, none of it is visible on restart. Any failed write poisons the
//! handle: every later write fails, so the node never carries on half-written.
//!
//! The transaction index is the exception: it is derived data (every block's receipts name
//! their transactions), and one random B-tree page per transaction made it the largest part
//! of a block's commit. A block's transactions are held in memory ([`Recent`]) and merged into
//! [`tables::TX_INDEX`] in bulk by a background thread, in transactions of their own (sorted,
//! at most every [`MERGE_INTERVAL`] or [`MERGE_BLOCKS`] blocks). `meta/tx_indexed` is the height
//! through which the table is complete; at open the blocks after it are read back into memory.
//! Lookups consult memory, the table and, for a view older than the latest merge, the blocks
//! merged since, so a committed transaction is always found.

mod commit;
mod error;
mod open;
mod snapshot;
pub mod tables;
mod txindex;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use carechain_crypto::Hash;
use carechain_log::CompactRange;
use carechain_state::{StateCommitment, bucket_of};
use carechain_types::Genesis;
use parking_lot::RwLock;
use redb::{Database, ReadableDatabase};

pub use commit::BlockCommit;
pub use error::StorageError;
pub use snapshot::{ReadOnly, Snapshot, open_read_only};
pub use txindex::{MERGE_BLOCKS, MERGE_INTERVAL, TxLocation};

use txindex::Index;

struct Cached {
    head: u64,
    head_hash: Hash,
    head_timestamp: u64,
    commitment: StateCommitment,
    log: CompactRange,
    checkpoint: Option<String>,
}

/// A node's database.
pub struct Store {
    db: Arc<Database>,
    genesis: Genesis,
    cached: RwLock<Cached>,
    poisoned: Arc<AtomicBool>,
    index: Arc<Index>,
    merger: Option<JoinHandle<()>>,
}

pub(crate) fn state_db_key(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 2);
    k.extend_from_slice(&bucket_of(key).to_be_bytes());
    k.extend_from_slice(key);
    k
}

impl Store {
    /// The genesis description.
    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    /// Height of the last durable block (0 = only genesis).
    pub fn head(&self) -> u64 {
        self.cached.read().head
    }

    /// Hash of the last durable block's header (the genesis hash at height 0).
    pub fn head_hash(&self) -> Hash {
        self.cached.read().head_hash
    }

    /// Timestamp of the last durable block (the genesis time at height 0).
    pub fn head_timestamp(&self) -> u64 {
        self.cached.read().head_timestamp
    }

    /// The current state commitment (a copy).
    pub fn commitment(&self) -> StateCommitment {
        self.cached.read().commitment.clone()
    }

    /// Runs `f` with the current commitment without copying it.
    pub fn with_commitment<R>(&self, f: impl FnOnce(&StateCommitment) -> R) -> R {
        f(&self.cached.read().commitment)
    }

    /// The log's compact range (a copy).
    pub fn log(&self) -> CompactRange {
        self.cached.read().log.clone()
    }

    /// The durable tip read at once: height, hash, state root and log of the same block
    /// (reading them one by one may straddle a commit).
    pub fn tip(&self) -> Tip {
        let cached = self.cached.read();
        Tip {
            height: cached.head,
            hash: cached.head_hash,
            timestamp_ms: cached.head_timestamp,
            state_root: cached.commitment.root(),
            log: cached.log.clone(),
        }
    }

    /// The latest signed checkpoint, if any block was committed.
    pub fn latest_checkpoint(&self) -> Option<String> {
        self.cached.read().checkpoint.clone()
    }

    /// Runs `f` on the durable state of one block, read consistently: a snapshot and the
    /// tip, commitment and log of the same height, even while blocks are being committed.
    /// (A commit makes its write visible a moment before it updates the cached tip; a read
    /// that falls in between waits for the update.)
    pub fn with_durable<R>(&self, f: impl FnOnce(&Durable<'_>) -> R) -> Result<R, StorageError> {
        // The window is the few instructions between the database commit and the cache
        // update; a committer preempted there is waited for, briefly, then given up on.
        const PATIENCE: Duration = Duration::from_secs(10);
        let start = std::time::Instant::now();
        loop {
            {
                let cached = self.cached.read();
                let snapshot = self.snapshot()?;
                if snapshot.head()? == cached.head {
                    return Ok(f(&Durable {
                        height: cached.head,
                        hash: cached.head_hash,
                        timestamp_ms: cached.head_timestamp,
                        snapshot: &snapshot,
                        commitment: &cached.commitment,
                        log: &cached.log,
                    }));
                }
            }
            if self.poisoned.load(Ordering::SeqCst) || start.elapsed() > PATIENCE {
                return Err(StorageError::TipMismatch);
            }
            std::thread::yield_now();
        }
    }

    /// A consistent read snapshot.
    pub fn snapshot(&self) -> Result<Snapshot, StorageError> {
        Snapshot::new(self.db.begin_read()?, Some(self.index.clone()))
    }
}

/// The durable tip's height, hash, state root and log, of one block (see [`Store::tip`]).
pub struct Tip {
    /// Its height (0 = genesis).
    pub height: u64,
    /// Its header hash (the genesis hash at height 0).
    pub hash: Hash,
    /// Its timestamp.
    pub timestamp_ms: u64,
    /// The state root after it.
    pub state_root: Hash,
    /// The log after it.
    pub log: CompactRange,
}

/// The durable state of one block, read consistently (see [`Store::with_durable`]).
pub struct Durable<'a> {
    /// Its height (0 = genesis).
    pub height: u64,
    /// Its header hash (the genesis hash at height 0).
    pub hash: Hash,
    /// Its timestamp.
    pub timestamp_ms: u64,
    /// The database as of this block.
    pub snapshot: &'a Snapshot,
    /// The state commitment after it.
    pub commitment: &'a StateCommitment,
    /// The log after it.
    pub log: &'a CompactRange,
}
