#!/usr/bin/env bash
# guestgate's test command: installs what a fresh machine lacks, then runs every check CI runs.
# Usage: bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "toolchain components"
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  rustup component add rustfmt clippy
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --quiet -- -D warnings

step "cargo test (unit, integration, property tests; loopback only)"
cargo test --all-targets --quiet

# Checks with real outside components (Prometheus, Chromium, Autobahn, ...): one script each.
for extra in scripts/ci/*.sh; do
  [ -e "$extra" ] || continue
  step "$extra"
  bash "$extra"
done

step "benches compile (run them with the commands in benches/README.md)"
cargo bench --no-run --quiet

echo
echo "all checks passed"
