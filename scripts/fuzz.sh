#!/usr/bin/env bash
# Runs every cargo-fuzz target (nbd_request, nbd_session, caps_token, replay_trace,
# image_open) for a bounded time (default 60 s for the capability token target, 20 s for
# the others): a crash fails the run. Installs cargo-fuzz when missing;
# uses the nightly toolchain when there is one, else stable with RUSTC_BOOTSTRAP (cargo-fuzz
# needs nightly-only sanitizer flags).
# Usage: scripts/fuzz.sh [SECONDS_FOR_CAPS [SECONDS_FOR_OTHERS]]
set -euo pipefail
cd "$(dirname "$0")/.."
caps_secs="${1:-60}"
other_secs="${2:-20}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --quiet
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  fuzz=(cargo +nightly fuzz)
else
  export RUSTC_BOOTSTRAP=1
  fuzz=(cargo fuzz)
fi
# The fuzz build uses its own directory: sanitizer flags would invalidate the main build.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}-fuzz"
cd fuzz
for target in $("${fuzz[@]}" list); do
  secs="$other_secs"
  [ "$target" = caps_token ] && secs="$caps_secs"
  echo "== fuzz $target for ${secs}s"
  "${fuzz[@]}" run "$target" -- -max_total_time="$secs" 2>&1 | tail -15
  # `cargo fuzz run` exits non-zero on a crash; pipefail carries it here.
done
