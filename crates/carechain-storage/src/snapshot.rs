//! Consistent read snapshots of the database, and the read-only handle.

use std::{path::Path, sync::Arc};

use carechain_crypto::Hash;
use carechain_log::{LogError, NodeSource};
use carechain_state::{StateView, ViewError};
use carechain_types::{Block, Genesis, Receipt, decode_block, decode_genesis};
use redb::{ReadTransaction, ReadableDatabase, ReadableTable};

use crate::tables::*;
use crate::txindex::{Index, receipts_in, tx_location_in};
use crate::{StorageError, TxLocation, state_db_key};

/// A consistent read-only view of the database at one moment.
pub struct Snapshot {
    txn: ReadTransaction,
    index: Option<Arc<Index>>,
    state: redb::ReadOnlyTable<&'static [u8], &'static [u8]>,
    nodes: redb::ReadOnlyTable<(u8, u64), &'static [u8; 32]>,
    entries: redb::ReadOnlyTable<u64, &'static [u8; 32]>,
}

/// The head height recorded in `meta`.
pub(crate) fn meta_head(
    meta: &redb::ReadOnlyTable<&'static str, &'static [u8]>,
) -> Result<u64, StorageError> {
    meta_u64(meta, "head")?.ok_or_else(|| StorageError::Corrupt("no head".into()))
}

/// A `u64` metadata value, if present.
pub(crate) fn meta_u64(
    meta: &redb::ReadOnlyTable<&'static str, &'static [u8]>,
    name: &str,
) -> Result<Option<u64>, StorageError> {
    match meta.get(name)? {
        None => Ok(None),
        Some(v) => <[u8; 8]>::try_from(v.value())
            .map(|b| Some(u64::from_le_bytes(b)))
            .map_err(|_| StorageError::Corrupt(format!("meta {name}"))),
    }
}

fn view_err<E: std::fmt::Display>(e: E) -> ViewError {
    ViewError::Store(e.to_string())
}

impl Snapshot {
    pub(crate) fn new(
        txn: ReadTransaction,
        index: Option<Arc<Index>>,
    ) -> Result<Snapshot, StorageError> {
        let state = txn.open_table(STATE)?;
        let nodes = txn.open_table(LOG_NODES)?;
        let entries = txn.open_table(LOG_ENTRIES)?;
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
                .get(index)?
                .map(|v| carechain_crypto::merkle::leaf_hash(v.value())));
        }
        Ok(self.nodes.get((level, index))?.map(|v| Hash(*v.value())))
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
        let t = self.txn.open_table(BLOCKS)?;
        Ok(t.get(height)?.map(|v| v.value().to_vec()))
    }

    /// The height of the block with this header hash.
    pub fn height_of(&self, hash: &Hash) -> Result<Option<u64>, StorageError> {
        let t = self.txn.open_table(BLOCK_HASHES)?;
        Ok(t.get(&hash.0)?.map(|v| v.value()))
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
        for item in self.entries.range(from..to)? {
            let (_, v) = item?;
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
        for item in self.nodes.range((level, from)..(level, to))? {
            let (_, v) = item?;
            out.push(Hash(*v.value()));
        }
        Ok(out)
    }

    /// All stored checkpoints, by log size.
    pub fn checkpoints(&self) -> Result<Vec<(u64, String)>, StorageError> {
        let t = self.txn.open_table(CHECKPOINTS)?;
        let mut out = Vec::new();
        for item in t.iter()? {
            let (k, v) = item?;
            out.push((k.value(), v.value().to_string()));
        }
        Ok(out)
    }

    /// The latest checkpoint as of this snapshot, with its log size.
    pub fn latest_checkpoint(&self) -> Result<Option<(u64, String)>, StorageError> {
        let t = self.txn.open_table(CHECKPOINTS)?;
        let last = t.last()?;
        Ok(last.map(|(k, v)| (k.value(), v.value().to_string())))
    }

    /// The stored checkpoint for log size `size`.
    pub fn checkpoint(&self, size: u64) -> Result<Option<String>, StorageError> {
        let t = self.txn.open_table(CHECKPOINTS)?;
        Ok(t.get(size)?.map(|v| v.value().to_string()))
    }

    /// A stored log node.
    pub fn log_node(&self, level: u8, index: u64) -> Result<Option<Hash>, StorageError> {
        self.read_node(level, index)
    }

    /// Every state entry, sorted by (bucket, key).
    pub fn state_entries(&self) -> Result<carechain_state::Entries, StorageError> {
        let mut out = Vec::new();
        for item in self.state.iter()? {
            let (k, v) = item?;
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
        meta_head(&self.txn.open_table(META)?)
    }
}

/// Opens a database file read-only (for the offline verifier on a copied data directory).
pub fn open_read_only(path: &Path) -> Result<ReadOnly, StorageError> {
    let database = redb::ReadOnlyDatabase::open(path)?;
    Ok(ReadOnly { db: database })
}

/// A read-only database handle.
pub struct ReadOnly {
    db: redb::ReadOnlyDatabase,
}

impl ReadOnly {
    /// A read snapshot.
    pub fn snapshot(&self) -> Result<Snapshot, StorageError> {
        Snapshot::new(self.db.begin_read()?, None)
    }

    /// The stored genesis.
    pub fn genesis(&self) -> Result<Genesis, StorageError> {
        let rt = self.db.begin_read()?;
        let meta = rt.open_table(META)?;
        let g = meta
            .get("genesis")?
            .ok_or_else(|| StorageError::Corrupt("no genesis".into()))?;
        decode_genesis(g.value()).map_err(|e| StorageError::Corrupt(format!("genesis: {e}")))
    }
}
