//! How a call ends when it does not return.

use carechain_types::ContractFailure;

/// The host (the state machine) could not do what a host function asked: a storage failure,
/// fatal to the block (never a transaction outcome).
#[derive(Debug, thiserror::Error)]
#[error("host failure: {0}")]
pub struct HostFailure(pub String);

/// Why [`crate::Runtime::call`] returned no output.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The contract failed: a rejected receipt, its changes dropped.
    #[error("{failure:?} after {fuel_used} fuel")]
    Failed {
        /// Why.
        failure: ContractFailure,
        /// The fuel it burned up to there.
        fuel_used: u64,
    },
    /// The host failed: fatal to the block.
    #[error(transparent)]
    Host(#[from] HostFailure),
}
