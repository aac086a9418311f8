#!/usr/bin/env bash
# Runs every check and test of the workspace: formatting, clippy with warnings as errors,
# the whole test suite with cargo-nextest, and the fuzz targets' build. The black-box tests
# drive real third-party clients from e2e/ (npm, pinned by e2e/package-lock.json), a real
# S3-compatible server (moto, pinned by e2e/moto-version), GS1's EPCIS event hasher (PyPI)
# and headless Chromium (Debian's
# `chromium`, for the web UI): installed here when missing, so this one command works on a
# fresh machine. Screenshots of the web UI tests land in target/e2e-artifacts/portal/.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -d e2e/node_modules ] || [ e2e/package-lock.json -nt e2e/node_modules ]; then
  npm ci --prefix e2e --no-audit --no-fund
fi
# The web UI is tested in a real browser: Debian's Chromium, driven by npm playwright-core.
if [ ! -x "${CHROMIUM:-/usr/bin/chromium}" ]; then
  as_root=""
  [ "$(id -u)" = 0 ] || as_root="sudo"
  $as_root apt-get update -qq && DEBIAN_FRONTEND=noninteractive $as_root apt-get install -y -qq chromium
fi
# The S3 blob store is tested against a real S3-compatible server (moto, from PyPI).
if ! python3 -c "import moto.server, flask" >/dev/null 2>&1; then
  python3 -m pip install --quiet "moto[server]==$(cat e2e/moto-version)"
fi
# EPCIS event hashes are checked against GS1's reference implementation (from PyPI).
if ! python3 -c "import epcis_event_hash_generator" >/dev/null 2>&1; then
  python3 -m pip install --quiet "epcis-event-hash-generator==1.9.3"
fi
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo nextest run --workspace --locked --no-fail-fast
cargo check --manifest-path fuzz/Cargo.toml --locked --target-dir target/fuzz
