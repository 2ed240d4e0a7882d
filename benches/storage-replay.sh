#!/bin/bash
# Trace replay (issue 5): the memory tier's cache (W-TinyLFU with an adaptive window and
# access-clock frequency counts, the store's default policy) against LRU and ARC at the
# same tier-0 capacity, on the ARC paper's OLTP and P3 traces at three capacities each,
# one row per size, with the default configuration (no tuning flags). Hit ratios are per
# 512-byte page, as in the paper; they do not depend on machine speed.
#
# Usage: benches/storage-replay.sh [HYPERNIX] [TRACES]
#   HYPERNIX  the binary (default target/release/hypernix; build it with
#             `cargo build --release -p hypernix`)
#   TRACES    the trace directory (default ../shared/data/block-traces)
set -euo pipefail
BIN=${1:-target/release/hypernix}
TRACES=${2:-../shared/data/block-traces}
printf '%-5s %8s %8s %8s %8s %s\n' trace tier0 ours LRU ARC 'ours>=ARC'
for spec in OLTP:1000 OLTP:5000 OLTP:20000 P3:8192 P3:65536 P3:262144; do
    trace=${spec%%:*}; pages=${spec##*:}
    "$BIN" storage replay "$TRACES/$trace.lis.zst" --tier0 "$pages" --json |
        python3 -c '
import json, sys
r = json.load(sys.stdin)
t = r["tiers"][0]
pct = lambda x: "%.2f%%" % (100 * x)
print("%-5s %8s %8s %8s %8s %s" % (sys.argv[1], sys.argv[2], pct(t["hit_ratio"]),
      pct(t["lru"]), pct(t["arc"]), "yes" if t["hit_ratio"] >= t["arc"] else "no"))
' "$trace" "$pages"
done
