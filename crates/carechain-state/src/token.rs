//! The care token as state: balances, total supply, allowances with an expiry height, and
//! the issuers governance approved. Every amount is an integer of minor units; every change
//! is checked before anything is written, so a rejected payload leaves state as it was.

use borsh::{BorshDeserialize, BorshSerialize};
use carechain_crypto::PublicKey;
use carechain_types::{Account, Allowance, Event, RejectReason, encode};

use crate::exec::{Lookup, TxResult, Writer, read_identity};
use crate::{StateView, ViewError};

/// `token/supply` → the total supply (u64).
pub const SUPPLY_KEY: &[u8] = b"token/supply";

/// `bal/<account key bytes>` → its balance (u64; absent is 0).
pub fn balance_key(account: &Account) -> Vec<u8> {
    [b"bal/".as_slice(), &account.key_bytes()].concat()
}

/// `allow/<owner><spender key bytes>` → [`Allowance`].
pub fn allowance_key(owner: &PublicKey, spender: &Account) -> Vec<u8> {
    [b"allow/".as_slice(), &owner.0, &spender.key_bytes()].concat()
}

/// `token/issuer/<identity>` → [`IssuerTerm`].
pub fn issuer_key(issuer: &PublicKey) -> Vec<u8> {
    [b"token/issuer/".as_slice(), &issuer.0].concat()
}

/// When an identity may mint: from `from_height`, until (not including) `until_height`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct IssuerTerm {
    /// The first height it may mint at.
    pub from_height: u64,
    /// The first height it may no longer mint at, once governance removed it.
    pub until_height: Option<u64>,
}

impl IssuerTerm {
    /// Whether it may mint at `height`.
    pub fn holds_at(&self, height: u64) -> bool {
        self.from_height <= height && self.until_height.is_none_or(|u| height < u)
    }
}

fn decode_u64(value: Option<Vec<u8>>, what: &str) -> Result<u64, ViewError> {
    value.map_or(Ok(0), |b| {
        u64::try_from_slice(&b).map_err(|_| ViewError::Corrupt(what.into()))
    })
}

pub(crate) fn decode_issuer(value: Option<Vec<u8>>) -> Result<Option<IssuerTerm>, ViewError> {
    value
        .map(|b| IssuerTerm::try_from_slice(&b).map_err(|_| ViewError::Corrupt("issuer".into())))
        .transpose()
}

fn decode_allowance(value: Option<Vec<u8>>) -> Result<Option<Allowance>, ViewError> {
    value
        .map(|b| Allowance::try_from_slice(&b).map_err(|_| ViewError::Corrupt("allowance".into())))
        .transpose()
}

/// The balance of `account` in `view`.
pub fn balance<V: StateView + ?Sized>(view: &V, account: &Account) -> Result<u64, ViewError> {
    decode_u64(view.get(&balance_key(account))?, "balance")
}

/// The total supply in `view`.
pub fn total_supply<V: StateView + ?Sized>(view: &V) -> Result<u64, ViewError> {
    decode_u64(view.get(SUPPLY_KEY)?, "supply")
}

/// The allowance `owner` gave `spender` in `view` (expired ones included: check
/// `expires_at`).
pub fn allowance<V: StateView + ?Sized>(
    view: &V,
    owner: &PublicKey,
    spender: &Account,
) -> Result<Option<Allowance>, ViewError> {
    decode_allowance(view.get(&allowance_key(owner, spender))?)
}

/// The issuer term of `key` in `view`, if governance ever approved it.
pub fn issuer<V: StateView + ?Sized>(
    view: &V,
    key: &PublicKey,
) -> Result<Option<IssuerTerm>, ViewError> {
    decode_issuer(view.get(&issuer_key(key))?)
}

pub(crate) fn read_balance(o: &dyn Lookup, a: &Account) -> Result<u64, ViewError> {
    decode_u64(o.lookup(&balance_key(a))?, "balance")
}

fn put_balance(o: &mut dyn Writer, a: &Account, amount: u64) {
    let v = (amount != 0).then(|| encode(&amount));
    o.put(balance_key(a), v);
}

/// Whether `account` can receive tokens: a registered identity or a contract.
pub(crate) fn exists(o: &dyn Lookup, account: &Account) -> Result<bool, ViewError> {
    Ok(match account {
        Account::Identity(k) => read_identity(o, k)?.is_some(),
        Account::Contract(h) => o.lookup(&crate::contract::instance_key(h))?.is_some(),
    })
}

fn transfer_event(kind: &str, emitter: Account, pairs: &[(&str, String)]) -> Event {
    Event {
        emitter,
        kind: kind.into(),
        attributes: pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), v.clone()))
            .collect(),
    }
}

/// Moves `amount` from `from` to `to` (both checked to exist by the caller where needed).
pub(crate) fn move_tokens(
    o: &mut dyn Writer,
    from: &Account,
    to: &Account,
    amount: u64,
) -> Result<Result<Event, RejectReason>, ViewError> {
    let have = read_balance(o, from)?;
    if have < amount {
        return Ok(Err(RejectReason::InsufficientFunds));
    }
    if from != to {
        let Some(after) = read_balance(o, to)?.checked_add(amount) else {
            return Ok(Err(RejectReason::Overflow));
        };
        put_balance(o, from, have - amount);
        put_balance(o, to, after);
    }
    Ok(Ok(transfer_event(
        "transfer",
        *from,
        &[
            ("from", from.to_string()),
            ("to", to.to_string()),
            ("amount", amount.to_string()),
        ],
    )))
}

/// The result of a token payload: its events, or why it is rejected.
pub(crate) type TokenResult = Result<Result<Vec<Event>, RejectReason>, ViewError>;

pub(crate) fn mint(
    o: &mut dyn Writer,
    height: u64,
    signer: &PublicKey,
    to: &Account,
    amount: u64,
) -> TokenResult {
    if !decode_issuer(o.lookup(&issuer_key(signer))?)?.is_some_and(|t| t.holds_at(height)) {
        return Ok(Err(RejectReason::NotIssuer));
    }
    if !exists(o, to)? {
        return Ok(Err(RejectReason::UnknownAccount));
    }
    let supply = decode_u64(o.lookup(SUPPLY_KEY)?, "supply")?;
    let (Some(supply), Some(bal)) = (
        supply.checked_add(amount),
        read_balance(o, to)?.checked_add(amount),
    ) else {
        return Ok(Err(RejectReason::Overflow));
    };
    o.put(SUPPLY_KEY.to_vec(), Some(encode(&supply)));
    put_balance(o, to, bal);
    Ok(Ok(vec![transfer_event(
        "mint",
        Account::Identity(*signer),
        &[("to", to.to_string()), ("amount", amount.to_string())],
    )]))
}

pub(crate) fn transfer(
    o: &mut dyn Writer,
    signer: &PublicKey,
    to: &Account,
    amount: u64,
) -> TokenResult {
    if !exists(o, to)? {
        return Ok(Err(RejectReason::UnknownAccount));
    }
    Ok(move_tokens(o, &Account::Identity(*signer), to, amount)?.map(|e| vec![e]))
}

pub(crate) fn burn(o: &mut dyn Writer, signer: &PublicKey, amount: u64) -> TokenResult {
    let me = Account::Identity(*signer);
    let have = read_balance(o, &me)?;
    if have < amount {
        return Ok(Err(RejectReason::InsufficientFunds));
    }
    let supply = decode_u64(o.lookup(SUPPLY_KEY)?, "supply")?;
    let Some(supply) = supply.checked_sub(amount) else {
        return Err(ViewError::Corrupt("supply below a balance".into()));
    };
    o.put(SUPPLY_KEY.to_vec(), Some(encode(&supply)));
    put_balance(o, &me, have - amount);
    Ok(Ok(vec![transfer_event(
        "burn",
        me,
        &[("amount", amount.to_string())],
    )]))
}

pub(crate) fn set_allowance(
    o: &mut dyn Writer,
    signer: &PublicKey,
    spender: &Account,
    allowance: Allowance,
) -> TokenResult {
    if !exists(o, spender)? {
        return Ok(Err(RejectReason::UnknownAccount));
    }
    let key = allowance_key(signer, spender);
    o.put(key, (allowance.amount != 0).then(|| encode(&allowance)));
    Ok(Ok(vec![transfer_event(
        "set_allowance",
        Account::Identity(*signer),
        &[
            ("spender", spender.to_string()),
            ("amount", allowance.amount.to_string()),
            ("expires_at", allowance.expires_at.to_string()),
        ],
    )]))
}

pub(crate) fn transfer_from(
    o: &mut dyn Writer,
    height: u64,
    spender: &Account,
    owner: &PublicKey,
    to: &Account,
    amount: u64,
) -> TokenResult {
    let key = allowance_key(owner, spender);
    let Some(mut allowed) = decode_allowance(o.lookup(&key)?)? else {
        return Ok(Err(RejectReason::AllowanceExceeded));
    };
    if height >= allowed.expires_at || allowed.amount < amount {
        return Ok(Err(RejectReason::AllowanceExceeded));
    }
    if !exists(o, to)? {
        return Ok(Err(RejectReason::UnknownAccount));
    }
    let event = match move_tokens(o, &Account::Identity(*owner), to, amount)? {
        Ok(e) => e,
        Err(r) => return Ok(Err(r)),
    };
    allowed.amount -= amount;
    o.put(key, (allowed.amount != 0).then(|| encode(&allowed)));
    Ok(Ok(vec![event]))
}

/// Pays the genesis fee from `signer` to `proposer`.
pub(crate) fn pay_fee(
    o: &mut dyn Writer,
    signer: &PublicKey,
    proposer: &PublicKey,
    fee: u64,
) -> TxResult {
    Ok(move_tokens(
        o,
        &Account::Identity(*signer),
        &Account::Identity(*proposer),
        fee,
    )?
    .map(|_| ()))
}
