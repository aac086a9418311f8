#!/usr/bin/env bash
# Runs every check and test of the workspace: formatting, clippy with warnings as errors,
# the whole test suite with cargo-nextest, and the fuzz targets' build.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo nextest run --workspace --locked --no-fail-fast
cargo check --manifest-path fuzz/Cargo.toml --locked --target-dir target/fuzz
