//! Committing a block: everything it produces in one durable transaction.

use std::{sync::atomic::Ordering, thread::JoinHandle};

use carechain_crypto::Hash;
use carechain_log::CompactRange;
use carechain_state::ChangeSet;
use carechain_types::{Block, Receipt, encode};
use redb::Durability;

use crate::tables::*;
use crate::{StorageError, Store, state_db_key};

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

impl Store {
    /// Writes a block and all it produces in one durable transaction.
    pub fn commit_block(&self, c: &BlockCommit<'_>) -> Result<(), StorageError> {
        if self.poisoned.load(Ordering::SeqCst) {
            return Err(StorageError::Poisoned);
        }
        if self.merger.as_ref().is_some_and(JoinHandle::is_finished) {
            // The merge thread ended without a stop: nothing would bound what is held.
            self.poisoned.store(true, Ordering::SeqCst);
            return Err(StorageError::IndexStopped);
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
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        {
            let mut blocks = txn.open_table(BLOCKS)?;
            blocks.insert(height, encode(c.block).as_slice())?;
            let mut hashes = txn.open_table(BLOCK_HASHES)?;
            hashes.insert(&c.block.header.hash().0, height)?;
            let mut receipts = txn.open_table(RECEIPTS)?;
            receipts.insert(height, encode(c.receipts).as_slice())?;
            let mut state = txn.open_table(STATE)?;
            for (k, v) in c.changes {
                let key = state_db_key(k);
                match v {
                    Some(v) => {
                        state.insert(key.as_slice(), v.as_slice())?;
                    }
                    None => {
                        state.remove(key.as_slice())?;
                    }
                }
            }
            let mut nodes = txn.open_table(LOG_NODES)?;
            for (level, i, h) in c.log_nodes.iter().filter(|(level, _, _)| *level > 0) {
                nodes.insert((*level, *i), &h.0)?;
            }
            let mut entries = txn.open_table(LOG_ENTRIES)?;
            let first = c.block.header.log_size - c.log_entries.len() as u64;
            for (i, h) in c.log_entries.iter().enumerate() {
                entries.insert(first + i as u64, &h.0)?;
            }
            let mut cps = txn.open_table(CHECKPOINTS)?;
            cps.insert(c.block.header.log_size, c.checkpoint)?;
            let mut meta = txn.open_table(META)?;
            meta.insert("head", height.to_le_bytes().as_slice())?;
            meta.insert("checkpoint", c.checkpoint.as_bytes())?;
        }
        Ok(txn.commit()?)
    }
}
