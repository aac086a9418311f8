//! Canonical encoding and size-bounded decoding.

use borsh::{BorshDeserialize, BorshSerialize};

use crate::{Block, Genesis, Header, Receipt, SignedTx};

/// Largest encoded transaction accepted anywhere (a contract deploy carries its code).
pub const MAX_TX_BYTES: usize = 256 * 1024;
/// Most transactions in one block.
pub const MAX_BLOCK_TXS: usize = 20_000;
/// Largest encoded block.
pub const MAX_BLOCK_BYTES: usize = 64 * 1024 * 1024;
const MAX_GENESIS_BYTES: usize = 16 * 1024 * 1024;

/// Why bytes could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The input is larger than the limit for its type.
    #[error("{what} is {len} bytes, more than the limit of {max}")]
    TooLarge {
        /// The type being decoded.
        what: &'static str,
        /// Input length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The bytes are not a valid encoding (truncated, trailing bytes, bad tag, bad UTF-8).
    #[error("{what} is not a valid encoding: {reason}")]
    Invalid {
        /// The type being decoded.
        what: &'static str,
        /// What the decoder said.
        reason: String,
    },
    /// A block holds more transactions than allowed.
    #[error("block holds {0} transactions, more than the limit")]
    TooManyTxs(usize),
}

/// Canonical encoding of any ledger type.
pub fn encode<T: BorshSerialize + ?Sized>(value: &T) -> Vec<u8> {
    // Writing into a Vec cannot fail.
    borsh::to_vec(value).unwrap_or_default()
}

fn decode_bounded<T: BorshDeserialize>(
    what: &'static str,
    max: usize,
    bytes: &[u8],
) -> Result<T, DecodeError> {
    if bytes.len() > max {
        return Err(DecodeError::TooLarge {
            what,
            len: bytes.len(),
            max,
        });
    }
    // `from_slice` rejects trailing bytes; Borsh pre-allocates cautiously, so a huge length
    // prefix in a short input fails at end of input instead of allocating.
    borsh::from_slice(bytes).map_err(|e| DecodeError::Invalid {
        what,
        reason: e.to_string(),
    })
}

/// Decodes one signed transaction (at most [`MAX_TX_BYTES`]).
pub fn decode_tx(bytes: &[u8]) -> Result<SignedTx, DecodeError> {
    decode_bounded("transaction", MAX_TX_BYTES, bytes)
}

/// Decodes a block (at most [`MAX_BLOCK_BYTES`] and [`MAX_BLOCK_TXS`] transactions).
pub fn decode_block(bytes: &[u8]) -> Result<Block, DecodeError> {
    let block: Block = decode_bounded("block", MAX_BLOCK_BYTES, bytes)?;
    if block.txs.len() > MAX_BLOCK_TXS {
        return Err(DecodeError::TooManyTxs(block.txs.len()));
    }
    Ok(block)
}

/// Decodes a header.
pub fn decode_header(bytes: &[u8]) -> Result<Header, DecodeError> {
    decode_bounded("header", 4096, bytes)
}

/// Decodes the receipts of one block.
pub fn decode_receipts(bytes: &[u8]) -> Result<Vec<Receipt>, DecodeError> {
    decode_bounded("receipts", MAX_BLOCK_BYTES, bytes)
}

/// Decodes a genesis description.
pub fn decode_genesis(bytes: &[u8]) -> Result<Genesis, DecodeError> {
    decode_bounded("genesis", MAX_GENESIS_BYTES, bytes)
}
