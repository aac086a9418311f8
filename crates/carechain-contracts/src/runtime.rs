//! Running one entry point of a contract: compile (cached by code hash), instantiate with
//! the host functions and the limits, write the input, set the fuel, call, read the result.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use carechain_crypto::{Hash, sha256};
use carechain_types::{Account, ContractConfig, ContractFailure, Event, encode};
use wasmi::{Config, Engine, Extern, Linker, Module, Store, TrapCode, Val};

use crate::error::{CallError, HostFailure};
use crate::host::{Ctx, Host, Limits, Stop, link};
use crate::meter::{FUEL_GLOBAL, instrument};

/// The compiled modules kept per runtime (by code hash).
const CACHE: usize = 64;

/// Which entry point to call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// `instantiate`: once, when the instance is created.
    Instantiate,
    /// `execute`: a transaction.
    Execute,
    /// `query`: a read, outside any transaction (it may not write).
    Query,
}

impl Entry {
    /// The export's name.
    pub fn export(self) -> &'static str {
        match self {
            Entry::Instantiate => "instantiate",
            Entry::Execute => "execute",
            Entry::Query => "query",
        }
    }
}

/// A call that returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallOutput {
    /// The result (JSON).
    pub data: Vec<u8>,
    /// The fuel it burned.
    pub fuel_used: u64,
    /// What it emitted, in order.
    pub events: Vec<Event>,
}

/// One call to make.
pub struct Call<'a> {
    /// The code's hash (the cache key).
    pub code_hash: &'a Hash,
    /// The code as deployed.
    pub code: &'a [u8],
    /// The entry point.
    pub entry: Entry,
    /// The input: `{"env": ..., "info": ..., "msg": ...}` (JSON).
    pub input: &'a [u8],
    /// The most fuel it may burn.
    pub fuel: u64,
    /// The contract's own account (events name it).
    pub contract: Account,
}

/// The contract runtime of one chain's configuration: an interpreter and compiled code.
pub struct Runtime {
    cfg: ContractConfig,
    engine: Engine,
    modules: Mutex<BTreeMap<Hash, Module>>,
}

static RUNTIMES: Mutex<Vec<(Hash, Arc<Runtime>)>> = Mutex::new(Vec::new());

fn failed(failure: ContractFailure, fuel_used: u64) -> CallError {
    CallError::Failed { failure, fuel_used }
}

fn trap_name(code: TrapCode) -> &'static str {
    match code {
        TrapCode::UnreachableCodeReached => "unreachable",
        TrapCode::MemoryOutOfBounds => "memory_out_of_bounds",
        TrapCode::TableOutOfBounds => "table_out_of_bounds",
        TrapCode::IndirectCallToNull => "indirect_call_to_null",
        TrapCode::IntegerDivisionByZero => "integer_division_by_zero",
        TrapCode::IntegerOverflow => "integer_overflow",
        TrapCode::BadConversionToInteger => "bad_conversion_to_integer",
        TrapCode::StackOverflow => "stack_overflow",
        TrapCode::BadSignature => "bad_signature",
        _ => "trap",
    }
}

impl Runtime {
    /// A runtime for `cfg`.
    pub fn new(cfg: &ContractConfig) -> Runtime {
        let mut config = Config::default();
        config
            .floats(false)
            .wasm_multi_memory(false)
            .wasm_tail_call(false)
            .wasm_extended_const(false)
            .wasm_wide_arithmetic(false)
            .wasm_custom_page_sizes(false)
            .set_max_recursion_depth(cfg.max_call_depth as usize);
        Runtime {
            cfg: cfg.clone(),
            engine: Engine::new(&config),
            modules: Mutex::new(BTreeMap::new()),
        }
    }

    /// The process's runtime for `cfg` (one per configuration, so compiled code is shared
    /// by every block of a chain).
    pub fn shared(cfg: &ContractConfig) -> Arc<Runtime> {
        let id = sha256(&encode(cfg));
        let mut all = RUNTIMES.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, r)) = all.iter().find(|(h, _)| *h == id) {
            return r.clone();
        }
        let r = Arc::new(Runtime::new(cfg));
        all.push((id, r.clone()));
        r
    }

    /// The configuration it runs under.
    pub fn config(&self) -> &ContractConfig {
        &self.cfg
    }

    fn module(&self, hash: &Hash, code: &[u8]) -> Result<Module, ContractFailure> {
        let mut modules = self.modules.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = modules.get(hash) {
            return Ok(m.clone());
        }
        let refused =
            |e: String| ContractFailure::HostMisuse(format!("code does not compile: {e}"));
        let metered = instrument(code, &self.cfg.costs).map_err(|e| refused(e.to_string()))?;
        let module = Module::new(&self.engine, &metered[..]).map_err(|e| refused(e.to_string()))?;
        if modules.len() >= CACHE {
            modules.pop_first();
        }
        modules.insert(*hash, module.clone());
        Ok(module)
    }

    /// Runs `call` against `host`. A contract failure is [`CallError::Failed`] with the fuel
    /// burned; a host failure is [`CallError::Host`].
    pub fn call(&self, call: &Call<'_>, host: &mut dyn Host) -> Result<CallOutput, CallError> {
        if call.input.len() > self.cfg.max_message_bytes as usize {
            return Err(failed(ContractFailure::BadMessage, 0));
        }
        let module = self
            .module(call.code_hash, call.code)
            .map_err(|f| failed(f, 0))?;
        let ctx = Ctx {
            host,
            costs: self.cfg.costs.clone(),
            read_only: call.entry == Entry::Query,
            emitter: call.contract,
            register: Vec::new(),
            events: Vec::new(),
            max_value: self.cfg.max_storage_value as usize,
            limits: Limits {
                memory_bytes: self.cfg.memory_pages as usize * 65_536,
                memory_refused: false,
            },
        };
        let mut store = Store::new(&self.engine, ctx);
        store.limiter(|c| &mut c.limits);
        let mut linker = <Linker<Ctx<'_>>>::new(&self.engine);
        link(&mut linker).map_err(|e| CallError::Host(HostFailure(e.to_string())))?;
        let instance = match linker.instantiate_and_start(&mut store, &module) {
            Ok(i) => i,
            Err(e) => {
                let failure = if store.data().limits.memory_refused {
                    ContractFailure::MemoryLimit
                } else {
                    ContractFailure::HostMisuse(format!("cannot instantiate: {e}"))
                };
                return Err(failed(failure, 0));
            }
        };
        let Some(Extern::Global(fuel)) = instance.get_export(&store, FUEL_GLOBAL) else {
            return Err(failed(
                ContractFailure::HostMisuse("uninstrumented".into()),
                0,
            ));
        };
        let limit = i64::try_from(call.fuel).unwrap_or(i64::MAX);
        fuel.set(&mut store, Val::I64(limit))
            .map_err(|e| CallError::Host(HostFailure(e.to_string())))?;
        let used = |store: &Store<Ctx<'_>>| {
            let left = fuel.get(store).i64().unwrap_or(0).max(0);
            (limit - left) as u64
        };
        let result = self.run(&mut store, &instance, call);
        let fuel_used = used(&store);
        match result {
            Ok(data) => {
                let events = std::mem::take(&mut store.data_mut().events);
                Ok(CallOutput {
                    data,
                    fuel_used,
                    events,
                })
            }
            Err(RunError::Failure(f)) => Err(failed(f, fuel_used)),
            Err(RunError::Wasm(e)) => {
                let left = fuel.get(&store).i64().unwrap_or(0);
                let failure = match e.as_trap_code() {
                    _ if left < 0 => ContractFailure::OutOfFuel,
                    _ if store.data().limits.memory_refused => ContractFailure::MemoryLimit,
                    Some(TrapCode::StackOverflow) => ContractFailure::CallDepth,
                    Some(TrapCode::OutOfFuel) => ContractFailure::OutOfFuel,
                    Some(t) => ContractFailure::Trap(trap_name(t).into()),
                    None => match e.downcast_ref::<Stop>() {
                        Some(Stop::Failure(f)) => f.clone(),
                        Some(Stop::Host(h)) => {
                            return Err(CallError::Host(HostFailure(h.0.clone())));
                        }
                        None => ContractFailure::Trap("trap".into()),
                    },
                };
                Err(failed(failure, fuel_used))
            }
        }
    }

    fn run(
        &self,
        store: &mut Store<Ctx<'_>>,
        instance: &wasmi::Instance,
        call: &Call<'_>,
    ) -> Result<Vec<u8>, RunError> {
        let alloc = instance
            .get_typed_func::<i32, i32>(&*store, "alloc")
            .map_err(|_| RunError::Failure(ContractFailure::NoEntryPoint("alloc".into())))?;
        let entry = instance
            .get_typed_func::<(i32, i32), i64>(&*store, call.entry.export())
            .map_err(|_| {
                RunError::Failure(ContractFailure::NoEntryPoint(call.entry.export().into()))
            })?;
        let memory = instance
            .get_memory(&*store, "memory")
            .ok_or_else(|| RunError::Failure(ContractFailure::NoEntryPoint("memory".into())))?;
        let len = i32::try_from(call.input.len())
            .map_err(|_| RunError::Failure(ContractFailure::BadMessage))?;
        let ptr = alloc.call(&mut *store, len).map_err(RunError::Wasm)?;
        let bad = |m: &str| RunError::Failure(ContractFailure::HostMisuse(m.into()));
        memory
            .write(&mut *store, ptr as u32 as usize, call.input)
            .map_err(|_| bad("alloc returned memory out of bounds"))?;
        let packed = entry
            .call(&mut *store, (ptr, len))
            .map_err(RunError::Wasm)? as u64;
        let (out_ptr, out_len) = ((packed >> 32) as usize, (packed & 0xffff_ffff) as usize);
        if out_len > self.cfg.max_message_bytes as usize {
            return Err(bad("result too large"));
        }
        let mut out = vec![0u8; out_len];
        memory
            .read(&*store, out_ptr, &mut out)
            .map_err(|_| bad("result out of bounds"))?;
        if serde_json::from_slice::<serde_json::Value>(&out).is_err() {
            return Err(bad("result is not JSON"));
        }
        Ok(out)
    }
}

enum RunError {
    Failure(ContractFailure),
    Wasm(wasmi::Error),
}
