#!/bin/bash
# Trace replay (issue 5): the memory tier's W-TinyLFU cache, driven by the store's heat map,
# against LRU and ARC at the same tier-0 capacity, on the ARC paper's OLTP and P3 traces at
# three capacities each. Hit ratios are per 512-byte page, as in the paper; they do not
# depend on machine speed. Each size runs twice: with the default heat half-life (1h of
# simulated time, one page request per simulated second) and with a half-life of 10 x the
# tier-0 capacity in requests (TinyLFU's sample-size rule: reset after 10 x C accesses).
#
# Usage: benches/storage-replay.sh [HYPERNIX] [TRACES]
#   HYPERNIX  the binary (default target/release/hypernix; build it with
#             `cargo build --release -p hypernix`)
#   TRACES    the trace directory (default ../shared/data/block-traces)
set -euo pipefail
BIN=${1:-target/release/hypernix}
TRACES=${2:-../shared/data/block-traces}
printf '%-5s %8s %-10s %8s %8s %8s\n' trace tier0 half-life ours LRU ARC
for spec in OLTP:1000 OLTP:5000 OLTP:20000 P3:8192 P3:65536 P3:262144; do
    trace=${spec%%:*}; pages=${spec##*:}
    for half in 1h "$((10 * pages))s"; do
        "$BIN" storage replay "$TRACES/$trace.lis.zst" --tier0 "$pages" --half-life "$half" --json |
            python3 -c '
import json, sys
r = json.load(sys.stdin)
t = r["tiers"][0]
pct = lambda x: "%.2f%%" % (100 * x)
print("%-5s %8s %-10s %8s %8s %8s" % (sys.argv[1], sys.argv[2], sys.argv[3],
      pct(t["hit_ratio"]), pct(t["lru"]), pct(t["arc"])))
' "$trace" "$pages" "$half"
    done
done
