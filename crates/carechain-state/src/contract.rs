//! Contracts as state: stored code (by hash), instances, each instance's own storage, and
//! the transactions that deploy, instantiate and execute them through the runtime of
//! `carechain-contracts`. A failed call drops every change it made (its transaction's layer
//! of the overlay) and reports the fuel it burned.

use borsh::{BorshDeserialize, BorshSerialize};
use carechain_contracts::{
    Call, CallError, Entry, Host, HostFailure, HostIdentity, Runtime, TransferOutcome, check_code,
};
use carechain_crypto::{Hash, PublicKey, sha256};
use carechain_types::{
    Account, ConsentPurpose, ContractFailure, MAX_CONTRACT_LABEL, RejectReason, contract_address,
    encode,
};
use serde_json::json;

use crate::exec::{BlockContext, Lookup, Overlay, TxResult, Writer, read_identity};
use crate::{ConsentQuery, StateView, ViewError};

/// `code/<hash>` → the code as deployed.
pub fn code_key(hash: &Hash) -> Vec<u8> {
    [b"code/".as_slice(), &hash.0].concat()
}

/// `contract/<address>` → [`ContractInstance`].
pub fn instance_key(address: &Hash) -> Vec<u8> {
    [b"contract/".as_slice(), &address.0].concat()
}

/// `cstore/<address><key>` → a value of that contract's own storage.
pub fn contract_storage_key(address: &Hash, key: &[u8]) -> Vec<u8> {
    [b"cstore/".as_slice(), &address.0, key].concat()
}

/// A contract instance.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ContractInstance {
    /// The code it runs.
    pub code: Hash,
    /// Who created it.
    pub creator: PublicKey,
    /// Its label.
    pub label: String,
    /// The height it was created at.
    pub created_at: u64,
}

fn decode_instance(v: Option<Vec<u8>>) -> Result<Option<ContractInstance>, ViewError> {
    v.map(|b| {
        ContractInstance::try_from_slice(&b).map_err(|_| ViewError::Corrupt("contract".into()))
    })
    .transpose()
}

/// The instance at `address` in `view`.
pub fn contract<V: StateView + ?Sized>(
    view: &V,
    address: &Hash,
) -> Result<Option<ContractInstance>, ViewError> {
    decode_instance(view.get(&instance_key(address))?)
}

/// The code stored under `hash` in `view`.
pub fn code<V: StateView + ?Sized>(view: &V, hash: &Hash) -> Result<Option<Vec<u8>>, ViewError> {
    view.get(&code_key(hash))
}

/// What a contract sees of the ledger while it runs: its own storage and account, at the
/// block being applied.
struct StateHost<'o> {
    o: &'o mut dyn Writer,
    contract: Hash,
    height: u64,
    at_ms: u64,
}

fn fatal(e: ViewError) -> HostFailure {
    HostFailure(e.to_string())
}

impl Host for StateHost<'_> {
    fn storage_get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, HostFailure> {
        self.o
            .lookup(&contract_storage_key(&self.contract, key))
            .map_err(fatal)
    }

    fn storage_set(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), HostFailure> {
        self.o.put(
            contract_storage_key(&self.contract, key),
            value.map(<[u8]>::to_vec),
        );
        Ok(())
    }

    fn balance(&mut self, account: &Account) -> Result<u64, HostFailure> {
        crate::token::read_balance(self.o, account).map_err(fatal)
    }

    fn transfer(&mut self, to: &Account, amount: u64) -> Result<TransferOutcome, HostFailure> {
        if !crate::token::exists(self.o, to).map_err(fatal)? {
            return Ok(TransferOutcome::UnknownAccount);
        }
        let from = Account::Contract(self.contract);
        Ok(
            match crate::token::move_tokens(self.o, &from, to, amount).map_err(fatal)? {
                Ok(_) => TransferOutcome::Done,
                Err(_) => TransferOutcome::InsufficientFunds,
            },
        )
    }

    fn consent_allows(
        &mut self,
        patient: &PublicKey,
        grantee: &PublicKey,
        purpose: ConsentPurpose,
        class: Option<&str>,
    ) -> Result<bool, HostFailure> {
        let org = read_identity(self.o, grantee)
            .map_err(fatal)?
            .and_then(|i| i.parent);
        let who: Vec<PublicKey> = std::iter::once(*grantee).chain(org).collect();
        let q = ConsentQuery {
            patient,
            who: &who,
            purpose,
            class,
            at_ms: self.at_ms,
        };
        crate::consent::allows_in(self.o, self.height, &q).map_err(fatal)
    }

    fn identity(&mut self, who: &PublicKey) -> Result<Option<HostIdentity>, HostFailure> {
        Ok(read_identity(self.o, who)
            .map_err(fatal)?
            .map(|i| HostIdentity {
                role: i.role,
                organization: i.parent,
                active: i.active,
            }))
    }
}

/// Where, when and by whom a call runs: what its input says beside the message.
#[derive(Clone, Copy, Debug)]
pub struct CallEnv<'a> {
    /// The chain.
    pub chain_id: &'a str,
    /// The block's height.
    pub height: u64,
    /// The block's time.
    pub time_ms: u64,
    /// The contract called.
    pub contract: &'a Hash,
    /// The caller.
    pub sender: &'a Account,
    /// Tokens sent along.
    pub funds: u64,
}

/// Whether `msg` is one JSON value (checked without building maps: the answer, like every
/// byte a contract is given, must not depend on how serde_json was built).
fn is_json(msg: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(msg).is_ok()
}

/// A JSON string literal.
fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

fn env_json(chain_id: &str, height: u64, time_ms: u64, contract: &Hash) -> String {
    format!(
        r#"{{"chain_id":{},"height":{height},"time_ms":{time_ms},"contract":{}}}"#,
        json_str(chain_id),
        json_str(&Account::Contract(*contract).to_string()),
    )
}

/// The exact input bytes of an `instantiate` or `execute` call: written field by field, in a
/// fixed order, with the message's own bytes as the transaction carries them (an offline
/// verifier builds the same bytes to run a call again and get the same fuel).
pub fn call_input(env: &CallEnv<'_>, msg: &[u8]) -> Vec<u8> {
    let head = format!(
        r#"{{"env":{},"info":{{"sender":{},"funds":{}}},"msg":"#,
        env_json(env.chain_id, env.height, env.time_ms, env.contract),
        json_str(&env.sender.to_string()),
        env.funds,
    );
    [head.as_bytes(), msg, b"}"].concat()
}

/// The exact input bytes of a query.
fn query_input(q: &QueryContext<'_>, contract: &Hash, msg: &[u8]) -> Vec<u8> {
    let head = format!(
        r#"{{"env":{},"msg":"#,
        env_json(q.rules.chain_id, q.height, q.timestamp_ms, contract)
    );
    [head.as_bytes(), msg, b"}"].concat()
}

pub(crate) fn deploy<V: StateView + ?Sized>(
    o: &mut Overlay<'_, V>,
    ctx: &BlockContext<'_>,
    code: &[u8],
) -> TxResult {
    let info = match check_code(code, ctx.rules.contracts) {
        Ok(i) => i,
        Err(e) => return Ok(Err(RejectReason::InvalidCode(e))),
    };
    let key = code_key(&info.hash);
    if o.lookup(&key)?.is_some() {
        return Ok(Err(RejectReason::CodeExists));
    }
    o.put(key, Some(code.to_vec()));
    o.effects.data = json!({ "code": info.hash.to_hex() })
        .to_string()
        .into_bytes();
    Ok(Ok(()))
}

/// Where a call's message and money come from.
pub(crate) struct Invocation<'a> {
    pub(crate) sender: PublicKey,
    pub(crate) msg: &'a [u8],
    pub(crate) funds: u64,
}

pub(crate) fn instantiate<V: StateView + ?Sized>(
    o: &mut Overlay<'_, V>,
    ctx: &BlockContext<'_>,
    nonce: u64,
    code: &Hash,
    label: &str,
    inv: &Invocation<'_>,
) -> TxResult {
    if label.len() > MAX_CONTRACT_LABEL {
        return Ok(Err(RejectReason::Malformed));
    }
    if o.lookup(&code_key(code))?.is_none() {
        return Ok(Err(RejectReason::UnknownCode));
    }
    let address = contract_address(code, &inv.sender, nonce);
    let instance = ContractInstance {
        code: *code,
        creator: inv.sender,
        label: label.to_string(),
        created_at: ctx.height,
    };
    o.put(instance_key(&address), Some(encode(&instance)));
    o.effects.data = json!({ "contract": Account::Contract(address).to_string() })
        .to_string()
        .into_bytes();
    run(o, ctx, &address, Entry::Instantiate, inv)
}

pub(crate) fn execute<V: StateView + ?Sized>(
    o: &mut Overlay<'_, V>,
    ctx: &BlockContext<'_>,
    address: &Hash,
    inv: &Invocation<'_>,
) -> TxResult {
    if o.lookup(&instance_key(address))?.is_none() {
        return Ok(Err(RejectReason::UnknownContract));
    }
    run(o, ctx, address, Entry::Execute, inv)
}

fn run<V: StateView + ?Sized>(
    o: &mut Overlay<'_, V>,
    ctx: &BlockContext<'_>,
    address: &Hash,
    entry: Entry,
    inv: &Invocation<'_>,
) -> TxResult {
    let cfg = ctx.rules.contracts;
    if !is_json(inv.msg) {
        return Ok(Err(RejectReason::ContractFailed(
            ContractFailure::BadMessage,
        )));
    }
    let Some(instance) = decode_instance(o.lookup(&instance_key(address))?)? else {
        return Ok(Err(RejectReason::UnknownContract));
    };
    let Some(code) = o.lookup(&code_key(&instance.code))? else {
        return Err(ViewError::Corrupt("contract without code".into()));
    };
    let sender = Account::Identity(inv.sender);
    if inv.funds > 0 {
        let to = Account::Contract(*address);
        match crate::token::move_tokens(o, &sender, &to, inv.funds)? {
            Ok(e) => o.effects.events.push(e),
            Err(r) => return Ok(Err(r)),
        }
    }
    let left_in_block = cfg.block_fuel_limit.saturating_sub(o.block_fuel);
    if left_in_block == 0 {
        return Ok(Err(RejectReason::ContractFailed(
            ContractFailure::BlockFuelExhausted,
        )));
    }
    let fuel = cfg.tx_fuel_limit.min(left_in_block);
    let input = call_input(
        &CallEnv {
            chain_id: ctx.rules.chain_id,
            height: ctx.height,
            time_ms: ctx.timestamp_ms,
            contract: address,
            sender: &sender,
            funds: inv.funds,
        },
        inv.msg,
    );
    let runtime = Runtime::shared(cfg);
    let call = Call {
        code_hash: &instance.code,
        code: &code,
        entry,
        input: &input,
        fuel,
        contract: Account::Contract(*address),
    };
    let mut host = StateHost {
        o: &mut *o,
        contract: *address,
        height: ctx.height,
        at_ms: ctx.timestamp_ms,
    };
    let result = runtime.call(&call, &mut host);
    match result {
        Ok(out) => {
            o.charge_fuel(out.fuel_used);
            o.effects.events.extend(out.events);
            if entry == Entry::Execute {
                o.effects.data = out.data;
            }
            Ok(Ok(()))
        }
        Err(CallError::Failed { failure, fuel_used }) => {
            o.charge_fuel(fuel_used);
            // Out of fuel because the block ran out, not the transaction's own limit.
            let failure = match failure {
                ContractFailure::OutOfFuel if fuel < cfg.tx_fuel_limit => {
                    ContractFailure::BlockFuelExhausted
                }
                f => f,
            };
            Ok(Err(RejectReason::ContractFailed(failure)))
        }
        Err(CallError::Host(h)) => Err(ViewError::Store(h.0)),
    }
}

/// A read-only call of `address`'s `query` with `msg` on the state in `view` after block
/// `height` (at `time_ms`). The result is the contract's JSON, or why it failed.
pub struct QueryContext<'a> {
    /// The chain's rules (for the cost table and limits).
    pub rules: &'a crate::ChainRules<'a>,
    /// The height of the state queried.
    pub height: u64,
    /// That block's time.
    pub timestamp_ms: u64,
}

/// Runs a query: `Ok(Ok(json))`, `Ok(Err(reason))` when the contract or the message fails.
pub fn query<V: StateView + ?Sized>(
    view: &V,
    q: &QueryContext<'_>,
    address: &Hash,
    msg: &[u8],
) -> Result<Result<(Vec<u8>, u64), RejectReason>, ViewError> {
    let mut o = Overlay::new(view);
    let Some(instance) = decode_instance(o.lookup(&instance_key(address))?)? else {
        return Ok(Err(RejectReason::UnknownContract));
    };
    if !is_json(msg) {
        return Ok(Err(RejectReason::ContractFailed(
            ContractFailure::BadMessage,
        )));
    }
    let Some(code) = o.lookup(&code_key(&instance.code))? else {
        return Err(ViewError::Corrupt("contract without code".into()));
    };
    let input = query_input(q, address, msg);
    let cfg = q.rules.contracts;
    let call = Call {
        code_hash: &instance.code,
        code: &code,
        entry: Entry::Query,
        input: &input,
        fuel: cfg.tx_fuel_limit,
        contract: Account::Contract(*address),
    };
    let mut host = StateHost {
        o: &mut o,
        contract: *address,
        height: q.height,
        at_ms: q.timestamp_ms,
    };
    match Runtime::shared(cfg).call(&call, &mut host) {
        Ok(out) => Ok(Ok((out.data, out.fuel_used))),
        Err(CallError::Failed { failure, .. }) => Ok(Err(RejectReason::ContractFailed(failure))),
        Err(CallError::Host(h)) => Err(ViewError::Store(h.0)),
    }
}

/// The hash deployed code is stored under.
pub fn code_hash(code: &[u8]) -> Hash {
    sha256(code)
}
