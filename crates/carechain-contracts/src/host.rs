//! The host API: what a contract may ask of the ledger, and the functions (module
//! `carechain`) through which it asks. Every call is charged from the cost table before it
//! does anything; a query may read but never write.

use carechain_crypto::PublicKey;
use carechain_types::{
    Account, ConsentPurpose, ContractFailure, Event, FuelCosts, MAX_CONTRACT_LABEL,
    MAX_EVENT_ATTRIBUTES, MAX_EVENT_VALUE, MAX_EVENTS, Role,
};
use wasmi::{Caller, Extern, Linker};
use wasmparser::ValType;

use crate::error::HostFailure;
use crate::meter::FUEL_GLOBAL;

/// What the state machine offers a running contract (the contract's own namespace, its
/// own account). Errors are storage failures: fatal to the block.
pub trait Host {
    /// The value under `key` in the contract's storage.
    fn storage_get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, HostFailure>;
    /// Sets (`Some`) or removes (`None`) the value under `key` in the contract's storage.
    fn storage_set(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), HostFailure>;
    /// The token balance of `account`.
    fn balance(&mut self, account: &Account) -> Result<u64, HostFailure>;
    /// Moves `amount` of the contract's tokens to `to`.
    fn transfer(&mut self, to: &Account, amount: u64) -> Result<TransferOutcome, HostFailure>;
    /// Whether `patient`'s ledger consents, at this block, let `grantee` (or its
    /// organization) see records of `class` for `purpose`.
    fn consent_allows(
        &mut self,
        patient: &PublicKey,
        grantee: &PublicKey,
        purpose: ConsentPurpose,
        class: Option<&str>,
    ) -> Result<bool, HostFailure>;
    /// The registry's entry for `who`.
    fn identity(&mut self, who: &PublicKey) -> Result<Option<HostIdentity>, HostFailure>;
}

/// How a transfer from the contract ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferOutcome {
    /// Done.
    Done,
    /// The contract does not hold enough.
    InsufficientFunds,
    /// The receiver is neither an identity nor a contract.
    UnknownAccount,
}

/// An identity as a contract sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostIdentity {
    /// Its role.
    pub role: Role,
    /// Its organization.
    pub organization: Option<PublicKey>,
    /// Whether it may still sign.
    pub active: bool,
}

/// One host function: its name in module `carechain` and its type.
pub struct HostFunction {
    /// The import name.
    pub name: &'static str,
    /// Parameter types.
    pub params: &'static [ValType],
    /// Result types.
    pub results: &'static [ValType],
}

const I32: ValType = ValType::I32;
const I64: ValType = ValType::I64;

/// Every host function, as contracts import them.
pub const HOST_FUNCTIONS: &[HostFunction] = &[
    // (key_ptr, key_len) -> value length, or -1 when absent; the value waits in the register.
    HostFunction {
        name: "storage_read",
        params: &[I32, I32],
        results: &[I32],
    },
    // (key_ptr, key_len, value_ptr, value_len)
    HostFunction {
        name: "storage_write",
        params: &[I32, I32, I32, I32],
        results: &[],
    },
    // (key_ptr, key_len)
    HostFunction {
        name: "storage_remove",
        params: &[I32, I32],
        results: &[],
    },
    // (ptr): copies the register (the last value a host function returned) to ptr.
    HostFunction {
        name: "register_read",
        params: &[I32],
        results: &[],
    },
    // (account_ptr, account_len) -> balance (an account is a did:key or contract:<hex>).
    HostFunction {
        name: "balance",
        params: &[I32, I32],
        results: &[I64],
    },
    // (to_ptr, to_len, amount) -> 0 done, 1 insufficient funds, 2 unknown account.
    HostFunction {
        name: "transfer",
        params: &[I32, I32, I64],
        results: &[I32],
    },
    // (json_ptr, json_len): {"type": "...", "attributes": [["key", "value"], ...]}.
    HostFunction {
        name: "emit",
        params: &[I32, I32],
        results: &[],
    },
    // (json_ptr, json_len) -> 1 allowed, 0 not: {"patient", "grantee", "purpose", "class"?}.
    HostFunction {
        name: "consent_allows",
        params: &[I32, I32],
        results: &[I32],
    },
    // (did_ptr, did_len) -> length of {"role", "organization", "active"} in the register, or -1.
    HostFunction {
        name: "identity",
        params: &[I32, I32],
        results: &[I32],
    },
    // (msg_ptr, msg_len): stops the call with this error message.
    HostFunction {
        name: "abort",
        params: &[I32, I32],
        results: &[],
    },
];

/// Why a host function stopped the call.
#[derive(Debug)]
pub(crate) enum Stop {
    Failure(ContractFailure),
    Host(HostFailure),
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::Failure(c) => write!(f, "{}", c.message()),
            Stop::Host(h) => write!(f, "{h}"),
        }
    }
}

impl wasmi::errors::HostError for Stop {}

fn stop(f: ContractFailure) -> wasmi::Error {
    wasmi::Error::host(Stop::Failure(f))
}

fn misuse(m: &str) -> wasmi::Error {
    stop(ContractFailure::HostMisuse(m.into()))
}

fn host_err(h: HostFailure) -> wasmi::Error {
    wasmi::Error::host(Stop::Host(h))
}

/// A running call's side of the host: the ledger, the register, what it emitted.
pub(crate) struct Ctx<'h> {
    pub(crate) host: &'h mut dyn Host,
    pub(crate) costs: FuelCosts,
    pub(crate) read_only: bool,
    pub(crate) emitter: Account,
    pub(crate) register: Vec<u8>,
    pub(crate) events: Vec<Event>,
    pub(crate) max_value: usize,
    pub(crate) limits: Limits,
}

/// Memory and table limits; remembers a refused growth so the trap that follows is named.
pub(crate) struct Limits {
    pub(crate) memory_bytes: usize,
    pub(crate) memory_refused: bool,
}

impl wasmi::ResourceLimiter for Limits {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> Result<bool, wasmi_core::LimiterError> {
        let ok = desired <= self.memory_bytes;
        self.memory_refused |= !ok;
        Ok(ok)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> Result<bool, wasmi_core::LimiterError> {
        Ok(desired <= 10_000)
    }

    fn instances(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        1
    }

    fn memories(&self) -> usize {
        1
    }
}

type C<'a, 'h> = Caller<'a, Ctx<'h>>;

/// Charges `amount` fuel from the instance's counter; out of fuel stops the call.
pub(crate) fn charge(c: &mut C<'_, '_>, amount: u64) -> Result<(), wasmi::Error> {
    let Some(Extern::Global(g)) = c.get_export(FUEL_GLOBAL) else {
        return Err(misuse("uninstrumented code"));
    };
    let left = g.get(&*c).i64().unwrap_or(0);
    let after = left.saturating_sub(i64::try_from(amount).unwrap_or(i64::MAX));
    g.set(&mut *c, wasmi::Val::I64(after.max(-1)))
        .map_err(|_| misuse("fuel counter"))?;
    if after < 0 {
        return Err(stop(ContractFailure::OutOfFuel));
    }
    Ok(())
}

fn memory(c: &C<'_, '_>) -> Result<wasmi::Memory, wasmi::Error> {
    match c.get_export("memory") {
        Some(Extern::Memory(m)) => Ok(m),
        _ => Err(misuse("no memory export")),
    }
}

/// Reads `len` bytes at `ptr` of the contract's memory (charged per byte).
pub(crate) fn read(c: &mut C<'_, '_>, ptr: i32, len: i32) -> Result<Vec<u8>, wasmi::Error> {
    let (Ok(ptr), Ok(len)) = (usize::try_from(ptr), usize::try_from(len)) else {
        return Err(misuse("negative pointer or length"));
    };
    if len > c.data().max_value.max(4096) {
        return Err(misuse("value too large"));
    }
    let per_byte = u64::from(c.data().costs.host_byte);
    charge(c, per_byte * len as u64)?;
    let mut buf = vec![0u8; len];
    memory(c)?
        .read(&*c, ptr, &mut buf)
        .map_err(|_| misuse("pointer out of bounds"))?;
    Ok(buf)
}

fn write(c: &mut C<'_, '_>, ptr: i32, bytes: &[u8]) -> Result<(), wasmi::Error> {
    let Ok(ptr) = usize::try_from(ptr) else {
        return Err(misuse("negative pointer"));
    };
    let per_byte = u64::from(c.data().costs.host_byte);
    charge(c, per_byte * bytes.len() as u64)?;
    memory(c)?
        .write(&mut *c, ptr, bytes)
        .map_err(|_| misuse("pointer out of bounds"))
}

fn enter(c: &mut C<'_, '_>, extra: u32, writes: bool) -> Result<(), wasmi::Error> {
    if writes && c.data().read_only {
        return Err(misuse("a query may not write"));
    }
    let cost = u64::from(c.data().costs.host_call) + u64::from(extra);
    charge(c, cost)
}

fn account(bytes: &[u8]) -> Result<Account, wasmi::Error> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| misuse("not an account (did:key or contract:<hex>)"))
}

fn did_key(s: &str) -> Result<PublicKey, wasmi::Error> {
    s.parse::<carechain_crypto::Did>()
        .map(|d| d.public_key())
        .map_err(|_| misuse("not a did:key"))
}

fn set_register(c: &mut C<'_, '_>, bytes: Vec<u8>) -> i32 {
    let len = i32::try_from(bytes.len()).unwrap_or(i32::MAX);
    c.data_mut().register = bytes;
    len
}

fn storage_read(mut c: C<'_, '_>, kp: i32, kl: i32) -> Result<i32, wasmi::Error> {
    let read_cost = c.data().costs.storage_read;
    enter(&mut c, read_cost, false)?;
    let key = read(&mut c, kp, kl)?;
    match c.data_mut().host.storage_get(&key).map_err(host_err)? {
        None => Ok(-1),
        Some(v) => {
            let per_byte = u64::from(c.data().costs.host_byte);
            charge(&mut c, per_byte * v.len() as u64)?;
            Ok(set_register(&mut c, v))
        }
    }
}

fn storage_write(mut c: C<'_, '_>, kp: i32, kl: i32, vp: i32, vl: i32) -> Result<(), wasmi::Error> {
    let write_cost = c.data().costs.storage_write;
    enter(&mut c, write_cost, true)?;
    let key = read(&mut c, kp, kl)?;
    let value = read(&mut c, vp, vl)?;
    let max = c.data().max_value;
    if key.is_empty() || key.len() > 256 || value.len() > max {
        return Err(misuse("storage key or value too large"));
    }
    let per_byte = u64::from(c.data().costs.storage_write_byte);
    charge(&mut c, per_byte * (key.len() + value.len()) as u64)?;
    c.data_mut()
        .host
        .storage_set(&key, Some(&value))
        .map_err(host_err)
}

fn storage_remove(mut c: C<'_, '_>, kp: i32, kl: i32) -> Result<(), wasmi::Error> {
    let write_cost = c.data().costs.storage_write;
    enter(&mut c, write_cost, true)?;
    let key = read(&mut c, kp, kl)?;
    c.data_mut().host.storage_set(&key, None).map_err(host_err)
}

fn register_read(mut c: C<'_, '_>, ptr: i32) -> Result<(), wasmi::Error> {
    enter(&mut c, 0, false)?;
    let reg = std::mem::take(&mut c.data_mut().register);
    let r = write(&mut c, ptr, &reg);
    c.data_mut().register = reg;
    r
}

fn balance(mut c: C<'_, '_>, ap: i32, al: i32) -> Result<i64, wasmi::Error> {
    let read_cost = c.data().costs.storage_read;
    enter(&mut c, read_cost, false)?;
    let a = account(&read(&mut c, ap, al)?)?;
    let b = c.data_mut().host.balance(&a).map_err(host_err)?;
    Ok(b as i64)
}

fn transfer(mut c: C<'_, '_>, tp: i32, tl: i32, amount: i64) -> Result<i32, wasmi::Error> {
    let cost = c.data().costs.transfer;
    enter(&mut c, cost, true)?;
    let to = account(&read(&mut c, tp, tl)?)?;
    let amount = u64::try_from(amount).map_err(|_| misuse("negative amount"))?;
    let outcome = c.data_mut().host.transfer(&to, amount).map_err(host_err)?;
    Ok(match outcome {
        TransferOutcome::Done => {
            let from = c.data().emitter;
            push_event(
                &mut c,
                Event {
                    emitter: from,
                    kind: "transfer".into(),
                    attributes: vec![
                        ("from".into(), from.to_string()),
                        ("to".into(), to.to_string()),
                        ("amount".into(), amount.to_string()),
                    ],
                },
            )?;
            0
        }
        TransferOutcome::InsufficientFunds => 1,
        TransferOutcome::UnknownAccount => 2,
    })
}

fn push_event(c: &mut C<'_, '_>, e: Event) -> Result<(), wasmi::Error> {
    if c.data().events.len() >= MAX_EVENTS {
        return Err(misuse("too many events"));
    }
    c.data_mut().events.push(e);
    Ok(())
}

fn emit(mut c: C<'_, '_>, p: i32, l: i32) -> Result<(), wasmi::Error> {
    enter(&mut c, 0, true)?;
    let bytes = read(&mut c, p, l)?;
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct E {
        #[serde(rename = "type")]
        kind: String,
        #[serde(default)]
        attributes: Vec<(String, String)>,
    }
    let e: E = serde_json::from_slice(&bytes).map_err(|_| misuse("malformed event"))?;
    let bad = e.kind.is_empty()
        || e.kind.len() > MAX_CONTRACT_LABEL
        || e.attributes.len() > MAX_EVENT_ATTRIBUTES
        || e.attributes.iter().any(|(k, v)| {
            k.is_empty() || k.len() > MAX_CONTRACT_LABEL || v.len() > MAX_EVENT_VALUE
        });
    if bad {
        return Err(misuse("event too large"));
    }
    let emitter = c.data().emitter;
    push_event(
        &mut c,
        Event {
            emitter,
            kind: e.kind,
            attributes: e.attributes,
        },
    )
}

fn consent_allows(mut c: C<'_, '_>, p: i32, l: i32) -> Result<i32, wasmi::Error> {
    let read_cost = c.data().costs.storage_read;
    enter(&mut c, read_cost, false)?;
    let bytes = read(&mut c, p, l)?;
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Q {
        patient: String,
        grantee: String,
        purpose: String,
        class: Option<String>,
    }
    let q: Q = serde_json::from_slice(&bytes).map_err(|_| misuse("malformed consent query"))?;
    let purpose = ConsentPurpose::parse(&q.purpose).ok_or_else(|| misuse("unknown purpose"))?;
    let (patient, grantee) = (did_key(&q.patient)?, did_key(&q.grantee)?);
    let ok = c
        .data_mut()
        .host
        .consent_allows(&patient, &grantee, purpose, q.class.as_deref())
        .map_err(host_err)?;
    Ok(i32::from(ok))
}

fn identity(mut c: C<'_, '_>, p: i32, l: i32) -> Result<i32, wasmi::Error> {
    let read_cost = c.data().costs.storage_read;
    enter(&mut c, read_cost, false)?;
    let bytes = read(&mut c, p, l)?;
    let who = did_key(std::str::from_utf8(&bytes).map_err(|_| misuse("not a did:key"))?)?;
    match c.data_mut().host.identity(&who).map_err(host_err)? {
        None => Ok(-1),
        Some(i) => {
            // Written field by field in a fixed order: the bytes (and so the fuel the
            // contract spends reading them) must not depend on how serde_json was built.
            let organization = match i.organization {
                Some(o) => format!("\"{}\"", o.did()),
                None => "null".into(),
            };
            let json = format!(
                r#"{{"role":"{}","organization":{organization},"active":{}}}"#,
                i.role.as_str(),
                i.active
            );
            Ok(set_register(&mut c, json.into_bytes()))
        }
    }
}

fn abort(mut c: C<'_, '_>, p: i32, l: i32) -> Result<(), wasmi::Error> {
    enter(&mut c, 0, false)?;
    let bytes = read(&mut c, p, l.min(MAX_CONTRACT_LABEL as i32 * 4))?;
    let mut msg = String::from_utf8_lossy(&bytes).into_owned();
    if msg.len() > MAX_CONTRACT_LABEL * 2 {
        let mut cut = MAX_CONTRACT_LABEL * 2;
        while !msg.is_char_boundary(cut) {
            cut -= 1;
        }
        msg.truncate(cut);
    }
    Err(stop(ContractFailure::Aborted(msg)))
}

/// Defines every host function in `linker`.
pub(crate) fn link(linker: &mut Linker<Ctx<'_>>) -> Result<(), wasmi::errors::LinkerError> {
    linker.func_wrap("carechain", "storage_read", storage_read)?;
    linker.func_wrap("carechain", "storage_write", storage_write)?;
    linker.func_wrap("carechain", "storage_remove", storage_remove)?;
    linker.func_wrap("carechain", "register_read", register_read)?;
    linker.func_wrap("carechain", "balance", balance)?;
    linker.func_wrap("carechain", "transfer", transfer)?;
    linker.func_wrap("carechain", "emit", emit)?;
    linker.func_wrap("carechain", "consent_allows", consent_allows)?;
    linker.func_wrap("carechain", "identity", identity)?;
    linker.func_wrap("carechain", "abort", abort)?;
    Ok(())
}
