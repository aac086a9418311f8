//! Contracts as ledger data: the fuel cost table and limits (part of genesis, so the fuel a
//! call is charged never changes with the interpreter), the events contracts and the token
//! emit, and why a contract transaction failed.

use borsh::{BorshDeserialize, BorshSerialize};
use carechain_crypto::{Hash, PublicKey, sha256};

use crate::codec::encode;
use crate::token::Account;

/// Longest contract label, event type, attribute key or abort message, in bytes.
pub const MAX_CONTRACT_LABEL: usize = 128;
/// Most events one transaction emits.
pub const MAX_EVENTS: usize = 64;
/// Most attributes one event carries.
pub const MAX_EVENT_ATTRIBUTES: usize = 16;
/// Longest event attribute value, in bytes.
pub const MAX_EVENT_VALUE: usize = 256;

/// What each kind of work costs, in fuel. Every instruction costs `instruction`; the others
/// are added on top for their kind.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct FuelCosts {
    /// Any instruction.
    pub instruction: u32,
    /// A load or store.
    pub memory_access: u32,
    /// A direct or indirect call.
    pub call: u32,
    /// An integer division or remainder.
    pub division: u32,
    /// `memory.grow`, per call (pages are bounded by the memory limit).
    pub memory_grow: u32,
    /// A bulk memory or table instruction (`memory.copy`, `memory.fill`, ...).
    pub bulk_memory: u32,
    /// Any host call.
    pub host_call: u32,
    /// Per byte passed to or from the host.
    pub host_byte: u32,
    /// A storage read.
    pub storage_read: u32,
    /// A storage write or removal.
    pub storage_write: u32,
    /// Per byte written to storage (key and value).
    pub storage_write_byte: u32,
    /// A token transfer from the contract.
    pub transfer: u32,
}

impl Default for FuelCosts {
    fn default() -> FuelCosts {
        FuelCosts {
            instruction: 1,
            memory_access: 1,
            call: 4,
            division: 4,
            memory_grow: 1_000,
            bulk_memory: 200,
            host_call: 200,
            host_byte: 1,
            storage_read: 2_000,
            storage_write: 5_000,
            storage_write_byte: 30,
            transfer: 10_000,
        }
    }
}

/// The contract runtime's cost table and limits, fixed at genesis.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ContractConfig {
    /// The cost table.
    pub costs: FuelCosts,
    /// Most fuel one transaction may burn.
    pub tx_fuel_limit: u64,
    /// Most fuel all transactions of one block may burn together.
    pub block_fuel_limit: u64,
    /// Most linear-memory pages (64 KiB) an instance may have.
    pub memory_pages: u32,
    /// Deepest call stack, in frames.
    pub max_call_depth: u32,
    /// Largest code accepted at deploy, in bytes.
    pub max_code_bytes: u32,
    /// Largest message in or result out, in bytes.
    pub max_message_bytes: u32,
    /// Largest storage key and value, in bytes.
    pub max_storage_value: u32,
}

impl Default for ContractConfig {
    fn default() -> ContractConfig {
        ContractConfig {
            costs: FuelCosts::default(),
            tx_fuel_limit: 50_000_000,
            block_fuel_limit: 2_000_000_000,
            memory_pages: 32,
            max_call_depth: 256,
            max_code_bytes: 200 * 1024,
            max_message_bytes: 16 * 1024,
            max_storage_value: 16 * 1024,
        }
    }
}

/// The address of a contract instance: SHA-256 of its code hash, its creator and the
/// creator's nonce, under a fixed label (so the creator knows it before the block).
pub fn contract_address(code: &Hash, creator: &PublicKey, nonce: u64) -> Hash {
    sha256(&encode(&("carechain/contract", code, creator, nonce)))
}

/// Something a transaction did that others watch for: a token transfer, a contract's own
/// event. Part of the receipt (so in the receipts root).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Event {
    /// Who emitted it: a contract, or the token (then the signer's account).
    pub emitter: Account,
    /// What happened (`transfer`, `mint`, or a contract's own type).
    pub kind: String,
    /// Its attributes, in the order emitted.
    pub attributes: Vec<(String, String)>,
}

/// Why deployed code was refused.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum CodeError {
    /// Larger than the genesis limit.
    TooLarge,
    /// Not a valid WebAssembly module (the validator's message).
    Invalid(String),
    /// Uses floating-point types or instructions (not deterministic across machines).
    Floats,
    /// Uses SIMD.
    Simd,
    /// Uses threads, atomics or shared memory.
    Threads,
    /// Uses another WebAssembly feature the runtime does not enable (memory64, ...).
    Unsupported(String),
    /// Imports something that is not a host function (`carechain.<name>` with its type).
    UnknownImport(String),
    /// Lacks an export the runtime calls (`memory`, `alloc`, `instantiate`, `execute`).
    MissingExport(String),
    /// Declares more initial memory than the limit.
    MemoryTooLarge,
}

impl CodeError {
    /// A short explanation.
    pub fn message(&self) -> String {
        match self {
            CodeError::TooLarge => "code is larger than the genesis limit".into(),
            CodeError::Invalid(m) => format!("not a valid WebAssembly module: {m}"),
            CodeError::Floats => "floating-point types or instructions are not allowed".into(),
            CodeError::Simd => "SIMD is not allowed".into(),
            CodeError::Threads => "threads, atomics and shared memory are not allowed".into(),
            CodeError::Unsupported(m) => format!("unsupported WebAssembly feature: {m}"),
            CodeError::UnknownImport(n) => format!("unknown import {n}"),
            CodeError::MissingExport(n) => format!("missing export {n}"),
            CodeError::MemoryTooLarge => "initial memory exceeds the limit".into(),
        }
    }
}

/// Why a contract call failed. Its state changes are dropped; the fuel it burned is in the
/// receipt.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum ContractFailure {
    /// It used all the fuel it was given.
    OutOfFuel,
    /// The block's fuel limit was reached before or during the call.
    BlockFuelExhausted,
    /// A WebAssembly trap (the trap's name: `unreachable`, `memory_out_of_bounds`, ...).
    Trap(String),
    /// Its call stack grew deeper than the limit.
    CallDepth,
    /// It tried to grow memory beyond the limit, or declares too much.
    MemoryLimit,
    /// It stopped itself with an error message (`abort`).
    Aborted(String),
    /// It broke the host API's rules (bad pointers, an oversized value, a malformed event,
    /// a write during a query, output that is not JSON).
    HostMisuse(String),
    /// The message is not JSON or is too large.
    BadMessage,
    /// The entry point it needs is not exported (say, a query of a contract without one).
    NoEntryPoint(String),
}

impl ContractFailure {
    /// A short explanation.
    pub fn message(&self) -> String {
        match self {
            ContractFailure::OutOfFuel => "out of fuel".into(),
            ContractFailure::BlockFuelExhausted => "the block's fuel limit is reached".into(),
            ContractFailure::Trap(t) => format!("trap: {t}"),
            ContractFailure::CallDepth => "call stack too deep".into(),
            ContractFailure::MemoryLimit => "memory limit exceeded".into(),
            ContractFailure::Aborted(m) => format!("contract error: {m}"),
            ContractFailure::HostMisuse(m) => format!("host API misuse: {m}"),
            ContractFailure::BadMessage => "message is not JSON or too large".into(),
            ContractFailure::NoEntryPoint(e) => format!("contract exports no {e}"),
        }
    }
}
