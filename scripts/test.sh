#!/usr/bin/env bash
# The project's test command: installs what is missing, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
# The API's third-party client (npm graphql-ws), for the API tests; versions from the lock.
(cd crates/hypernix-api/tests/node && [ -d node_modules ] || npm ci --silent --no-audit --no-fund)
# The web console's browser driver (npm playwright-core; it drives Debian's chromium and
# downloads no browser), for tests/ui_console.rs; versions from the lock.
(cd crates/hypernix/tests/ui && [ -d node_modules ] || npm ci --silent --no-audit --no-fund)
# The mesh's deterministic simulation runs 1,000 random fault schedules (docs/mesh.md).
export HYPERNIX_SIM_SCHEDULES="${HYPERNIX_SIM_SCHEDULES:-1000}"
cargo test --workspace --locked "$@"
