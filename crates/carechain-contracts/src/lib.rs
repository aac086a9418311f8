//! The contract runtime: WebAssembly contracts, interpreted by `wasmi`, deterministic on
//! every validator.
//!
//! - [`check_code`] validates code at deploy: a WebAssembly module without floats, SIMD or
//!   threads, importing only the host API and exporting the entry points.
//! - [`meter`] instruments code with fuel counting from the genesis cost table (so the fuel
//!   a call is charged is this crate's, never the interpreter's).
//! - [`Runtime::call`] runs one entry point (`instantiate`, `execute`, `query`) with a JSON
//!   message against a [`Host`] (the state machine): storage in the contract's namespace,
//!   token balances and transfers, events, consents and identities.
//!
//! The ABI: the contract exports `memory`, `alloc(len: i32) -> i32` and entry points
//! `(ptr: i32, len: i32) -> i64` that read the input JSON at `ptr` and return
//! `(out_ptr << 32) | out_len` of their JSON result. Host functions live in module
//! `carechain` (see [`host`]). Nothing here reads a clock, randomness or the environment.
//! [`shipped`] holds the contracts this repository ships, as built.

mod error;
pub mod host;
pub mod meter;
mod runtime;
pub mod shipped;
mod validate;

pub use error::{CallError, HostFailure};
pub use host::{Host, HostIdentity, TransferOutcome};
pub use runtime::{Call, CallOutput, Entry, Runtime};
pub use validate::{CodeInfo, check_code};
