//! Writing carechain contracts in Rust.
//!
//! A contract is a `cdylib` for `wasm32-unknown-unknown` that calls [`entry_points!`] with
//! its `instantiate`, `execute` and (optionally) `query` functions. Each takes the block's
//! [`Env`], the caller's [`Info`] (absent for queries) and its message, deserialized from
//! JSON, and returns a value serialized to JSON or an error message (which fails the
//! transaction and drops its changes). The host functions are wrapped below; every one is
//! charged fuel by the runtime.
#![no_std]

extern crate alloc;

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

#[doc(hidden)]
pub use serde_json_wasm;

/// Where and when the call runs.
#[derive(Clone, Debug, Deserialize)]
pub struct Env {
    /// The chain.
    pub chain_id: String,
    /// The block's height.
    pub height: u64,
    /// The block's time (ms since the Unix epoch).
    pub time_ms: u64,
    /// This contract's account (`contract:<hex>`).
    pub contract: String,
}

/// Who calls, with how many tokens sent along (already in the contract's balance).
#[derive(Clone, Debug, Deserialize)]
pub struct Info {
    /// The signer (`did:key:...`).
    pub sender: String,
    /// Tokens sent with the call, in minor units.
    pub funds: u64,
}

#[doc(hidden)]
#[derive(Deserialize)]
pub struct Input<M> {
    pub env: Env,
    pub info: Option<Info>,
    pub msg: M,
}

mod sys {
    #[link(wasm_import_module = "carechain")]
    unsafe extern "C" {
        pub fn storage_read(kp: *const u8, kl: i32) -> i32;
        pub fn storage_write(kp: *const u8, kl: i32, vp: *const u8, vl: i32);
        pub fn storage_remove(kp: *const u8, kl: i32);
        pub fn register_read(p: *mut u8);
        pub fn balance(ap: *const u8, al: i32) -> i64;
        pub fn transfer(tp: *const u8, tl: i32, amount: i64) -> i32;
        pub fn emit(p: *const u8, l: i32);
        pub fn consent_allows(p: *const u8, l: i32) -> i32;
        pub fn identity(p: *const u8, l: i32) -> i32;
        pub fn abort(p: *const u8, l: i32);
    }
}

fn register(len: i32) -> Vec<u8> {
    let mut buf = alloc::vec![0u8; len as usize];
    // SAFETY: the host writes exactly `len` bytes (the register's length it returned).
    unsafe { sys::register_read(buf.as_mut_ptr()) };
    buf
}

/// The value under `key` in this contract's storage.
pub fn get(key: &[u8]) -> Option<Vec<u8>> {
    // SAFETY: pointer and length of a live slice.
    let n = unsafe { sys::storage_read(key.as_ptr(), key.len() as i32) };
    let v = (n >= 0).then(|| register(n));
    witness::storage_read(key, v.as_deref());
    v
}

/// Sets the value under `key`.
pub fn set(key: &[u8], value: &[u8]) {
    witness::storage_written(key);
    // SAFETY: pointers and lengths of live slices.
    unsafe { sys::storage_write(key.as_ptr(), key.len() as i32, value.as_ptr(), value.len() as i32) }
}

/// Removes the value under `key`.
pub fn remove(key: &[u8]) {
    witness::storage_written(key);
    // SAFETY: pointer and length of a live slice.
    unsafe { sys::storage_remove(key.as_ptr(), key.len() as i32) }
}

/// What a call read from the ledger before changing it: enough to run the call again
/// offline and get the same result (a contract returns it with a decision that must be
/// verifiable, as the claims contract does). Storage values are recorded on their first
/// read unless the call wrote the key first; identities and balances on their first read.
pub mod witness {
    use alloc::collections::BTreeSet;
    use alloc::string::String;
    use alloc::vec::Vec;
    use core::cell::UnsafeCell;
    use serde::Serialize;

    /// The reads of one call.
    #[derive(Default, Serialize)]
    pub struct Witness {
        /// `[key (hex), value (hex) or null]`, in the order first read.
        pub storage: Vec<(String, Option<String>)>,
        /// `[did, the identity's JSON or null]`.
        pub identities: Vec<(String, Option<String>)>,
        /// `[account, balance]`.
        pub balances: Vec<(String, u64)>,
        /// `[to, amount, outcome]` of every transfer, in order (0 done, 1 insufficient
        /// funds, 2 unknown account).
        pub transfers: Vec<(String, u64, i32)>,
    }

    struct State {
        w: Witness,
        seen: BTreeSet<Vec<u8>>,
    }

    struct Cell(UnsafeCell<Option<State>>);
    // SAFETY: wasm32-unknown-unknown contracts are single-threaded.
    unsafe impl Sync for Cell {}
    static STATE: Cell = Cell(UnsafeCell::new(None));

    fn with<R>(f: impl FnOnce(&mut State) -> R) -> R {
        // SAFETY: single-threaded, and no reference escapes `f`.
        let s = unsafe { &mut *STATE.0.get() };
        f(s.get_or_insert_with(|| State {
            w: Witness::default(),
            seen: BTreeSet::new(),
        }))
    }

    fn hex(b: &[u8]) -> String {
        const D: &[u8; 16] = b"0123456789abcdef";
        b.iter()
            .flat_map(|x| [D[(x >> 4) as usize] as char, D[(x & 15) as usize] as char])
            .collect()
    }

    pub(crate) fn storage_read(key: &[u8], value: Option<&[u8]>) {
        with(|s| {
            if s.seen.insert(key.to_vec()) {
                s.w.storage.push((hex(key), value.map(hex)));
            }
        })
    }

    pub(crate) fn storage_written(key: &[u8]) {
        with(|s| {
            s.seen.insert(key.to_vec());
        })
    }

    pub(crate) fn identity_read(did: &str, json: Option<&[u8]>) {
        with(|s| {
            if !s.w.identities.iter().any(|(d, _)| d == did) {
                let j = json.map(|b| String::from_utf8_lossy(b).into_owned());
                s.w.identities.push((did.into(), j));
            }
        })
    }

    pub(crate) fn balance_read(account: &str, amount: u64) {
        with(|s| {
            if !s.w.balances.iter().any(|(a, _)| a == account) {
                s.w.balances.push((account.into(), amount));
            }
        })
    }

    pub(crate) fn transfer_made(to: &str, amount: u64, code: i32) {
        with(|s| s.w.transfers.push((to.into(), amount, code)))
    }

    /// The reads so far (and starts recording afresh).
    pub fn take() -> Witness {
        with(|s| {
            s.seen.clear();
            core::mem::take(&mut s.w)
        })
    }
}

/// Reads a JSON value stored under `key`.
pub fn load<T: for<'de> Deserialize<'de>>(key: &[u8]) -> Option<T> {
    get(key).and_then(|b| serde_json_wasm::from_slice(&b).ok())
}

/// Stores `value` as JSON under `key`.
pub fn save<T: Serialize>(key: &[u8], value: &T) {
    match serde_json_wasm::to_vec(value) {
        Ok(b) => set(key, &b),
        Err(_) => abort("cannot serialize state"),
    }
}

/// The token balance of `account` (a did:key or `contract:<hex>`).
pub fn balance(account: &str) -> u64 {
    // SAFETY: pointer and length of a live string.
    let n = unsafe { sys::balance(account.as_ptr(), account.len() as i32) as u64 };
    witness::balance_read(account, n);
    n
}

/// Pays `amount` of this contract's tokens to `to`.
pub fn transfer(to: &str, amount: u64) -> Result<(), String> {
    // SAFETY: pointer and length of a live string.
    let code = unsafe { sys::transfer(to.as_ptr(), to.len() as i32, amount as i64) };
    witness::transfer_made(to, amount, code);
    match code {
        0 => Ok(()),
        1 => Err("insufficient funds".to_string()),
        _ => Err("unknown account".to_string()),
    }
}

#[derive(Serialize)]
struct EventOut<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    attributes: &'a [(&'a str, &'a str)],
}

/// Emits an event (part of the transaction's receipt).
pub fn emit(kind: &str, attributes: &[(&str, &str)]) {
    let e = EventOut { kind, attributes };
    if let Ok(b) = serde_json_wasm::to_vec(&e) {
        // SAFETY: pointer and length of a live vector.
        unsafe { sys::emit(b.as_ptr(), b.len() as i32) }
    }
}

#[derive(Serialize)]
struct ConsentQ<'a> {
    patient: &'a str,
    grantee: &'a str,
    purpose: &'a str,
    class: Option<&'a str>,
}

/// Whether `patient`'s ledger consents let `grantee` see `class` records for `purpose`
/// (an HL7 PurposeOfUse code: `TREAT`, `HPAYMT`, `HRESCH`, ...).
pub fn consent_allows(patient: &str, grantee: &str, purpose: &str, class: Option<&str>) -> bool {
    let q = ConsentQ { patient, grantee, purpose, class };
    match serde_json_wasm::to_vec(&q) {
        // SAFETY: pointer and length of a live vector.
        Ok(b) => unsafe { sys::consent_allows(b.as_ptr(), b.len() as i32) == 1 },
        Err(_) => false,
    }
}

/// A ledger identity as a contract sees it.
#[derive(Clone, Debug, Deserialize)]
pub struct Identity {
    /// Its role (`patient`, `practitioner`, `organization`, ...).
    pub role: String,
    /// The organization it belongs to, if any (a did:key).
    pub organization: Option<String>,
    /// Whether it may still sign.
    pub active: bool,
}

/// The identity registered under `did` (a did:key), if any.
pub fn identity(did: &str) -> Option<Identity> {
    // SAFETY: pointer and length of a live string.
    let n = unsafe { sys::identity(did.as_ptr(), did.len() as i32) };
    if n < 0 {
        witness::identity_read(did, None);
        return None;
    }
    let raw = register(n);
    witness::identity_read(did, Some(&raw));
    serde_json_wasm::from_slice(&raw).ok()
}

/// Stops the call with an error message: the transaction fails, its changes are dropped.
pub fn abort(msg: &str) -> ! {
    // SAFETY: pointer and length of a live string; the host never returns from abort.
    unsafe { sys::abort(msg.as_ptr(), msg.len() as i32) };
    core::arch::wasm32::unreachable()
}

#[doc(hidden)]
pub mod rt {
    use super::*;

    /// A bump allocator: an instance lives for one call, so nothing needs freeing.
    pub struct Bump;

    static mut NEXT: usize = 0;

    unsafe extern "C" {
        static __heap_base: u8;
    }

    // SAFETY: single-threaded wasm; every block returned is fresh and aligned.
    unsafe impl core::alloc::GlobalAlloc for Bump {
        unsafe fn alloc(&self, l: core::alloc::Layout) -> *mut u8 {
            // SAFETY: single-threaded; `__heap_base` is the linker's end of static data.
            unsafe {
                if NEXT == 0 {
                    NEXT = core::ptr::addr_of!(__heap_base) as usize;
                }
                let p = (NEXT + l.align() - 1) & !(l.align() - 1);
                let end = p + l.size();
                let have = core::arch::wasm32::memory_size(0) * 65_536;
                if end > have
                    && core::arch::wasm32::memory_grow(0, (end - have).div_ceil(65_536)) == usize::MAX
                {
                    return core::ptr::null_mut();
                }
                NEXT = end;
                p as *mut u8
            }
        }

        unsafe fn dealloc(&self, _: *mut u8, _: core::alloc::Layout) {}
    }

    pub fn alloc(len: i32) -> i32 {
        let v: Vec<u8> = alloc::vec![0u8; len.max(0) as usize];
        let p = v.as_ptr() as i32;
        core::mem::forget(v);
        p
    }

    pub fn input(ptr: i32, len: i32) -> &'static [u8] {
        // SAFETY: the host wrote `len` bytes at `ptr`, a block `alloc` returned.
        unsafe { core::slice::from_raw_parts(ptr as *const u8, len as usize) }
    }

    pub fn output<R: Serialize>(r: Result<R, String>) -> i64 {
        let bytes = match r {
            Ok(v) => serde_json_wasm::to_vec(&v).unwrap_or_else(|_| abort("cannot serialize result")),
            Err(e) => abort(&e),
        };
        let (p, l) = (bytes.as_ptr() as u32 as i64, bytes.len() as i64);
        core::mem::forget(bytes);
        (p << 32) | l
    }

    pub fn call<M, R>(ptr: i32, len: i32, f: impl FnOnce(Env, Option<Info>, M) -> Result<R, String>) -> i64
    where
        M: for<'de> Deserialize<'de>,
        R: Serialize,
    {
        let input: Input<M> = match serde_json_wasm::from_slice(input(ptr, len)) {
            Ok(i) => i,
            Err(_) => abort("malformed message"),
        };
        output(f(input.env, input.info, input.msg))
    }

    pub fn panic(_: &core::panic::PanicInfo) -> ! {
        abort("panic")
    }
}

/// Defines the contract's exports: the allocator, the panic handler and the entry points.
/// `instantiate` and `execute` take `(Env, Info, Msg)`, `query` takes `(Env, Msg)`.
#[macro_export]
macro_rules! entry_points {
    (instantiate = $i:ident, execute = $e:ident $(, query = $q:ident)? $(,)?) => {
        #[doc(hidden)]
        mod __carechain_exports {
            #[global_allocator]
            static ALLOC: $crate::rt::Bump = $crate::rt::Bump;

            #[panic_handler]
            fn panic(p: &core::panic::PanicInfo) -> ! {
                $crate::rt::panic(p)
            }

            #[unsafe(no_mangle)]
            pub extern "C" fn alloc(len: i32) -> i32 {
                $crate::rt::alloc(len)
            }

            #[unsafe(no_mangle)]
            pub extern "C" fn instantiate(ptr: i32, len: i32) -> i64 {
                $crate::rt::call(ptr, len, |env, info, msg| match info {
                    Some(info) => super::$i(env, info, msg),
                    None => Err("no caller".into()),
                })
            }

            #[unsafe(no_mangle)]
            pub extern "C" fn execute(ptr: i32, len: i32) -> i64 {
                $crate::rt::call(ptr, len, |env, info, msg| match info {
                    Some(info) => super::$e(env, info, msg),
                    None => Err("no caller".into()),
                })
            }

            $(
                #[unsafe(no_mangle)]
                pub extern "C" fn query(ptr: i32, len: i32) -> i64 {
                    $crate::rt::call(ptr, len, |env, _info: Option<$crate::Info>, msg| {
                        super::$q(env, msg)
                    })
                }
            )?
        }
    };
}
