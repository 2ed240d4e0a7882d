#!/usr/bin/env bash
# Boot overhead of hypernix against the same QEMU command launched by hand, and 20 units
# started at once (total time to all ready, daemon RSS). One run; prints a summary.
#
# Usage: benches/boot-overhead.sh [SAMPLES]   (default 5 samples each way)
# Needs: a built hypernix (cargo build --release -p hypernix), qemu-system-x86, the
# test guest's inputs (scripts/install-deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
SAMPLES=${1:-5}
BIN=${HYPERNIX_BIN:-${CARGO_TARGET_DIR:-target}/release/hypernix}
[ -x "$BIN" ] || { echo "build first: cargo build --release -p hypernix (or set HYPERNIX_BIN)" >&2; exit 2; }
STATE=$(mktemp -d /tmp/hnx-bench.XXXXXX)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
API=127.0.0.1:$PORT
hx() { "$BIN" --api "$API" "$@"; }
cleanup() {
  hx down >/dev/null 2>&1 || true
  pkill -9 -f "$STATE" 2>/dev/null || true
  rm -rf "$STATE"
}
trap cleanup EXIT

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
# Waits until FILE contains the readiness line; prints the time in ms.
wait_ready() {
  until grep -qs HYPERNIX-READY "$1"; do sleep 0.005; done
  now_ms
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : int((a[NR/2]+a[NR/2+1])/2)}'; }

"$BIN" --api "$API" serve --state-dir "$STATE" --accel tcg >"$STATE/daemon.log" 2>&1 &
until hx units >/dev/null 2>&1; do sleep 0.1; done

cat >"$STATE/one.nix" <<'NIX'
{ hypervisor.compute.units.bench = { resources.memory.size = "256Mi"; workload.type = "ephemeral"; }; }
NIX
cat >"$STATE/none.nix" <<'NIX'
{ hypervisor.compute.units = { }; }
NIX
LOG=$STATE/units/bench/console.log

# Warm-up: builds the test guest into the cache, and keeps the QEMU command line.
hx apply "$STATE/one.nix" >/dev/null
wait_ready "$LOG" >/dev/null
PID=$(hx units --json | python3 -c 'import json,sys; print([u for u in json.load(sys.stdin) if u["name"]=="bench"][0]["pid"])')
mapfile -d '' QEMU_CMD < "/proc/$PID/cmdline"
hx apply "$STATE/none.nix" >/dev/null

ours=(); theirs=()
for i in $(seq "$SAMPLES"); do
  rm -f "$LOG"
  t0=$(now_ms); hx apply "$STATE/one.nix" >/dev/null
  t1=$(wait_ready "$LOG"); ours+=($((t1 - t0)))
  hx apply "$STATE/none.nix" >/dev/null

  mkdir -p "$STATE/byhand"; rm -f "$STATE/units/bench/"*.sock "$LOG"
  t0=$(now_ms)
  (cd "$STATE/units/bench" && exec setsid "${QEMU_CMD[@]}" >"$STATE/byhand/qemu.log" 2>&1) &
  disown
  t1=$(wait_ready "$LOG"); theirs+=($((t1 - t0)))
  pkill -9 -f "guest=bench" 2>/dev/null || true
  sleep 0.5
done
OURS=$(printf '%s\n' "${ours[@]}" | median)
THEIRS=$(printf '%s\n' "${theirs[@]}" | median)

# 20 units at once.
{
  echo '{ hypervisor.compute.units = {'
  for i in $(seq -w 1 20); do echo "  u$i = { resources.memory.size = \"256Mi\"; };"; done
  echo '}; }'
} >"$STATE/twenty.nix"
t0=$(now_ms)
hx apply "$STATE/twenty.nix" >/dev/null
for i in $(seq -w 1 20); do wait_ready "$STATE/units/u$i/console.log" >/dev/null; done
T20=$(( $(now_ms) - t0 ))
DPID=$(pgrep -f "serve --state-dir $STATE" | head -1)
RSS=$(awk '/VmRSS/ {print $2}' "/proc/$DPID/status")
HWM=$(awk '/VmHWM/ {print $2}' "/proc/$DPID/status")

echo "samples: $SAMPLES; hypernix: ${ours[*]} ms; by hand: ${theirs[*]} ms"
echo "apply -> readiness line, median: hypernix $OURS ms, same QEMU command by hand $THEIRS ms, overhead $((OURS - THEIRS)) ms ($(awk "BEGIN {printf \"%.1f\", ($OURS - $THEIRS) * 100 / $THEIRS}")%)"
echo "20 units at once: all ready after $T20 ms; daemon RSS $((RSS / 1024)) MiB (peak $((HWM / 1024)) MiB)"
