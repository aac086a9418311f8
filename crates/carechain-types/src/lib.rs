//! The ledger's data types — transactions, blocks, receipts, genesis — and their canonical
//! binary encoding.
//!
//! The encoding is Borsh: deterministic (one byte string per value), length-prefixed, and
//! decoded here only through [`decode_tx`], [`decode_block`] and friends, which bound the
//! input size first, so hostile bytes produce an error, never a panic or an allocation larger
//! than the input. The ledger core knows nothing of health data: an [`Payload::Anchor`] carries
//! an opaque commitment chosen by the layer above ([`Payload::TaggedAnchor`] adds opaque public
//! tags: a pseudonymous subject, a label and a version).

mod block;
mod codec;
mod tx;

pub use block::{Block, Genesis, GenesisIdentity, Header, Outcome, Receipt, RejectReason};
pub use codec::{
    DecodeError, MAX_BLOCK_BYTES, MAX_BLOCK_TXS, MAX_TX_BYTES, decode_block, decode_genesis,
    decode_header, decode_receipts, decode_tx, encode,
};
pub use tx::{Payload, Role, SignedTx, TxBody, rotation_proof_message};

/// Version of the wire format; every header carries it.
pub const FORMAT_VERSION: u16 = 1;
/// Longest allowed chain id, in bytes.
pub const MAX_CHAIN_ID: usize = 64;
/// Longest allowed anchor kind label, in bytes.
pub const MAX_KIND: usize = 64;
