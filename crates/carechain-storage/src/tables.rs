//! Table definitions, public so that tests (tamper and crash tests) and tools can reach the
//! raw data. Writers other than [`crate::Store`] break the ledger's guarantees.

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
