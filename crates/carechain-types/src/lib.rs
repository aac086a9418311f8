//! The ledger's data types — transactions, blocks, receipts, genesis — and their canonical
//! binary encoding.
//!
//! The encoding is Borsh: deterministic (one byte string per value), length-prefixed, and
//! decoded here only through [`decode_tx`], [`decode_block`] and friends, which bound the
//! input size first, so hostile bytes produce an error, never a panic or an allocation larger
//! than the input. The ledger core knows nothing of health data: an [`Payload::Anchor`] carries
//! an opaque commitment chosen by the layer above ([`Payload::TaggedAnchor`] adds opaque public
//! tags: a pseudonymous subject, a label and a version). Validator-set governance
//! ([`Payload::ProposeChange`], [`Payload::ApproveChange`]) changes the set
//! from a future epoch, once two thirds of the current set approve.

mod block;
mod codec;
mod consent;
mod contract;
mod supply;
mod token;
mod tx;

pub use block::{
    Block, Genesis, GenesisIdentity, Header, Outcome, Receipt, RejectReason, SupplyReject,
};
pub use codec::{
    DecodeError, MAX_BLOCK_BYTES, MAX_BLOCK_TXS, MAX_TX_BYTES, decode_block, decode_genesis,
    decode_header, decode_receipts, decode_tx, encode,
};
pub use consent::{
    ConsentPurpose, ConsentRule, MAX_CLASS_CODE, MAX_CONSENT_CLASSES, MAX_CONSENT_DELEGATES,
    MAX_CONSENTS_PER_PATIENT,
};
pub use contract::{
    CodeError, ContractConfig, ContractFailure, Event, FuelCosts, MAX_CONTRACT_LABEL,
    MAX_EVENT_ATTRIBUTES, MAX_EVENT_VALUE, MAX_EVENTS, contract_address,
};
pub use supply::{
    ItemId, ItemStatus, MAX_LOT, MAX_NESTING, MAX_SUPPLY_EVENTS, MAX_SUPPLY_ITEMS, SupplyEvent,
    SupplyStep, SuspectReason,
};
pub use token::{Account, AccountParseError, Allowance, MAX_TOKEN_NAME, TokenConfig};
pub use tx::{
    GovernanceChange, Payload, Role, SignedTx, TxBody, approval_quorum, proposal_id,
    rotation_proof_message,
};

/// Version of the wire format; every header carries it.
pub const FORMAT_VERSION: u16 = 1;
/// Longest allowed chain id, in bytes.
pub const MAX_CHAIN_ID: usize = 64;
/// Longest allowed anchor kind label, in bytes.
pub const MAX_KIND: usize = 64;
/// Blocks per validator epoch: the validator set can change only at a multiple of this
/// height (consensus runs one instance per epoch, over that epoch's set).
pub const EPOCH_LENGTH: u64 = 64;
/// Most validators a set may hold.
pub const MAX_VALIDATORS: usize = 128;
/// The longest node endpoint URL (`register_node`).
pub const MAX_ENDPOINT: usize = 256;
/// The most organizations one node serves.
pub const MAX_NODE_ORGANIZATIONS: usize = 64;
/// The most nodes a patient's record locator names.
pub const MAX_LOCATOR_NODES: usize = 256;
