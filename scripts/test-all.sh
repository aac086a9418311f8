#!/usr/bin/env bash
# Runs every check and test of the workspace: formatting, clippy with warnings as errors,
# the whole test suite with cargo-nextest, and the fuzz targets' build. The black-box tests
# drive real third-party clients from e2e/ (npm, pinned by e2e/package-lock.json) and a real
# S3-compatible server (moto, pinned by e2e/moto-version): installed here when missing, so
# this one command works on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -d e2e/node_modules ] || [ e2e/package-lock.json -nt e2e/node_modules ]; then
  npm ci --prefix e2e --no-audit --no-fund
fi
# The S3 blob store is tested against a real S3-compatible server (moto, from PyPI).
if ! python3 -c "import moto.server, flask" >/dev/null 2>&1; then
  python3 -m pip install --quiet "moto[server]==$(cat e2e/moto-version)"
fi
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo nextest run --workspace --locked --no-fail-fast
cargo check --manifest-path fuzz/Cargo.toml --locked --target-dir target/fuzz
