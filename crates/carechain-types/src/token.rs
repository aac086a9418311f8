//! The care token: accounts, the token's metadata (part of genesis) and allowances.

use std::fmt;
use std::str::FromStr;

use borsh::{BorshDeserialize, BorshSerialize};
use carechain_crypto::{Did, Hash, PublicKey};

/// Longest token name or symbol, in bytes.
pub const MAX_TOKEN_NAME: usize = 32;

/// Who can hold tokens: an identity of the registry, or a contract instance.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize,
)]
pub enum Account {
    /// A registered identity (by its permanent id).
    Identity(PublicKey),
    /// A contract instance (by its address, [`crate::contract_address`]).
    Contract(Hash),
}

/// An account string that is neither a `did:key` nor `contract:<64 hex>`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("an account is a did:key or contract:<64 hex digits>")]
pub struct AccountParseError;

impl Account {
    /// The state-key form: one tag byte (0 identity, 1 contract) and the 32 bytes.
    pub fn key_bytes(&self) -> [u8; 33] {
        let (tag, bytes) = match self {
            Account::Identity(k) => (0u8, k.0),
            Account::Contract(h) => (1u8, h.0),
        };
        let mut out = [0u8; 33];
        out[0] = tag;
        out[1..].copy_from_slice(&bytes);
        out
    }
}

impl fmt::Display for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Account::Identity(k) => write!(f, "{}", k.did()),
            Account::Contract(h) => write!(f, "contract:{}", h.to_hex()),
        }
    }
}

impl FromStr for Account {
    type Err = AccountParseError;

    fn from_str(s: &str) -> Result<Account, AccountParseError> {
        if let Some(hex) = s.strip_prefix("contract:") {
            return Hash::from_hex(hex)
                .map(Account::Contract)
                .map_err(|_| AccountParseError);
        }
        s.parse::<Did>()
            .map(|d| Account::Identity(d.public_key()))
            .map_err(|_| AccountParseError)
    }
}

impl From<PublicKey> for Account {
    fn from(k: PublicKey) -> Account {
        Account::Identity(k)
    }
}

/// The token's metadata and fee setting, fixed at genesis.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct TokenConfig {
    /// Its name ("Care Token").
    pub name: String,
    /// Its ticker symbol ("CARE").
    pub symbol: String,
    /// How many decimal places one unit has: amounts are integers of minor units.
    pub decimals: u8,
    /// A fee in minor units every applied transaction pays its block's proposer (0: no fees,
    /// the default). A signer that cannot pay is rejected.
    pub tx_fee: u64,
    /// Balances at genesis (the initial supply is their sum), by identity.
    pub balances: Vec<(PublicKey, u64)>,
}

impl Default for TokenConfig {
    fn default() -> TokenConfig {
        TokenConfig {
            name: "Care Token".into(),
            symbol: "CARE".into(),
            decimals: 2,
            tx_fee: 0,
            balances: Vec::new(),
        }
    }
}

/// An allowance: `spender` may move up to `amount` of the owner's tokens until (not
/// including) block `expires_at`. Setting one replaces the previous one whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Allowance {
    /// What is left to spend.
    pub amount: u64,
    /// The first height at which it no longer holds.
    pub expires_at: u64,
}
