//! The boundary between ordering transactions and applying blocks.
//!
//! A consensus engine drives an [`Application`] through three calls: [`Application::propose`]
//! (build a block from ordered transactions), [`Application::verify`] (re-execute a block
//! somebody else proposed) and [`Application::finalize`] (make an executed block durable and
//! publish the signed checkpoint). [`Ledger`] is the application; the single node is an engine
//! that proposes and finalizes its own blocks, and a BFT engine will call the same three
//! functions. [`check_block`] is the block validity rule shared by `verify`, the offline
//! verifier and tests.

pub mod audit;
mod check;
mod ledger;

pub use audit::{AuditFailure, AuditReport, ChainSource, StoreSource, audit_chain};
pub use check::{BlockError, ChainTip, Executed, check_block, check_block_on, execute};
pub use ledger::{
    Application, ContractAnswer, Ledger, LedgerError, Unfinalized, checkpoint_origin,
    cosign_quorum, cosigners_of, validator_cosigners,
};
