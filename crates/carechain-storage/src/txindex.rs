//! The transaction index: hash → (height, position), merged into its table in bulk by a
//! background thread; the blocks not merged yet are held in memory.

use std::{
    collections::{BTreeMap, HashMap},
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use carechain_crypto::Hash;
use carechain_types::{Receipt, decode_receipts};
use parking_lot::{Condvar, Mutex};
use redb::{Database, Durability, ReadTransaction, ReadableDatabase};

use crate::snapshot::{meta_head, meta_u64};
use crate::tables::*;
use crate::{StorageError, Store};

/// Where a transaction is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxLocation {
    /// Block height.
    pub height: u64,
    /// Position within the block.
    pub position: u32,
}

/// Most blocks held in memory before the background thread merges them into the index.
pub const MERGE_BLOCKS: usize = 64;
/// Longest a committed block waits in memory before it is merged into the index.
pub const MERGE_INTERVAL: Duration = Duration::from_secs(1);

/// Transactions of durable blocks not merged into [`tables::TX_INDEX`] yet.
#[derive(Default)]
pub(crate) struct Recent {
    /// Every height below this is merged.
    pub(crate) low: u64,
    /// First location of each transaction held.
    pub(crate) by_hash: HashMap<Hash, TxLocation>,
    /// The transactions of each block held, by height.
    pub(crate) by_height: BTreeMap<u64, Vec<Hash>>,
}

/// The index state shared with the merge thread.
pub(crate) struct Index {
    pub(crate) recent: Mutex<Recent>,
    pub(crate) wake: Condvar,
    pub(crate) stop: AtomicBool,
    /// When to merge: this many blocks held, or the oldest held this long.
    pub(crate) policy: Mutex<(usize, Duration)>,
    /// Held while merging (one merge at a time).
    pub(crate) merging: Mutex<()>,
}

impl Store {
    /// Where a transaction is, if committed: [`Snapshot::tx_location`] without opening the
    /// rest of a snapshot (callers waiting for their transaction ask this after every block).
    pub fn tx_location(&self, tx: &Hash) -> Result<Option<TxLocation>, StorageError> {
        tx_location_in(&self.db.begin_read()?, Some(&self.index), tx)
    }

    /// The height through which the transaction index table is complete (later blocks'
    /// transactions are held in memory until the background merge).
    pub fn tx_indexed(&self) -> Result<u64, StorageError> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
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
}

impl Recent {
    /// Holds the transactions of the block at `height`.
    pub(crate) fn hold(&mut self, height: u64, txs: Vec<Hash>) {
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
pub(crate) fn receipts_in(
    txn: &ReadTransaction,
    height: u64,
) -> Result<Option<Vec<Receipt>>, StorageError> {
    match txn.open_table(RECEIPTS)?.get(height)? {
        None => Ok(None),
        Some(v) => decode_receipts(v.value())
            .map(Some)
            .map_err(|e| StorageError::Corrupt(format!("receipts {height}: {e}"))),
    }
}

/// Where a transaction is in the chain read by `txn`, if committed: the earliest of the
/// locations held in memory (`index`; `None` for a read-only handle), in the index table, and
/// in the blocks merged into the table after `txn` began (they are in neither).
pub(crate) fn tx_location_in(
    txn: &ReadTransaction,
    index: Option<&Index>,
    tx: &Hash,
) -> Result<Option<TxLocation>, StorageError> {
    let meta = txn.open_table(META)?;
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
        .open_table(TX_INDEX)?
        .get(&tx.0)?
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
pub(crate) fn merge_loop(database: &Database, poisoned: &AtomicBool, index: &Index) {
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
    let mut txn = database.begin_write()?;
    txn.set_durability(Durability::Immediate)?;
    {
        let mut table = txn.open_table(TX_INDEX)?;
        for (h, l) in &entries {
            // A location already in the table is earlier: it stays.
            let old = table
                .insert(&h.0, (l.height, l.position))?
                .map(|v| v.value());
            if let Some(old) = old {
                table.insert(&h.0, old)?;
            }
        }
        txn.open_table(META)?
            .insert("tx_indexed", upto.to_le_bytes().as_slice())?;
    }
    txn.commit()?;
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
