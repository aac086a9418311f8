//! Ledger transactions the node signs for a service built on this one (a claim submitted to
//! an insurer's contract): signed with the node key in the same nonce sequence as anchors,
//! and waited for until durable, with what proves them offline.

use carechain_crypto::Hash;
use carechain_types::{Block, Payload, Receipt};

use crate::{Service, ServiceError};

/// A durable transaction, with its block and receipt.
#[derive(Clone, Debug)]
pub struct NodeTx {
    /// Its hash.
    pub hash: Hash,
    /// The block holding it.
    pub block: Block,
    /// Its position in the block.
    pub position: usize,
    /// Every receipt of that block (its receipt is at `position`).
    pub receipts: Vec<Receipt>,
}

impl NodeTx {
    /// Its receipt.
    pub fn receipt(&self) -> &Receipt {
        &self.receipts[self.position]
    }

    /// The transaction.
    pub fn tx(&self) -> &carechain_types::SignedTx {
        &self.block.txs[self.position]
    }
}

fn store<E: std::error::Error + Send + Sync + 'static>(e: E) -> ServiceError {
    ServiceError::internal("storage", e)
}

impl Service {
    /// Signs `payload` with the node key, submits it and waits until it is durable.
    pub fn submit_node_tx(&self, payload: Payload) -> Result<NodeTx, ServiceError> {
        let hashes = self.anchor_many(vec![payload])?;
        let hash = *hashes
            .first()
            .ok_or_else(|| ServiceError::bad("nothing submitted"))?;
        self.node_tx(&hash)?
            .ok_or_else(|| ServiceError::bad("the transaction is not durable"))
    }

    /// Waits until the (already submitted) transaction `hash` is durable; it, with its block
    /// and receipts.
    pub fn wait_tx(&self, hash: &Hash) -> Result<NodeTx, ServiceError> {
        self.wait_durable(hash)?;
        self.node_tx(hash)?
            .ok_or_else(|| ServiceError::bad("the transaction is not durable"))
    }

    /// The durable transaction `hash` (anyone's), with its block and receipts; `None` when no
    /// durable block holds it.
    pub fn node_tx(&self, hash: &Hash) -> Result<Option<NodeTx>, ServiceError> {
        let snap = self.node.snapshot().map_err(store)?;
        let Some(loc) = snap.tx_location(hash).map_err(store)? else {
            return Ok(None);
        };
        let block = snap
            .block(loc.height)
            .map_err(store)?
            .ok_or_else(|| ServiceError::bad("the block is missing"))?;
        let receipts = snap
            .receipts(loc.height)
            .map_err(store)?
            .ok_or_else(|| ServiceError::bad("the receipts are missing"))?;
        Ok(Some(NodeTx {
            hash: *hash,
            block,
            position: loc.position as usize,
            receipts,
        }))
    }

    /// The node this service runs on.
    pub fn node(&self) -> &std::sync::Arc<carechain_node::Node> {
        &self.node
    }
}
