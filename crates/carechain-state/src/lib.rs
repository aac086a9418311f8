//! The deterministic state machine: identity registry (register, rotate key, deactivate),
//! per-signer nonces, opaque anchors (logged, not stored in state), validator-set governance
//! (proposals, two-thirds approval, a schedule of sets by height), patients' consents
//! (granted and revoked by the patient's own key), and the state commitment
//! (a Merkle tree over 65,536 buckets of sorted key/value hashes) with proofs of single
//! entries.
//!
//! Determinism: this crate reads no clock, no randomness, no environment and iterates only
//! ordered maps. The same state and the same transactions give the same receipts and the same
//! state root on every machine.

mod commitment;
mod consent;
mod contract;
mod exec;
mod gov;
mod keys;
mod memory;
mod network;
mod registry;
mod supply;
mod token;

pub use commitment::{BUCKETS, StateCommitment, StateProof, bucket_hash, bucket_of, value_hash};
pub use consent::{
    ConsentQuery, ConsentState, consent_allows, consent_delegates, consent_index_key, consent_key,
    consents_of, delegates_key,
};
pub use contract::{
    CallEnv, ContractInstance, QueryContext, call_input, code, code_hash, code_key, contract,
    contract_storage_key, instance_key, query,
};
pub use exec::{
    BlockContext, BlockExecution, ChainRules, Identity, apply_block, genesis_changes,
    prevalidate_signatures,
};
pub use gov::{
    Proposal, SCHEDULE_KEY, ScheduledSet, ValidatorSchedule, may_propose, proposal, proposal_key,
    validator_schedule,
};
pub use keys::{identity_key, key_index_key};
pub use memory::MemoryState;
pub use network::{
    Located, NodeEntry, locator, locator_key, node_entry, node_key, node_of_organization,
    org_node_key,
};
pub use supply::{
    Custody, Item, MAX_HISTORY, MAX_SUSPICIONS, Recall, Skipped, Suspicion, company_prefix_owner,
    gln_prefix_owner, gtin_prefix_owner, item_key, prefix_key, recall_key, skipped_events,
    supply_item, supply_recall, supply_root,
};
pub use token::{
    IssuerTerm, SUPPLY_KEY, allowance, allowance_key, balance, balance_key, issuer, issuer_key,
    total_supply,
};

/// A failure to read state: fatal to the block being applied (never a transaction outcome).
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    /// The backing store failed.
    #[error("state store failed: {0}")]
    Store(String),
    /// A stored value could not be decoded: the store is corrupt.
    #[error("corrupt state value under key {0}")]
    Corrupt(String),
}

/// Read access to committed state. Keys are raw state keys (without the bucket prefix).
pub trait StateView {
    /// The value under `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ViewError>;
    /// All entries of one bucket, sorted by key.
    fn bucket_entries(&self, bucket: u16) -> Result<Entries, ViewError>;
}

/// Key/value pairs of state, sorted by key.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Changes to state: `None` deletes. Ordered, so iteration is deterministic.
pub type ChangeSet = std::collections::BTreeMap<Vec<u8>, Option<Vec<u8>>>;
