//! The validator's view of blocks that are executed but not final: proposing on and verifying
//! against any such parent (state changes of the unfinal ancestors layered on the durable
//! state), and committing blocks in the order consensus finalizes them.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Arc,
};

use carechain_consensus::{Executed, LedgerError, Unfinalized};
use carechain_crypto::Hash;
use carechain_node::{Node, NodeError};
use carechain_state::ChangeSet;
use carechain_types::{Block, MAX_BLOCK_TXS, SignedTx};
use parking_lot::Mutex;

/// Why a block could not be proposed, verified or committed.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The block is invalid.
    #[error(transparent)]
    Invalid(#[from] LedgerError),
    /// Committing failed; the node stops.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// The parent is neither durable nor executed here.
    #[error("parent block {0} is not known here")]
    UnknownParent(Hash),
    /// A finalized block conflicts with the durable chain (only a broken quorum can cause it).
    #[error("finalized block {height} conflicts with the durable chain")]
    Conflict {
        /// Its height.
        height: u64,
    },
}

/// A block executed on its parent, with everything its children need.
pub struct Executing {
    /// The block.
    pub block: Arc<Block>,
    /// Its execution.
    pub executed: Executed,
    /// State changes of this block and its not-final ancestors (later winning).
    changes: ChangeSet,
    /// Bucket updates likewise.
    bucket_updates: BTreeMap<u16, Hash>,
    /// Hashes of the transactions in this block and its not-final ancestors.
    txs: HashSet<Hash>,
}

/// Blocks executed but not final, keyed by header hash.
pub struct Chain {
    node: Arc<Node>,
    pending: Mutex<HashMap<Hash, Arc<Executing>>>,
    /// Most transactions per proposed block.
    pub max_block_txs: usize,
    /// Most encoded bytes of transactions per proposed block.
    pub max_block_bytes: usize,
}

impl Chain {
    /// A chain over `node` (started with [`Node::start_external`]).
    pub fn new(node: Arc<Node>, max_block_txs: usize, max_block_bytes: usize) -> Chain {
        Chain {
            node,
            pending: Mutex::new(HashMap::new()),
            max_block_txs: max_block_txs.min(MAX_BLOCK_TXS),
            max_block_bytes,
        }
    }

    /// The node.
    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// Executed, not-final blocks held.
    pub fn pending_len(&self) -> usize {
        self.pending.lock().len()
    }

    /// `parent` as something to execute on: `None` for the durable tip, the held execution
    /// otherwise.
    fn parent(&self, parent: &Hash) -> Result<Option<Arc<Executing>>, ChainError> {
        // Held blocks first: a block being committed meanwhile is made durable before it is
        // forgotten here, so one of the two always finds it (and a held block that became
        // durable meanwhile is still a correct parent: its changes are the durable values).
        if let Some(e) = self.pending.lock().get(parent) {
            return Ok(Some(e.clone()));
        }
        if *parent == self.node.store().head_hash() {
            return Ok(None);
        }
        Err(ChainError::UnknownParent(*parent))
    }

    /// Whether `hash` is the durable tip or an executed block held here.
    pub fn knows(&self, hash: &Hash) -> bool {
        *hash == self.node.store().head_hash() || self.pending.lock().contains_key(hash)
    }

    /// Whether the durable chain holds `hash` at `height`.
    pub fn is_durable(&self, height: u64, hash: &Hash) -> bool {
        height <= self.node.store().head()
            && self
                .node
                .snapshot()
                .ok()
                .and_then(|s| s.height_of(hash).ok().flatten())
                .is_some_and(|h| h == height)
    }

    /// Keeps an executed block; `tx_hashes` are its transactions' hashes.
    fn hold(
        &self,
        block: Block,
        executed: Executed,
        parent: Option<&Executing>,
        tx_hashes: Vec<Hash>,
    ) -> Arc<Executing> {
        let (mut changes, mut bucket_updates, mut txs) = match parent {
            Some(p) => (p.changes.clone(), p.bucket_updates.clone(), p.txs.clone()),
            None => Default::default(),
        };
        for (k, v) in &executed.execution.changes {
            changes.insert(k.clone(), v.clone());
        }
        for (b, h) in &executed.execution.bucket_updates {
            bucket_updates.insert(*b, *h);
        }
        txs.extend(tx_hashes);
        let e = Arc::new(Executing {
            block: Arc::new(block),
            executed,
            changes,
            bucket_updates,
            txs,
        });
        self.pending.lock().insert(e.block.header.hash(), e.clone());
        e
    }

    /// Whether a block on `parent` would carry any transaction: some pending transaction is
    /// not already in `parent` or its not-final ancestors.
    pub fn has_proposable(&self, parent: &Hash) -> bool {
        let Ok(p) = self.parent(parent) else {
            return false;
        };
        let skip = |h: &Hash| p.as_ref().is_some_and(|p| p.txs.contains(h));
        !self.node.proposal(1, skip).0.is_empty()
    }

    /// The height of a block on `parent`, if `parent` is known here.
    pub fn height_after(&self, parent: &Hash) -> Option<u64> {
        let p = self.parent(parent).ok()?;
        Some(p.map_or_else(|| self.node.store().head(), |e| e.block.header.height) + 1)
    }

    /// Proposes a block on `parent` with up to `max_txs` pending transactions not already in
    /// its not-final ancestors, stamped `timestamp_ms` (at least the parent's).
    pub fn propose(
        &self,
        parent: &Hash,
        timestamp_ms: u64,
        max_txs: usize,
    ) -> Result<Arc<Executing>, ChainError> {
        let p = self.parent(parent)?;
        let skip = |h: &Hash| p.as_ref().is_some_and(|p| p.txs.contains(h));
        let (mut txs, mut verified) = self.node.proposal(max_txs.min(self.max_block_txs), skip);
        let mut bytes = 0usize;
        let fit = txs
            .iter()
            .take_while(|t| {
                bytes += carechain_types::encode(*t).len();
                bytes <= self.max_block_bytes
            })
            .count();
        txs.truncate(fit);
        verified.truncate(fit);
        let u = p.as_deref().map(unfinalized);
        let (block, executed) =
            self.node
                .ledger()
                .propose_on(u.as_ref(), txs, verified, timestamp_ms)?;
        if block.header.parent != *parent {
            // The durable tip moved past `parent` meanwhile: nothing can be built on it.
            return Err(LedgerError::Stale.into());
        }
        let tx_hashes = block.txs.iter().map(SignedTx::hash).collect();
        Ok(self.hold(block, executed, p.as_deref(), tx_hashes))
    }

    /// Verifies `block` by re-executing it on its parent, which must be durable or held. A
    /// block that is durable here already (final: committed meanwhile, perhaps while it was
    /// being re-executed) is valid.
    pub fn verify(&self, block: &Block) -> Result<(), ChainError> {
        let hash = block.header.hash();
        if self.pending.lock().contains_key(&hash) {
            return Ok(());
        }
        let result = self.parent(&block.header.parent).and_then(|p| {
            let u = p.as_deref().map(unfinalized);
            // Signatures this node checked when it admitted the transactions are not checked
            // again.
            let tx_hashes: Vec<Hash> = block.txs.iter().map(SignedTx::hash).collect();
            let checked = self.node.verified_keys(&tx_hashes);
            let executed = self
                .node
                .ledger()
                .verify_on(u.as_ref(), block, Some(&checked))?;
            self.hold(block.clone(), executed, p.as_deref(), tx_hashes);
            Ok(())
        });
        match result {
            Err(_) if self.is_durable(block.header.height, &hash) => Ok(()),
            other => other,
        }
    }

    /// The blocks from the one after the durable tip through `hash`, oldest first, when all
    /// are held here (executed); empty otherwise (or when `hash` is durable).
    pub fn held_path(&self, hash: &Hash) -> Vec<Arc<Block>> {
        let head = self.node.store().head_hash();
        let pending = self.pending.lock();
        let mut path = Vec::new();
        let mut next = *hash;
        while next != head {
            match pending.get(&next) {
                // Heights fall by one per step, so the walk ends.
                Some(e) if path.len() < pending.len() => {
                    next = e.block.header.parent;
                    path.push(e.block.clone());
                }
                _ => return Vec::new(),
            }
        }
        path.reverse();
        path
    }

    /// Commits a block consensus finalized: the next height after the durable tip, executed
    /// here before or now. Already durable: nothing to do. Returns whether it was committed.
    pub fn commit(&self, block: &Block) -> Result<bool, ChainError> {
        let head = self.node.store().head();
        let height = block.header.height;
        if height <= head {
            return if self.is_durable(height, &block.header.hash()) {
                Ok(false)
            } else {
                Err(ChainError::Conflict { height })
            };
        }
        if height != head + 1 || block.header.parent != self.node.store().head_hash() {
            return Err(ChainError::Conflict { height });
        }
        let held = self.pending.lock().get(&block.header.hash()).cloned();
        let executed = match held {
            Some(e) => e.executed.clone(),
            None => self.node.ledger().verify_on(None, block, None)?,
        };
        self.node.commit_finalized(block, &executed)?;
        // Forget what is now durable, and every other block at or below it (forks that can
        // no longer be finalized).
        self.pending
            .lock()
            .retain(|_, e| e.block.header.height > height);
        Ok(true)
    }
}

fn unfinalized(e: &Executing) -> Unfinalized<'_> {
    let h = &e.block.header;
    Unfinalized {
        tip: carechain_consensus::ChainTip {
            chain_id: h.chain_id.clone(),
            height: h.height,
            hash: h.hash(),
            timestamp_ms: h.timestamp_ms,
        },
        changes: &e.changes,
        bucket_updates: &e.bucket_updates,
        log: &e.executed.log_after,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use carechain_crypto::{SecretKey, sha256};
    use carechain_node::NodeConfig;
    use carechain_storage::Store;
    use carechain_types::{Genesis, GenesisIdentity, Payload, Role, TxBody, encode};

    fn validator() -> SecretKey {
        SecretKey::from_seed(&sha256(b"validator").0)
    }

    fn signer() -> SecretKey {
        SecretKey::from_seed(&sha256(b"signer").0)
    }

    /// A chain over a fresh store in `dir`: one validator, one organization that signs (the
    /// app's tests use it too).
    pub(crate) fn chain(dir: &std::path::Path) -> Chain {
        let genesis = Genesis {
            token: Default::default(),
            contracts: Default::default(),
            chain_id: "chain-test".into(),
            timestamp_ms: 1,
            identities: [
                (validator(), Role::Validator),
                (signer(), Role::Organization),
            ]
            .into_iter()
            .map(|(k, role)| GenesisIdentity {
                key: k.public(),
                role,
                parent: None,
            })
            .collect(),
        };
        let store = Arc::new(Store::create(&dir.join("ledger.redb"), &genesis).expect("store"));
        let node = Node::start_external(store, validator(), NodeConfig::default()).expect("node");
        Chain::new(node, 16, 1 << 20)
    }

    /// `n` blocks proposed by `chain` from `parent` on, each on the one before, with three
    /// anchors each; `first` blocks were proposed before.
    fn blocks(chain: &Chain, mut parent: Hash, first: u64, n: u64) -> Vec<Arc<Block>> {
        let raws = (3 * first..3 * (first + n))
            .map(|nonce| {
                let tx = TxBody {
                    chain_id: "chain-test".into(),
                    signer: signer().public(),
                    nonce,
                    payload: Payload::Anchor {
                        kind: "test".into(),
                        commitment: sha256(&nonce.to_le_bytes()),
                    },
                }
                .sign(&signer());
                encode(&tx)
            })
            .collect();
        assert!(chain.node().submit_batch(raws).iter().all(Result::is_ok));
        (first..first + n)
            .map(|i| {
                let b = chain
                    .propose(&parent, 2 + i, 3)
                    .expect("propose")
                    .block
                    .clone();
                assert_eq!(b.txs.len(), 3);
                parent = b.header.hash();
                b
            })
            .collect()
    }

    #[test]
    fn blocks_committed_while_they_are_verified_are_never_rejected_and_invalid_ones_still_are() {
        let (dir_a, dir_b) = (
            tempfile::tempdir().expect("tempdir"),
            tempfile::tempdir().expect("tempdir"),
        );
        // A proposes; B verifies every block while its committer commits the same blocks (as
        // on a validator that is behind: marshal delivers blocks it is still verifying).
        let (a, b) = (chain(dir_a.path()), chain(dir_b.path()));
        let chain_blocks = blocks(&a, a.node().store().head_hash(), 0, 40);
        let start = std::sync::Barrier::new(2);
        std::thread::scope(|s| {
            s.spawn(|| {
                start.wait();
                for blk in &chain_blocks {
                    b.commit(blk).expect("commit");
                }
            });
            start.wait();
            for blk in &chain_blocks {
                if let Err(e) = b.verify(blk) {
                    panic!("block {} rejected: {e}", blk.header.height);
                }
            }
        });
        let last = chain_blocks[39].header.hash();
        assert_eq!(b.node().store().head_hash(), last);
        // Every block is durable now, and still verifies (final before it was verified).
        for blk in &chain_blocks {
            b.verify(blk).expect("a final block is valid");
        }
        // A block on the tip with a wrong state root, sealed by the validator, is rejected.
        let next = blocks(&a, last, 40, 1).pop().expect("a block");
        let mut header = next.header.clone();
        header.state_root = sha256(b"not the state");
        let forged = Block::seal(header, next.txs.clone(), &validator());
        assert!(matches!(b.verify(&forged), Err(ChainError::Invalid(_))));
    }
}
