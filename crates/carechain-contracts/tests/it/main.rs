//! The contract runtime through its public API, on modules written in WAT: deploy checks,
//! host storage, fuel metered from the cost table (deterministic, the same for the same
//! code and table), and every way a hostile contract can fail, each a clear failure with
//! the fuel burned, never a panic.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

mod shipped;

use carechain_contracts::*;
use carechain_crypto::{Hash, PublicKey, sha256};
use carechain_types::{Account, CodeError, ConsentPurpose, ContractConfig, ContractFailure};

#[derive(Default)]
struct MemHost {
    store: BTreeMap<Vec<u8>, Vec<u8>>,
    balance: u64,
}

impl Host for MemHost {
    fn storage_get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, HostFailure> {
        Ok(self.store.get(key).cloned())
    }
    fn storage_set(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), HostFailure> {
        match value {
            Some(v) => self.store.insert(key.to_vec(), v.to_vec()),
            None => self.store.remove(key),
        };
        Ok(())
    }
    fn balance(&mut self, _: &Account) -> Result<u64, HostFailure> {
        Ok(self.balance)
    }
    fn transfer(&mut self, _: &Account, amount: u64) -> Result<TransferOutcome, HostFailure> {
        if amount > self.balance {
            return Ok(TransferOutcome::InsufficientFunds);
        }
        self.balance -= amount;
        Ok(TransferOutcome::Done)
    }
    fn consent_allows(
        &mut self,
        _: &PublicKey,
        _: &PublicKey,
        _: ConsentPurpose,
        _: Option<&str>,
    ) -> Result<bool, HostFailure> {
        Ok(false)
    }
    fn identity(&mut self, _: &PublicKey) -> Result<Option<HostIdentity>, HostFailure> {
        Ok(None)
    }
}

/// A module exporting memory, a bump `alloc` and the entry points; `body` is the body of
/// `execute` (it must leave an i64: `(out_ptr << 32) | out_len`), `extra` more fields.
fn module(imports: &str, body: &str, extra: &str) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module
            {imports}
            (memory (export "memory") 2)
            (global $heap (mut i32) (i32.const 1024))
            (data (i32.const 0) "{{}}")
            (func (export "alloc") (param $len i32) (result i32)
              (local $p i32)
              (local.set $p (global.get $heap))
              (global.set $heap (i32.add (global.get $heap) (local.get $len)))
              (local.get $p))
            (func (export "instantiate") (param i32 i32) (result i64) (i64.const 2))
            (func (export "execute") (param $ptr i32) (param $len i32) (result i64) {body})
            {extra})"#
    ))
    .unwrap()
}

const OK: &str = "(i64.const 2)";

fn cfg() -> ContractConfig {
    ContractConfig::default()
}

fn run(code: &[u8], entry: Entry, fuel: u64, host: &mut MemHost) -> Result<CallOutput, CallError> {
    run_with(&Runtime::new(&cfg()), code, entry, fuel, host)
}

fn run_with(
    rt: &Runtime,
    code: &[u8],
    entry: Entry,
    fuel: u64,
    host: &mut MemHost,
) -> Result<CallOutput, CallError> {
    check_code(code, rt.config()).unwrap();
    let hash = sha256(code);
    let call = Call {
        code_hash: &hash,
        code,
        entry,
        input: br#"{"msg":{}}"#,
        fuel,
        contract: Account::Contract(Hash([1; 32])),
    };
    rt.call(&call, host)
}

fn failure(r: Result<CallOutput, CallError>) -> (ContractFailure, u64) {
    match r {
        Err(CallError::Failed { failure, fuel_used }) => (failure, fuel_used),
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn a_call_returns_its_json_and_burns_the_same_fuel_every_time() {
    let code = module("", OK, "");
    let a = run(&code, Entry::Execute, 1_000_000, &mut MemHost::default()).unwrap();
    let b = run(&code, Entry::Execute, 1_000_000, &mut MemHost::default()).unwrap();
    assert_eq!(a.data, b"{}");
    assert!(a.fuel_used > 0);
    assert_eq!(a.fuel_used, b.fuel_used, "fuel is deterministic");
    // The cost table, not the interpreter, sets the price: doubling it doubles the fuel.
    let mut dear = cfg();
    dear.costs.instruction *= 2;
    dear.costs.call *= 2;
    dear.costs.memory_access *= 2;
    let c = run_with(
        &Runtime::new(&dear),
        &code,
        Entry::Execute,
        1_000_000,
        &mut MemHost::default(),
    )
    .unwrap();
    assert_eq!(c.fuel_used, 2 * a.fuel_used);
}

#[test]
fn storage_written_by_one_call_is_read_by_the_next() {
    // execute: read "k" (absent → write "v1"; present → copy it to memory and return it).
    let imports = r#"
        (import "carechain" "storage_read" (func $read (param i32 i32) (result i32)))
        (import "carechain" "storage_write" (func $write (param i32 i32 i32 i32)))
        (import "carechain" "register_read" (func $reg (param i32)))"#;
    let body = r#"
        (local $n i32)
        (local.set $n (call $read (i32.const 16) (i32.const 1)))
        (if (result i64) (i32.lt_s (local.get $n) (i32.const 0))
          (then (call $write (i32.const 16) (i32.const 1) (i32.const 32) (i32.const 4)) (i64.const 2))
          (else (call $reg (i32.const 64))
                (i64.or (i64.shl (i64.const 64) (i64.const 32)) (i64.extend_i32_u (local.get $n)))))"#;
    let extra = r#"(data (i32.const 16) "k") (data (i32.const 32) "\"v1\"")"#;
    let code = module(imports, body, extra);
    let mut host = MemHost::default();
    let first = run(&code, Entry::Execute, 1_000_000, &mut host).unwrap();
    assert_eq!(first.data, b"{}");
    assert_eq!(host.store.get(b"k".as_slice()).unwrap(), b"\"v1\"");
    let second = run(&code, Entry::Execute, 1_000_000, &mut host).unwrap();
    assert_eq!(second.data, b"\"v1\"");
    // A query may read but not write: this one writes on an empty store.
    let (f, _) = failure(run(&code, Entry::Query, 1_000_000, &mut MemHost::default()));
    assert!(matches!(f, ContractFailure::NoEntryPoint(_)), "{f:?}");
}

#[test]
fn an_endless_loop_runs_out_of_fuel_having_burned_it_all() {
    let code = module("", "(loop $l (br $l)) (i64.const 2)", "");
    let (f, used) = failure(run(&code, Entry::Execute, 100_000, &mut MemHost::default()));
    assert_eq!(f, ContractFailure::OutOfFuel);
    assert_eq!(used, 100_000);
}

#[test]
fn unbounded_allocation_hits_the_memory_limit() {
    let body =
        "(loop $l (br_if $l (i32.ne (memory.grow (i32.const 1)) (i32.const -1)))) unreachable";
    let code = module("", body, "");
    let (f, used) = failure(run(
        &code,
        Entry::Execute,
        10_000_000,
        &mut MemHost::default(),
    ));
    assert_eq!(f, ContractFailure::MemoryLimit);
    assert!(used > 0);
}

#[test]
fn deep_recursion_stops_at_the_call_depth() {
    let extra =
        "(func $down (param i32) (result i32) (call $down (i32.add (local.get 0) (i32.const 1))))";
    let code = module("", "(drop (call $down (i32.const 0))) (i64.const 2)", extra);
    let (f, _) = failure(run(
        &code,
        Entry::Execute,
        50_000_000,
        &mut MemHost::default(),
    ));
    assert_eq!(f, ContractFailure::CallDepth);
}

#[test]
fn traps_and_aborts_are_named() {
    let code = module(
        "",
        "(drop (i32.div_u (i32.const 1) (i32.const 0))) (i64.const 2)",
        "",
    );
    let (f, _) = failure(run(
        &code,
        Entry::Execute,
        1_000_000,
        &mut MemHost::default(),
    ));
    assert_eq!(f, ContractFailure::Trap("integer_division_by_zero".into()));

    let imports = r#"(import "carechain" "abort" (func $abort (param i32 i32)))"#;
    let extra = r#"(data (i32.const 16) "member lapsed")"#;
    let code = module(
        imports,
        "(call $abort (i32.const 16) (i32.const 13)) (i64.const 2)",
        extra,
    );
    let (f, _) = failure(run(
        &code,
        Entry::Execute,
        1_000_000,
        &mut MemHost::default(),
    ));
    assert_eq!(f, ContractFailure::Aborted("member lapsed".into()));

    // Output that is not JSON, or out of bounds, is the contract's fault too.
    let code = module("", "(i64.const 0x7fff000000000010)", "");
    let (f, _) = failure(run(
        &code,
        Entry::Execute,
        1_000_000,
        &mut MemHost::default(),
    ));
    assert!(matches!(f, ContractFailure::HostMisuse(_)), "{f:?}");
}

#[test]
fn a_host_call_with_a_wild_pointer_is_refused() {
    let imports =
        r#"(import "carechain" "storage_read" (func $read (param i32 i32) (result i32)))"#;
    let code = module(
        imports,
        "(drop (call $read (i32.const 0x7ffffff0) (i32.const 16))) (i64.const 2)",
        "",
    );
    let (f, _) = failure(run(
        &code,
        Entry::Execute,
        1_000_000,
        &mut MemHost::default(),
    ));
    assert!(matches!(f, ContractFailure::HostMisuse(_)), "{f:?}");
}

#[test]
fn transfers_from_the_contract_emit_events_and_respect_its_balance() {
    let imports = r#"(import "carechain" "transfer" (func $pay (param i32 i32 i64) (result i32)))"#;
    let to = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK";
    let extra = format!(r#"(data (i32.const 16) "{to}")"#);
    let body = format!(
        "(if (i32.ne (call $pay (i32.const 16) (i32.const {}) (i64.const 30)) (i32.const 0)) (then unreachable)) (i64.const 2)",
        to.len()
    );
    let code = module(imports, &body, &extra);
    let mut rich = MemHost {
        balance: 50,
        ..MemHost::default()
    };
    let out = run(&code, Entry::Execute, 1_000_000, &mut rich).unwrap();
    assert_eq!(rich.balance, 20);
    assert_eq!(out.events.len(), 1);
    assert_eq!(out.events[0].kind, "transfer");
    let (f, _) = failure(run(&code, Entry::Execute, 1_000_000, &mut rich));
    assert_eq!(f, ContractFailure::Trap("unreachable".into()));
}

#[test]
fn deploy_refuses_what_would_not_be_deterministic_or_cannot_run() {
    let c = cfg();
    let check = |code: &[u8]| check_code(code, &c).unwrap_err();
    assert!(matches!(check(b"not wasm at all"), CodeError::Invalid(_)));
    let floats = module(
        "",
        "(drop (f64.add (f64.const 1) (f64.const 2))) (i64.const 2)",
        "",
    );
    assert_eq!(check(&floats), CodeError::Floats);
    let simd = module("", "(drop (i32x4.splat (i32.const 1))) (i64.const 2)", "");
    assert_eq!(check(&simd), CodeError::Simd);
    let threads = wat::parse_str(
        r#"(module (memory (export "memory") 1 1 shared)
             (func (export "alloc") (param i32) (result i32) (i32.const 0))
             (func (export "instantiate") (param i32 i32) (result i64) (i64.const 0))
             (func (export "execute") (param i32 i32) (result i64)
               (drop (i32.atomic.load (i32.const 0))) (i64.const 0)))"#,
    )
    .unwrap();
    assert_eq!(check(&threads), CodeError::Threads);
    let unknown = module(r#"(import "env" "clock" (func (result i64)))"#, OK, "");
    assert_eq!(
        check(&unknown),
        CodeError::UnknownImport("env.clock".into())
    );
    let wrong_type = module(r#"(import "carechain" "abort" (func (param i64)))"#, OK, "");
    assert_eq!(
        check(&wrong_type),
        CodeError::UnknownImport("carechain.abort".into())
    );
    let no_entry = wat::parse_str(r#"(module (memory (export "memory") 1))"#).unwrap();
    assert_eq!(check(&no_entry), CodeError::MissingExport("alloc".into()));
    let huge = wat::parse_str(
        r#"(module (memory (export "memory") 1000)
             (func (export "alloc") (param i32) (result i32) (i32.const 0))
             (func (export "instantiate") (param i32 i32) (result i64) (i64.const 0))
             (func (export "execute") (param i32 i32) (result i64) (i64.const 0)))"#,
    )
    .unwrap();
    assert_eq!(check(&huge), CodeError::MemoryTooLarge);
    let start = module("", OK, "(func $s) (start $s)");
    assert!(matches!(check(&start), CodeError::Unsupported(_)));
    let mut small = cfg();
    small.max_code_bytes = 10;
    assert_eq!(
        check_code(&module("", OK, ""), &small).unwrap_err(),
        CodeError::TooLarge
    );
}

#[test]
fn metering_charges_every_loop_iteration() {
    // A counted loop of n iterations burns fuel growing linearly with n.
    let looped = |n: i32| {
        module(
            "",
            &format!(
                "(local $i i32) (loop $l (local.set $i (i32.add (local.get $i) (i32.const 1)))
                   (br_if $l (i32.lt_u (local.get $i) (i32.const {n})))) (i64.const 2)"
            ),
            "",
        )
    };
    let fuel = |n| {
        run(
            &looped(n),
            Entry::Execute,
            10_000_000,
            &mut MemHost::default(),
        )
        .unwrap()
        .fuel_used
    };
    let (f10, f20, f30) = (fuel(10), fuel(20), fuel(30));
    assert!(f20 > f10);
    assert_eq!(f30 - f20, f20 - f10, "each iteration costs the same");
}
