#!/usr/bin/env bash
# Builds the shipped contracts (contracts/, its own workspace) to wasm32-unknown-unknown and
# copies the modules to contracts/wasm/. The build is reproducible: paths are remapped, the
# toolchain is pinned by rust-toolchain.toml and the dependencies by contracts/Cargo.lock,
# so the same sources give the same bytes on any machine (a test of the main workspace,
# crates/carechain-contracts/tests/it/shipped.rs, rebuilds them and compares).
# Usage: scripts/build-contracts.sh [OUT_DIR]   (default contracts/wasm)
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
out="${1:-$root/contracts/wasm}"
target="${CARECHAIN_CONTRACTS_TARGET:-$root/target/contracts}"
rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || true
cargo_home="${CARGO_HOME:-$HOME/.cargo}"
# A contract instance lives for one call: a 64 KiB stack (not the 1 MiB default) keeps its
# initial memory, allocated and zeroed on every call, to a few pages.
export RUSTFLAGS="-D warnings -C link-arg=-zstack-size=65536 --remap-path-prefix=$root=/carechain --remap-path-prefix=$cargo_home=/cargo"
export CARGO_INCREMENTAL=0
cargo build --quiet --release --locked --manifest-path contracts/Cargo.toml \
  --target wasm32-unknown-unknown --target-dir "$target"
mkdir -p "$out"
for crate in $(sed -n 's/^members = \[\(.*\)\]/\1/p' contracts/Cargo.toml | tr -d '",'); do
  [ "$crate" = sdk ] && continue
  cp "$target/wasm32-unknown-unknown/release/carechain_${crate//-/_}.wasm" "$out/$crate.wasm"
done
(cd "$out" && sha256sum -- *.wasm > SHA256SUMS)
