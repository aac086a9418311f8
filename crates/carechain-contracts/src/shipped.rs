//! The contracts this repository ships (`contracts/`), as built by
//! `scripts/build-contracts.sh` and committed under `contracts/wasm/`; a test rebuilds them
//! and checks the bytes are the same.

/// A shipped contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shipped {
    /// Its crate's name under `contracts/`.
    pub name: &'static str,
    /// The built module.
    pub code: &'static [u8],
}

/// Escrow: tokens held until an arbiter releases them, or refunded after expiry.
pub const ESCROW: Shipped = Shipped {
    name: "escrow",
    code: include_bytes!("../../../contracts/wasm/escrow.wasm"),
};

/// Claims: an insurer's adjudication rules.
pub const CLAIMS: Shipped = Shipped {
    name: "claims",
    code: include_bytes!("../../../contracts/wasm/claims.wasm"),
};

/// A mutual insurance pool.
pub const POOL: Shipped = Shipped {
    name: "pool",
    code: include_bytes!("../../../contracts/wasm/pool.wasm"),
};

/// Counter: one stored number, incremented per call (benchmarks, an SDK example).
pub const COUNTER: Shipped = Shipped {
    name: "counter",
    code: include_bytes!("../../../contracts/wasm/counter.wasm"),
};

/// Every shipped contract.
pub const ALL: [Shipped; 4] = [ESCROW, CLAIMS, POOL, COUNTER];
