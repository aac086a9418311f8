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

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use carechain_crypto::Hash;
use carechain_log::{CompactRange, LogError, NodeSource};
use carechain_state::{
    ChangeSet, StateCommitment, StateView, ViewError, bucket_hash, bucket_of, value_hash,
};
use carechain_types::{
    Block, Genesis, Receipt, decode_block, decode_genesis, decode_receipts, encode,
};
use parking_lot::{Condvar, Mutex, RwLock};
use redb::{Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable};

/// Table definitions, public so that tests (tamper and crash tests) and tools can reach the
/// raw data. Writers other than [`Store`] break the ledger's guarantees.
pub mod tables {
    use redb::TableDefinition;

    /// Named metadata (`genesis`, `head`, `checkpoint`, `tx_indexed`).
    pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
    /// Height → encoded block.
    pub const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
    /// Header hash → height.
    pub const BLOCK_HASHES: TableDefinition<&[u8; 32], u64> = TableDefinition::new("block_hashes");
    /// Height → encoded receipts.
    pub const RECEIPTS: TableDefinition<u64, &[u8]> = TableDefinition::new("receipts");
    /// Transaction hash → (height, position in block), complete through `meta/tx_indexed`
    /// (later blocks' transactions are merged in bulk by the store's background thread).
    pub const TX_INDEX: TableDefinition<&[u8; 32], (u64, u32)> = TableDefinition::new("tx_index");
    /// `bucket (2 bytes, big-endian) || state key` → value.
    pub const STATE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("state");
    /// (level, index) → complete log node hash, for levels ≥ 1 (level 0 is derived from
    /// [`LOG_ENTRIES`]: leaf hash = SHA-256(0x00 || entry)).
    pub const LOG_NODES: TableDefinition<(u8, u64), &[u8; 32]> = TableDefinition::new("log_nodes");
    /// Log index → entry (the transaction hash).
    pub const LOG_ENTRIES: TableDefinition<u64, &[u8; 32]> = TableDefinition::new("log_entries");
    /// Log size → signed checkpoint note.
    pub const CHECKPOINTS: TableDefinition<u64, &str> = TableDefinition::new("checkpoints");
}

use tables::*;

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The database failed (I/O, corruption, lock).
    #[error("database error: {0}")]
    Db(String),
    /// A previous write failed; this handle accepts no more writes.
    #[error("storage handle is poisoned by an earlier failed write; restart the node")]
    Poisoned,
    /// Stored bytes do not decode: the data directory is corrupt or was altered.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// The data directory has no chain (run `carechain init`), or already has one.
    #[error("{0}")]
    Setup(String),
    /// The block does not extend the stored head.
    #[error("block {got} does not extend head {head}")]
    NotNext {
        /// Current head height.
        head: u64,
        /// The block's height.
        got: u64,
    },
}

fn db<E: std::fmt::Display>(e: E) -> StorageError {
    StorageError::Db(e.to_string())
}

/// Where a transaction is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxLocation {
    /// Block height.
    pub height: u64,
    /// Position within the block.
    pub position: u32,
}

/// Everything one block writes.
pub struct BlockCommit<'a> {
    /// The block.
    pub block: &'a Block,
    /// Its receipts.
    pub receipts: &'a [Receipt],
    /// State changes.
    pub changes: &'a ChangeSet,
    /// New bucket hashes.
    pub bucket_updates: &'a std::collections::BTreeMap<u16, Hash>,
    /// Complete log nodes created by the block's appends.
    pub log_nodes: &'a [(u8, u64, Hash)],
    /// Log entries appended (transaction hashes), starting at the previous log size.
    pub log_entries: &'a [Hash],
    /// The log after the block.
    pub log_after: &'a CompactRange,
    /// The signed checkpoint for the log after the block.
    pub checkpoint: &'a str,
}

/// Most blocks held in memory before the background thread merges them into the index.
pub const MERGE_BLOCKS: usize = 64;
/// Longest a committed block waits in memory before it is merged into the index.
pub const MERGE_INTERVAL: Duration = Duration::from_secs(1);

/// Transactions of durable blocks not merged into [`tables::TX_INDEX`] yet.
#[derive(Default)]
struct Recent {
    /// Every height below this is merged.
    low: u64,
    /// First location of each transaction held.
    by_hash: HashMap<Hash, TxLocation>,
    /// The transactions of each block held, by height.
    by_height: BTreeMap<u64, Vec<Hash>>,
}

/// The index state shared with the merge thread.
struct Index {
    recent: Mutex<Recent>,
    wake: Condvar,
    stop: AtomicBool,
    /// When to merge: this many blocks held, or the oldest held this long.
    policy: Mutex<(usize, Duration)>,
    /// Held while merging (one merge at a time).
    merging: Mutex<()>,
}

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

fn state_db_key(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 2);
    k.extend_from_slice(&bucket_of(key).to_be_bytes());
    k.extend_from_slice(key);
    k
}

impl Store {
    /// Creates a new database at `path` holding `genesis` and its state.
    pub fn create(path: &Path, genesis: &Genesis) -> Result<Store, StorageError> {
        if path.exists() {
            return Err(StorageError::Setup(format!(
                "{} already exists",
                path.display()
            )));
        }
        let database = Database::create(path).map_err(db)?;
        let changes = carechain_state::genesis_changes(genesis);
        let mut txn = database.begin_write().map_err(db)?;
        txn.set_durability(Durability::Immediate).map_err(db)?;
        {
            let mut meta = txn.open_table(META).map_err(db)?;
            meta.insert("genesis", encode(genesis).as_slice())
                .map_err(db)?;
            meta.insert("head", 0u64.to_le_bytes().as_slice())
                .map_err(db)?;
            meta.insert("tx_indexed", 0u64.to_le_bytes().as_slice())
                .map_err(db)?;
            let mut state = txn.open_table(STATE).map_err(db)?;
            for (k, v) in &changes {
                if let Some(v) = v {
                    state
                        .insert(state_db_key(k).as_slice(), v.as_slice())
                        .map_err(db)?;
                }
            }
            for t in [BLOCKS, RECEIPTS] {
                txn.open_table(t).map_err(db)?;
            }
            txn.open_table(BLOCK_HASHES).map_err(db)?;
            txn.open_table(TX_INDEX).map_err(db)?;
            txn.open_table(LOG_NODES).map_err(db)?;
            txn.open_table(LOG_ENTRIES).map_err(db)?;
            txn.open_table(CHECKPOINTS).map_err(db)?;
        }
        txn.commit().map_err(db)?;
        drop(database);
        Store::open(path)
    }

    /// Opens an existing database and recovers the head, the state commitment and the log.
    pub fn open(path: &Path) -> Result<Store, StorageError> {
        if !path.exists() {
            return Err(StorageError::Setup(format!(
                "no database at {} (run `carechain init` first)",
                path.display()
            )));
        }
        let database = Database::open(path).map_err(db)?;
        let rt = database.begin_read().map_err(db)?;
        let meta = rt.open_table(META).map_err(db)?;
        let genesis_bytes = meta
            .get("genesis")
            .map_err(db)?
            .ok_or_else(|| StorageError::Corrupt("no genesis".into()))?;
        let genesis = decode_genesis(genesis_bytes.value())
            .map_err(|e| StorageError::Corrupt(format!("genesis: {e}")))?;
        let head = meta_head(&meta)?;
        let checkpoint = meta
            .get("checkpoint")
            .map_err(db)?
            .map(|v| String::from_utf8_lossy(v.value()).into_owned());
        // The state commitment is rebuilt from the state itself (one ordered scan), so that
        // commits need not write bucket hashes.
        let commitment = {
            let state = rt.open_table(STATE).map_err(db)?;
            let mut hashes: Vec<(u16, Hash)> = Vec::new();
            let mut current: Option<u16> = None;
            let mut entries: Vec<(Vec<u8>, Hash)> = Vec::new();
            let mut flush = |b: Option<u16>, entries: &mut Vec<(Vec<u8>, Hash)>| {
                if let Some(b) = b {
                    hashes.push((
                        b,
                        bucket_hash(entries.iter().map(|(k, v)| (k.as_slice(), *v))),
                    ));
                }
                entries.clear();
            };
            for item in state.iter().map_err(db)? {
                let (k, v) = item.map_err(db)?;
                let k = k.value();
                if k.len() < 2 {
                    return Err(StorageError::Corrupt("state key without bucket".into()));
                }
                let b = u16::from_be_bytes([k[0], k[1]]);
                if current != Some(b) {
                    flush(current, &mut entries);
                    current = Some(b);
                }
                entries.push((k[2..].to_vec(), value_hash(v.value())));
            }
            flush(current, &mut entries);
            StateCommitment::from_buckets(hashes)
        };
        let (head_hash, head_timestamp, log_size) = if head == 0 {
            (genesis.hash(), genesis.timestamp_ms, 0)
        } else {
            let blocks = rt.open_table(BLOCKS).map_err(db)?;
            let bytes = blocks
                .get(head)
                .map_err(db)?
                .ok_or_else(|| StorageError::Corrupt(format!("head block {head} missing")))?;
            let b = decode_block(bytes.value())
                .map_err(|e| StorageError::Corrupt(format!("block {head}: {e}")))?;
            (b.header.hash(), b.header.timestamp_ms, b.header.log_size)
        };
        let indexed = meta_u64(&meta, "tx_indexed")?;
        let snap = Snapshot::new(rt, None)?;
        let log = CompactRange::from_source(&snap, log_size)
            .map_err(|e| StorageError::Corrupt(format!("log: {e}")))?;
        // The blocks not merged into the transaction index yet (a database from before the
        // background merge has a complete index and no mark: it gets one).
        let mut recent = Recent {
            low: indexed.unwrap_or(head) + 1,
            ..Recent::default()
        };
        match indexed {
            Some(indexed) => {
                for height in indexed + 1..=head {
                    let receipts = snap.receipts(height)?.ok_or_else(|| {
                        StorageError::Corrupt(format!("receipts {height} missing"))
                    })?;
                    recent.hold(height, receipts.iter().map(|r| r.tx_hash).collect());
                }
            }
            None => {
                drop(meta);
                drop(snap);
                let mut txn = database.begin_write().map_err(db)?;
                txn.set_durability(Durability::Immediate).map_err(db)?;
                txn.open_table(META)
                    .map_err(db)?
                    .insert("tx_indexed", head.to_le_bytes().as_slice())
                    .map_err(db)?;
                txn.commit().map_err(db)?;
            }
        }
        let database = Arc::new(database);
        let poisoned = Arc::new(AtomicBool::new(false));
        let index = Arc::new(Index {
            recent: Mutex::new(recent),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
            policy: Mutex::new((MERGE_BLOCKS, MERGE_INTERVAL)),
            merging: Mutex::new(()),
        });
        let merger = {
            let (database, poisoned, index) = (database.clone(), poisoned.clone(), index.clone());
            std::thread::Builder::new()
                .name("carechain-txindex".into())
                .spawn(move || merge_loop(&database, &poisoned, &index))
                .map_err(|e| StorageError::Db(format!("cannot start the index thread: {e}")))?
        };
        Ok(Store {
            db: database,
            index,
            merger: Some(merger),
            genesis,
            cached: RwLock::new(Cached {
                head,
                head_hash,
                head_timestamp,
                commitment,
                log,
                checkpoint,
            }),
            poisoned,
        })
    }

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
                return Err(StorageError::Db(
                    "the durable head and its cached state disagree".into(),
                ));
            }
            std::thread::yield_now();
        }
    }

    /// A consistent read snapshot.
    pub fn snapshot(&self) -> Result<Snapshot, StorageError> {
        Snapshot::new(self.db.begin_read().map_err(db)?, Some(self.index.clone()))
    }

    /// Where a transaction is, if committed: [`Snapshot::tx_location`] without opening the
    /// rest of a snapshot (callers waiting for their transaction ask this after every block).
    pub fn tx_location(&self, tx: &Hash) -> Result<Option<TxLocation>, StorageError> {
        tx_location_in(&self.db.begin_read().map_err(db)?, Some(&self.index), tx)
    }

    /// The height through which the transaction index table is complete (later blocks'
    /// transactions are held in memory until the background merge).
    pub fn tx_indexed(&self) -> Result<u64, StorageError> {
        let txn = self.db.begin_read().map_err(db)?;
        let meta = txn.open_table(META).map_err(db)?;
        Ok(meta_u64(&meta, "tx_indexed")?.unwrap_or(0))
    }

    /// When the background thread merges held transactions into the index: once `blocks`
    /// blocks are held, or `interval` after the last merge (defaults: [`MERGE_BLOCKS`],
    /// [`MERGE_INTERVAL`]).
    pub fn set_index_merge(&self, blocks: usize, interval: Duration) {
        *self.index.policy.lock() = (blocks.max(1), interval);
        self.index.wake.notify_all();
    }

    /// Merges the transactions held in memory into the index table now. A failure poisons
    /// the handle.
    pub fn merge_index(&self) -> Result<(), StorageError> {
        if self.poisoned.load(Ordering::SeqCst) {
            return Err(StorageError::Poisoned);
        }
        merge(&self.db, &self.index).inspect_err(|_| self.poisoned.store(true, Ordering::SeqCst))
    }

    /// Writes a block and all it produces in one durable transaction.
    pub fn commit_block(&self, c: &BlockCommit<'_>) -> Result<(), StorageError> {
        if self.poisoned.load(Ordering::SeqCst) {
            return Err(StorageError::Poisoned);
        }
        if self.merger.as_ref().is_some_and(JoinHandle::is_finished) {
            // The merge thread ended without a stop: nothing would bound what is held.
            self.poisoned.store(true, Ordering::SeqCst);
            return Err(StorageError::Db(
                "the transaction index thread stopped".into(),
            ));
        }
        let head = self.head();
        let height = c.block.header.height;
        if height != head + 1 {
            return Err(StorageError::NotNext { head, got: height });
        }
        let result = self.write_block(c);
        if let Err(e) = result {
            self.poisoned.store(true, Ordering::SeqCst);
            return Err(e);
        }
        // Held for the index before the head moves, so whoever sees the block finds its
        // transactions.
        let held = {
            let mut recent = self.index.recent.lock();
            recent.hold(height, c.receipts.iter().map(|r| r.tx_hash).collect());
            recent.by_height.len()
        };
        if held >= self.index.policy.lock().0 {
            self.index.wake.notify_one();
        }
        let mut cached = self.cached.write();
        cached.head = height;
        cached.head_hash = c.block.header.hash();
        cached.head_timestamp = c.block.header.timestamp_ms;
        cached.commitment.apply(c.bucket_updates);
        cached.log = c.log_after.clone();
        cached.checkpoint = Some(c.checkpoint.to_string());
        Ok(())
    }

    fn write_block(&self, c: &BlockCommit<'_>) -> Result<(), StorageError> {
        let height = c.block.header.height;
        let mut txn = self.db.begin_write().map_err(db)?;
        txn.set_durability(Durability::Immediate).map_err(db)?;
        {
            let mut blocks = txn.open_table(BLOCKS).map_err(db)?;
            blocks
                .insert(height, encode(c.block).as_slice())
                .map_err(db)?;
            let mut hashes = txn.open_table(BLOCK_HASHES).map_err(db)?;
            hashes
                .insert(&c.block.header.hash().0, height)
                .map_err(db)?;
            let mut receipts = txn.open_table(RECEIPTS).map_err(db)?;
            receipts
                .insert(height, encode(c.receipts).as_slice())
                .map_err(db)?;
            let mut state = txn.open_table(STATE).map_err(db)?;
            for (k, v) in c.changes {
                let key = state_db_key(k);
                match v {
                    Some(v) => {
                        state.insert(key.as_slice(), v.as_slice()).map_err(db)?;
                    }
                    None => {
                        state.remove(key.as_slice()).map_err(db)?;
                    }
                }
            }
            let mut nodes = txn.open_table(LOG_NODES).map_err(db)?;
            for (level, i, h) in c.log_nodes.iter().filter(|(level, _, _)| *level > 0) {
                nodes.insert((*level, *i), &h.0).map_err(db)?;
            }
            let mut entries = txn.open_table(LOG_ENTRIES).map_err(db)?;
            let first = c.block.header.log_size - c.log_entries.len() as u64;
            for (i, h) in c.log_entries.iter().enumerate() {
                entries.insert(first + i as u64, &h.0).map_err(db)?;
            }
            let mut cps = txn.open_table(CHECKPOINTS).map_err(db)?;
            cps.insert(c.block.header.log_size, c.checkpoint)
                .map_err(db)?;
            let mut meta = txn.open_table(META).map_err(db)?;
            meta.insert("head", height.to_le_bytes().as_slice())
                .map_err(db)?;
            meta.insert("checkpoint", c.checkpoint.as_bytes())
                .map_err(db)?;
        }
        txn.commit().map_err(db)
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

/// A consistent read-only view of the database at one moment.
pub struct Snapshot {
    txn: ReadTransaction,
    index: Option<Arc<Index>>,
    state: redb::ReadOnlyTable<&'static [u8], &'static [u8]>,
    nodes: redb::ReadOnlyTable<(u8, u64), &'static [u8; 32]>,
    entries: redb::ReadOnlyTable<u64, &'static [u8; 32]>,
}

/// The head height recorded in `meta`.
fn meta_head(meta: &redb::ReadOnlyTable<&'static str, &'static [u8]>) -> Result<u64, StorageError> {
    meta_u64(meta, "head")?.ok_or_else(|| StorageError::Corrupt("no head".into()))
}

/// A `u64` metadata value, if present.
fn meta_u64(
    meta: &redb::ReadOnlyTable<&'static str, &'static [u8]>,
    name: &str,
) -> Result<Option<u64>, StorageError> {
    match meta.get(name).map_err(db)? {
        None => Ok(None),
        Some(v) => <[u8; 8]>::try_from(v.value())
            .map(|b| Some(u64::from_le_bytes(b)))
            .map_err(|_| StorageError::Corrupt(format!("meta {name}"))),
    }
}

impl Recent {
    /// Holds the transactions of the block at `height`.
    fn hold(&mut self, height: u64, txs: Vec<Hash>) {
        for (position, h) in txs.iter().enumerate() {
            // A transaction included twice keeps its first (applied or rejected) location.
            self.by_hash.entry(*h).or_insert(TxLocation {
                height,
                position: position as u32,
            });
        }
        self.by_height.insert(height, txs);
    }
}

/// The receipts of the block at `height` in the chain read by `txn`.
fn receipts_in(txn: &ReadTransaction, height: u64) -> Result<Option<Vec<Receipt>>, StorageError> {
    match txn
        .open_table(RECEIPTS)
        .map_err(db)?
        .get(height)
        .map_err(db)?
    {
        None => Ok(None),
        Some(v) => decode_receipts(v.value())
            .map(Some)
            .map_err(|e| StorageError::Corrupt(format!("receipts {height}: {e}"))),
    }
}

/// Where a transaction is in the chain read by `txn`, if committed: the earliest of the
/// locations held in memory (`index`; `None` for a read-only handle), in the index table, and
/// in the blocks merged into the table after `txn` began (they are in neither).
fn tx_location_in(
    txn: &ReadTransaction,
    index: Option<&Index>,
    tx: &Hash,
) -> Result<Option<TxLocation>, StorageError> {
    let meta = txn.open_table(META).map_err(db)?;
    let head = meta_head(&meta)?;
    let indexed = meta_u64(&meta, "tx_indexed")?.unwrap_or(head);
    // Memory first: a merge commits to the table before it forgets, so a location missing
    // here is in the table as `txn` or a later reader sees it, or in the gap read below.
    let (held, low) = match index {
        Some(index) => {
            let recent = index.recent.lock();
            let held = recent.by_hash.get(tx).copied();
            (held.filter(|l| l.height <= head), recent.low)
        }
        None => (None, head + 1),
    };
    let table = txn
        .open_table(TX_INDEX)
        .map_err(db)?
        .get(&tx.0)
        .map_err(db)?
        .map(|v| v.value())
        .map(|(height, position)| TxLocation { height, position });
    let mut gap = None;
    if low > indexed + 1 {
        'blocks: for height in indexed + 1..low.min(head + 1) {
            let Some(rs) = receipts_in(txn, height)? else {
                continue;
            };
            for (position, r) in rs.iter().enumerate() {
                if r.tx_hash == *tx {
                    gap = Some(TxLocation {
                        height,
                        position: position as u32,
                    });
                    break 'blocks;
                }
            }
        }
    }
    Ok([held, table, gap]
        .into_iter()
        .flatten()
        .min_by_key(|l| (l.height, l.position)))
}

/// The background merge: waits for the policy's number of held blocks or its interval, then
/// merges what is held into the index table. A failed merge poisons the store (the next block
/// commit fails) and ends the thread.
fn merge_loop(database: &Database, poisoned: &AtomicBool, index: &Index) {
    let mut last = std::time::Instant::now();
    loop {
        if index.stop.load(Ordering::SeqCst) || poisoned.load(Ordering::SeqCst) {
            return;
        }
        let (blocks, interval) = *index.policy.lock();
        let due = |r: &Recent| {
            r.by_height.len() >= blocks || (!r.by_height.is_empty() && last.elapsed() >= interval)
        };
        let now_due = {
            let mut recent = index.recent.lock();
            if !due(&recent) {
                // Woken early by enough blocks, a new policy or the stop.
                let wait = if recent.by_height.is_empty() {
                    interval
                } else {
                    interval.saturating_sub(last.elapsed())
                };
                index.wake.wait_for(&mut recent, wait);
            }
            due(&recent)
        };
        if now_due && !index.stop.load(Ordering::SeqCst) {
            if merge(database, index).is_err() {
                poisoned.store(true, Ordering::SeqCst);
                return;
            }
            last = std::time::Instant::now();
        }
    }
}

/// Merges the blocks held in memory into the index table (sorted, in one durable
/// transaction), then forgets them.
fn merge(database: &Database, index: &Index) -> Result<(), StorageError> {
    let _one = index.merging.lock();
    let (upto, mut entries) = {
        let recent = index.recent.lock();
        let Some((&upto, _)) = recent.by_height.last_key_value() else {
            return Ok(());
        };
        let entries: Vec<(Hash, TxLocation)> = recent
            .by_height
            .values()
            .flatten()
            .filter_map(|h| recent.by_hash.get(h).map(|l| (*h, *l)))
            .collect();
        (upto, entries)
    };
    entries.sort_unstable_by_key(|(h, _)| *h);
    entries.dedup_by_key(|(h, _)| *h);
    let mut txn = database.begin_write().map_err(db)?;
    txn.set_durability(Durability::Immediate).map_err(db)?;
    {
        let mut table = txn.open_table(TX_INDEX).map_err(db)?;
        for (h, l) in &entries {
            // A location already in the table is earlier: it stays.
            let old = table
                .insert(&h.0, (l.height, l.position))
                .map_err(db)?
                .map(|v| v.value());
            if let Some(old) = old {
                table.insert(&h.0, old).map_err(db)?;
            }
        }
        txn.open_table(META)
            .map_err(db)?
            .insert("tx_indexed", upto.to_le_bytes().as_slice())
            .map_err(db)?;
    }
    txn.commit().map_err(db)?;
    let mut recent = index.recent.lock();
    let later = recent.by_height.split_off(&(upto + 1));
    let merged = std::mem::replace(&mut recent.by_height, later);
    for h in merged.values().flatten() {
        if recent.by_hash.get(h).is_some_and(|l| l.height <= upto) {
            recent.by_hash.remove(h);
        }
    }
    recent.low = upto + 1;
    Ok(())
}

impl Drop for Store {
    fn drop(&mut self) {
        self.index.stop.store(true, Ordering::SeqCst);
        self.index.wake.notify_all();
        if let Some(merger) = self.merger.take() {
            let _ = merger.join();
        }
    }
}

fn view_err<E: std::fmt::Display>(e: E) -> ViewError {
    ViewError::Store(e.to_string())
}

impl Snapshot {
    fn new(txn: ReadTransaction, index: Option<Arc<Index>>) -> Result<Snapshot, StorageError> {
        let state = txn.open_table(STATE).map_err(db)?;
        let nodes = txn.open_table(LOG_NODES).map_err(db)?;
        let entries = txn.open_table(LOG_ENTRIES).map_err(db)?;
        Ok(Snapshot {
            txn,
            index,
            state,
            nodes,
            entries,
        })
    }

    /// A complete log node; level 0 is derived from the stored entry.
    fn read_node(&self, level: u8, index: u64) -> Result<Option<Hash>, StorageError> {
        if level == 0 {
            return Ok(self
                .entries
                .get(index)
                .map_err(db)?
                .map(|v| carechain_crypto::merkle::leaf_hash(v.value())));
        }
        Ok(self
            .nodes
            .get((level, index))
            .map_err(db)?
            .map(|v| Hash(*v.value())))
    }
}

impl NodeSource for Snapshot {
    fn node(&self, level: u8, index: u64) -> Result<Hash, LogError> {
        self.read_node(level, index)
            .map_err(|e| LogError::Source(e.to_string()))?
            .ok_or(LogError::MissingNode { level, index })
    }
}

impl StateView for Snapshot {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ViewError> {
        Ok(self
            .state
            .get(state_db_key(key).as_slice())
            .map_err(view_err)?
            .map(|v| v.value().to_vec()))
    }

    fn bucket_entries(&self, bucket: u16) -> Result<carechain_state::Entries, ViewError> {
        let lo = bucket.to_be_bytes();
        let mut out = Vec::new();
        for item in self.state.range(lo.as_slice()..).map_err(view_err)? {
            let (k, v) = item.map_err(view_err)?;
            let k = k.value();
            if k[..2] != lo {
                break;
            }
            out.push((k[2..].to_vec(), v.value().to_vec()));
        }
        Ok(out)
    }
}

impl Snapshot {
    /// The block at `height`.
    pub fn block(&self, height: u64) -> Result<Option<Block>, StorageError> {
        match self.block_bytes(height)? {
            None => Ok(None),
            Some(b) => decode_block(&b)
                .map(Some)
                .map_err(|e| StorageError::Corrupt(format!("block {height}: {e}"))),
        }
    }

    /// The stored encoding of the block at `height`.
    pub fn block_bytes(&self, height: u64) -> Result<Option<Vec<u8>>, StorageError> {
        let t = self.txn.open_table(BLOCKS).map_err(db)?;
        Ok(t.get(height).map_err(db)?.map(|v| v.value().to_vec()))
    }

    /// The height of the block with this header hash.
    pub fn height_of(&self, hash: &Hash) -> Result<Option<u64>, StorageError> {
        let t = self.txn.open_table(BLOCK_HASHES).map_err(db)?;
        Ok(t.get(&hash.0).map_err(db)?.map(|v| v.value()))
    }

    /// The receipts of the block at `height`.
    pub fn receipts(&self, height: u64) -> Result<Option<Vec<Receipt>>, StorageError> {
        receipts_in(&self.txn, height)
    }

    /// Where a transaction is, if committed.
    pub fn tx_location(&self, tx: &Hash) -> Result<Option<TxLocation>, StorageError> {
        tx_location_in(&self.txn, self.index.as_deref(), tx)
    }

    /// Log entries (transaction hashes) `from..to`.
    pub fn log_entries(&self, from: u64, to: u64) -> Result<Vec<Hash>, StorageError> {
        let mut out = Vec::new();
        for item in self.entries.range(from..to).map_err(db)? {
            let (_, v) = item.map_err(db)?;
            out.push(Hash(*v.value()));
        }
        Ok(out)
    }

    /// Complete log nodes at `level`, indices `from..to` (stops at the first missing one).
    pub fn log_nodes(&self, level: u8, from: u64, to: u64) -> Result<Vec<Hash>, StorageError> {
        if level == 0 {
            return Ok(self
                .log_entries(from, to)?
                .iter()
                .map(|e| carechain_crypto::merkle::leaf_hash(&e.0))
                .collect());
        }
        let mut out = Vec::new();
        for item in self.nodes.range((level, from)..(level, to)).map_err(db)? {
            let (_, v) = item.map_err(db)?;
            out.push(Hash(*v.value()));
        }
        Ok(out)
    }

    /// All stored checkpoints, by log size.
    pub fn checkpoints(&self) -> Result<Vec<(u64, String)>, StorageError> {
        let t = self.txn.open_table(CHECKPOINTS).map_err(db)?;
        let mut out = Vec::new();
        for item in t.iter().map_err(db)? {
            let (k, v) = item.map_err(db)?;
            out.push((k.value(), v.value().to_string()));
        }
        Ok(out)
    }

    /// The latest checkpoint as of this snapshot, with its log size.
    pub fn latest_checkpoint(&self) -> Result<Option<(u64, String)>, StorageError> {
        let t = self.txn.open_table(CHECKPOINTS).map_err(db)?;
        let last = t.last().map_err(db)?;
        Ok(last.map(|(k, v)| (k.value(), v.value().to_string())))
    }

    /// The stored checkpoint for log size `size`.
    pub fn checkpoint(&self, size: u64) -> Result<Option<String>, StorageError> {
        let t = self.txn.open_table(CHECKPOINTS).map_err(db)?;
        Ok(t.get(size).map_err(db)?.map(|v| v.value().to_string()))
    }

    /// A stored log node.
    pub fn log_node(&self, level: u8, index: u64) -> Result<Option<Hash>, StorageError> {
        self.read_node(level, index)
    }

    /// Every state entry, sorted by (bucket, key).
    pub fn state_entries(&self) -> Result<carechain_state::Entries, StorageError> {
        let mut out = Vec::new();
        for item in self.state.iter().map_err(db)? {
            let (k, v) = item.map_err(db)?;
            let k = k.value();
            if k.len() < 2 {
                return Err(StorageError::Corrupt("state key without bucket".into()));
            }
            out.push((k[2..].to_vec(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// Height of the head recorded in this snapshot.
    pub fn head(&self) -> Result<u64, StorageError> {
        meta_head(&self.txn.open_table(META).map_err(db)?)
    }
}

/// Opens a database file read-only (for the offline verifier on a copied data directory).
pub fn open_read_only(path: &Path) -> Result<ReadOnly, StorageError> {
    let database = redb::ReadOnlyDatabase::open(path).map_err(db)?;
    Ok(ReadOnly { db: database })
}

/// A read-only database handle.
pub struct ReadOnly {
    db: redb::ReadOnlyDatabase,
}

impl ReadOnly {
    /// A read snapshot.
    pub fn snapshot(&self) -> Result<Snapshot, StorageError> {
        Snapshot::new(self.db.begin_read().map_err(db)?, None)
    }

    /// The stored genesis.
    pub fn genesis(&self) -> Result<Genesis, StorageError> {
        let rt = self.db.begin_read().map_err(db)?;
        let meta = rt.open_table(META).map_err(db)?;
        let g = meta
            .get("genesis")
            .map_err(db)?
            .ok_or_else(|| StorageError::Corrupt("no genesis".into()))?;
        decode_genesis(g.value()).map_err(|e| StorageError::Corrupt(format!("genesis: {e}")))
    }
}
