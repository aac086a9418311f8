//! Creating a database and opening one: the head, state commitment, log and held
//! transactions recovered from what is stored.

use std::{
    path::Path,
    sync::{Arc, atomic::AtomicBool},
};

use carechain_crypto::Hash;
use carechain_log::CompactRange;
use carechain_state::{StateCommitment, bucket_hash, value_hash};
use carechain_types::{Genesis, decode_block, decode_genesis, encode};
use parking_lot::{Condvar, Mutex, RwLock};
use redb::{Database, Durability, ReadableDatabase, ReadableTable};

use crate::snapshot::{meta_head, meta_u64};
use crate::tables::*;
use crate::txindex::{Index, MERGE_BLOCKS, MERGE_INTERVAL, Recent, merge_loop};
use crate::{Cached, Snapshot, StorageError, Store, state_db_key};

impl Store {
    /// Creates a new database at `path` holding `genesis` and its state.
    pub fn create(path: &Path, genesis: &Genesis) -> Result<Store, StorageError> {
        if path.exists() {
            return Err(StorageError::Setup(format!(
                "{} already exists",
                path.display()
            )));
        }
        let database = Database::create(path)?;
        let changes = carechain_state::genesis_changes(genesis);
        let mut txn = database.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        {
            let mut meta = txn.open_table(META)?;
            meta.insert("genesis", encode(genesis).as_slice())?;
            meta.insert("head", 0u64.to_le_bytes().as_slice())?;
            meta.insert("tx_indexed", 0u64.to_le_bytes().as_slice())?;
            let mut state = txn.open_table(STATE)?;
            for (k, v) in &changes {
                if let Some(v) = v {
                    state.insert(state_db_key(k).as_slice(), v.as_slice())?;
                }
            }
            for t in [BLOCKS, RECEIPTS] {
                txn.open_table(t)?;
            }
            txn.open_table(BLOCK_HASHES)?;
            txn.open_table(TX_INDEX)?;
            txn.open_table(LOG_NODES)?;
            txn.open_table(LOG_ENTRIES)?;
            txn.open_table(CHECKPOINTS)?;
        }
        txn.commit()?;
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
        let database = Database::open(path)?;
        let rt = database.begin_read()?;
        let meta = rt.open_table(META)?;
        let genesis_bytes = meta
            .get("genesis")?
            .ok_or_else(|| StorageError::Corrupt("no genesis".into()))?;
        let genesis = decode_genesis(genesis_bytes.value())
            .map_err(|e| StorageError::Corrupt(format!("genesis: {e}")))?;
        let head = meta_head(&meta)?;
        let checkpoint = meta
            .get("checkpoint")?
            .map(|v| String::from_utf8_lossy(v.value()).into_owned());
        // The state commitment is rebuilt from the state itself (one ordered scan), so that
        // commits need not write bucket hashes.
        let commitment = {
            let state = rt.open_table(STATE)?;
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
            for item in state.iter()? {
                let (k, v) = item?;
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
            let blocks = rt.open_table(BLOCKS)?;
            let bytes = blocks
                .get(head)?
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
                let mut txn = database.begin_write()?;
                txn.set_durability(Durability::Immediate)?;
                txn.open_table(META)?
                    .insert("tx_indexed", head.to_le_bytes().as_slice())?;
                txn.commit()?;
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
                .map_err(StorageError::IndexThread)?
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
}
