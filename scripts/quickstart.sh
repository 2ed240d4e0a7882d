#!/usr/bin/env bash
# The quickstart: installs what is missing, builds hypernix, starts the daemon and boots
# the example units (examples/quickstart.nix), then prints their status and the API address.
# Extra arguments go to `hypernix up` (e.g. --state-dir DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
exec cargo run --release --locked -q -p hypernix -- up examples/quickstart.nix "$@"
