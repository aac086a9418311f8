//! A single carechain node: admits signed transactions into a bounded mempool (decoded,
//! signature- and nonce-checked, with back-pressure), cuts a block every `block_interval` or
//! `max_block_txs`, and drives the ledger application through propose → finalize. Each block
//! is one durable commit (group commit), after which its checkpoint is published and waiters
//! are woken.

mod mempool;
mod metrics;
mod node;

pub use mempool::{Admitted, SubmitError};
pub use metrics::NodeMetrics;
pub use node::{EngineMetrics, Fault, MAX_FAULTS, Node, NodeConfig, NodeError, now_ms};
