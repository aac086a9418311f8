//! Block execution and the validity rule of a block against its parent.

use std::collections::BTreeMap;

use carechain_crypto::{Hash, PublicKey};
use carechain_log::CompactRange;
use carechain_state::{
    BlockContext, BlockExecution, ChainRules, StateCommitment, StateView, ViewError, apply_block,
    may_propose, prevalidate_signatures,
};
use carechain_types::{Block, FORMAT_VERSION, Header, MAX_BLOCK_TXS, Receipt, SignedTx};

/// The chain position a block must extend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainTip {
    /// The chain id.
    pub chain_id: String,
    /// Height of the tip (0 = genesis).
    pub height: u64,
    /// Hash of the tip header (genesis hash at height 0).
    pub hash: Hash,
    /// Timestamp of the tip.
    pub timestamp_ms: u64,
}

/// A block's transactions executed on top of a state and a log.
#[derive(Clone, Debug)]
pub struct Executed {
    /// State machine results.
    pub execution: BlockExecution,
    /// The log after appending the applied transactions.
    pub log_after: CompactRange,
    /// Complete log nodes created by the appends.
    pub log_nodes: Vec<(u8, u64, Hash)>,
}

/// Why a block is invalid. The first mismatch found is reported.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// Wrong format version or chain id.
    #[error("block {height} has the wrong format version or chain id")]
    WrongChain {
        /// Height.
        height: u64,
    },
    /// Height is not tip + 1.
    #[error("block height {got} does not follow {tip}")]
    WrongHeight {
        /// Tip height.
        tip: u64,
        /// Block height.
        got: u64,
    },
    /// Parent hash is not the tip's hash.
    #[error("block {height} does not link to its parent (parent hash mismatch)")]
    WrongParent {
        /// Height.
        height: u64,
    },
    /// Timestamp earlier than the parent's.
    #[error("block {height} timestamp goes backwards")]
    TimestampRegressed {
        /// Height.
        height: u64,
    },
    /// The proposer's seal does not verify.
    #[error("block {height} seal (proposer signature) does not verify")]
    BadSeal {
        /// Height.
        height: u64,
    },
    /// The proposer is not an allowed validator.
    #[error("block {height} proposer is not a validator of this chain")]
    UnknownProposer {
        /// Height.
        height: u64,
    },
    /// Too many transactions or count mismatch.
    #[error("block {height} transaction count is wrong or over the limit")]
    TxCount {
        /// Height.
        height: u64,
    },
    /// The transaction root does not match the transactions.
    #[error("block {height} transaction root does not match its transactions")]
    TxRoot {
        /// Height.
        height: u64,
    },
    /// Re-execution gives other receipts.
    #[error("block {height} receipts root does not match re-execution")]
    ReceiptsRoot {
        /// Height.
        height: u64,
    },
    /// Re-execution gives another state root.
    #[error("block {height} state root does not match re-execution")]
    StateRoot {
        /// Height.
        height: u64,
    },
    /// Re-execution gives another log size or root.
    #[error("block {height} log size/root does not match re-execution")]
    LogRoot {
        /// Height.
        height: u64,
    },
    /// Reading state failed.
    #[error("state unavailable: {0}")]
    View(#[from] ViewError),
}

/// Executes `txs` as the block `ctx` describes on top of `view`/`commitment`/`log` (the
/// context's `parent_updates` are the bucket updates of a parent block not yet applied to
/// `commitment`; its `log_size` is taken from `log`).
pub fn execute<V: StateView + ?Sized>(
    view: &V,
    commitment: &StateCommitment,
    log: &CompactRange,
    ctx: &BlockContext<'_>,
    txs: &[SignedTx],
    verified: &[Option<PublicKey>],
) -> Result<Executed, ViewError> {
    let ctx = BlockContext {
        log_size: log.size(),
        ..ctx.clone()
    };
    let execution = apply_block(view, commitment, &ctx, txs, verified)?;
    let mut log_after = log.clone();
    let mut log_nodes = Vec::with_capacity(execution.applied.len() * 2);
    for h in &execution.applied {
        log_nodes.extend(log_after.append(carechain_crypto::merkle::leaf_hash(&h.0)));
    }
    Ok(Executed {
        execution,
        log_after,
        log_nodes,
    })
}

/// Checks a block against its parent tip and re-executes it under the chain's `rules`: the
/// proposer must be in the set in force at the block's height (the genesis validators as
/// changed by governance; an empty genesis set allows any key). Returns the execution to
/// commit.
pub fn check_block<V: StateView + ?Sized>(
    tip: &ChainTip,
    view: &V,
    commitment: &StateCommitment,
    log: &CompactRange,
    rules: &ChainRules<'_>,
    block: &Block,
) -> Result<Executed, BlockError> {
    check_block_on(tip, view, commitment, None, log, rules, block, None)
}

/// [`check_block`] on a parent whose bucket updates are not yet applied to `commitment`
/// (`parent_updates`, as in [`execute`]). `checked[i]`, when given, is the key that already
/// verified transaction `i`'s signature (say, at mempool admission); only the others are
/// verified here. The state machine still requires that key to be the signer's current one.
#[allow(clippy::too_many_arguments)]
pub fn check_block_on<V: StateView + ?Sized>(
    tip: &ChainTip,
    view: &V,
    commitment: &StateCommitment,
    parent_updates: Option<&BTreeMap<u16, Hash>>,
    log: &CompactRange,
    rules: &ChainRules<'_>,
    block: &Block,
    checked: Option<&[Option<PublicKey>]>,
) -> Result<Executed, BlockError> {
    let h: &Header = &block.header;
    let height = h.height;
    if h.version != FORMAT_VERSION || h.chain_id != tip.chain_id {
        return Err(BlockError::WrongChain { height });
    }
    if height != tip.height + 1 {
        return Err(BlockError::WrongHeight {
            tip: tip.height,
            got: height,
        });
    }
    if h.parent != tip.hash {
        return Err(BlockError::WrongParent { height });
    }
    if h.timestamp_ms < tip.timestamp_ms {
        return Err(BlockError::TimestampRegressed { height });
    }
    if !may_propose(view, rules.genesis_validators, height, &h.proposer)? {
        return Err(BlockError::UnknownProposer { height });
    }
    if block.verify_seal().is_err() {
        return Err(BlockError::BadSeal { height });
    }
    if block.txs.len() > MAX_BLOCK_TXS || h.tx_count as usize != block.txs.len() {
        return Err(BlockError::TxCount { height });
    }
    if Block::compute_tx_root(&block.txs) != h.tx_root {
        return Err(BlockError::TxRoot { height });
    }
    let verified = match checked {
        Some(known) if known.len() == block.txs.len() => {
            let rest: Vec<usize> = (0..known.len()).filter(|&i| known[i].is_none()).collect();
            let to_check: Vec<SignedTx> = rest.iter().map(|&i| block.txs[i].clone()).collect();
            let mut verified = known.to_vec();
            for (i, k) in rest
                .into_iter()
                .zip(prevalidate_signatures(view, &to_check)?)
            {
                verified[i] = k;
            }
            verified
        }
        _ => prevalidate_signatures(view, &block.txs)?,
    };
    let ctx = BlockContext {
        rules: *rules,
        height,
        timestamp_ms: h.timestamp_ms,
        proposer: h.proposer,
        log_size: log.size(),
        parent_updates,
    };
    let ex = execute(view, commitment, log, &ctx, &block.txs, &verified)?;
    if Receipt::compute_root(&ex.execution.receipts) != h.receipts_root {
        return Err(BlockError::ReceiptsRoot { height });
    }
    if ex.execution.state_root != h.state_root {
        return Err(BlockError::StateRoot { height });
    }
    if ex.log_after.size() != h.log_size || ex.log_after.root() != h.log_root {
        return Err(BlockError::LogRoot { height });
    }
    Ok(ex)
}
