#!/bin/bash
# Compares the hypernix-storage NBD server with qemu-nbd serving a raw file on the same
# disk, with `qemu-img bench` as the client (issue 5's benchmark). Both serve a fully
# written 1 GiB disk (random bytes, no holes). Each test runs SAMPLES times per server,
# alternating; the script prints every sample and the median.
#
# Usage: benches/storage-vs-qemu-nbd.sh WORK [SAMPLES] [NBD_SERVE]
#   WORK       a scratch directory (emptied)
#   SAMPLES    runs per test and server (default 3)
#   NBD_SERVE  the server binary (default target/release/examples/nbd-serve; build it with
#              `cargo build --release -p hypernix-storage --example nbd-serve`)
# Needs root (it drops the page cache once, see below), qemu-img and qemu-nbd
# (qemu-utils). qemu-img bench has no random mode: the "4 KiB"
# tests stride by 1 MiB + 4 KiB, so consecutive requests hit different extents. Writes use
# pattern 0xab: all-zero writes would become holes here, which qemu-nbd does not do.
set -euo pipefail
WORK=${1:?usage: storage-vs-qemu-nbd.sh WORK [SAMPLES] [NBD_SERVE]}
SAMPLES=${2:-3}
SERVE=$(realpath "${3:-target/release/examples/nbd-serve}")
SIZE=$((1 << 30))
rm -rf "$WORK"; mkdir -p "$WORK"; WORK=$(realpath "$WORK")
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

head -c $SIZE /dev/urandom >"$WORK/disk.raw"
"$SERVE" "$WORK/store" "$WORK/ours.sock" $SIZE >"$WORK/ours.log" 2>&1 &
pids+=($!)
wait_socket() { for _ in $(seq 100); do [ -S "$1" ] && return; sleep 0.1; done; }
wait_socket "$WORK/ours.sock"
OURS="nbd+unix:///vol?socket=$WORK/ours.sock"
QEMU="nbd+unix:///?socket=$WORK/qemu.sock"
# Fill our volume from the file before qemu-nbd locks it.
qemu-img convert -n -f raw -O raw "$WORK/disk.raw" "$OURS"
# Start both servers with the same page cache state. The two files were written
# differently (ours by 1 MiB NBD writes, the raw file by `head`), and Linux 6.x keeps
# large folios for large writes: a later 4 KiB write into a large folio costs the kernel
# a walk over all its buffers (ext4_block_write_begin), whichever server issues it (qemu-nbd
# serving our tier file measured 4.5 s for the 4 KiB write test, 1.6 s on the raw file).
# Dropping the clean pages gives both files the same, cold, start.
sync
echo 1 >/proc/sys/vm/drop_caches
qemu-nbd -f raw -k "$WORK/qemu.sock" -t "$WORK/disk.raw" &
pids+=($!)
wait_socket "$WORK/qemu.sock"

# seconds URI ARGS...: the run time qemu-img bench reports.
seconds() {
    local uri=$1; shift
    qemu-img bench -f raw "$@" "$uri" | sed -n 's/^Run completed in \([0-9.]*\) seconds.*/\1/p'
}
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

printf '%-34s %-28s %-28s %s\n' test "hypernix (s)" "qemu-nbd (s)" "ratio (qemu/ours)"
while IFS='|' read -r name args; do
    ours=""; qemu=""
    for _ in $(seq "$SAMPLES"); do
        # shellcheck disable=SC2086
        ours="$ours $(seconds "$OURS" $args)"
        # shellcheck disable=SC2086
        qemu="$qemu $(seconds "$QEMU" $args)"
    done
    mo=$(echo "$ours" | median); mq=$(echo "$qemu" | median)
    printf '%-34s %-28s %-28s %s\n' "$name" "$mo ($ours )" "$mq ($qemu )" \
        "$(awk -v o="$mo" -v q="$mq" 'BEGIN { printf "%.2f", q / o }')"
done <<'TESTS'
4 KiB read, depth 16, 200k ops|-c 200000 -d 16 -s 4096 -S 1052672
4 KiB write, depth 16, 100k ops|-w --pattern=171 -c 100000 -d 16 -s 4096 -S 1052672
1 MiB sequential read, depth 4, 2k|-c 2000 -d 4 -s 1048576
1 MiB sequential write, depth 4, 2k|-w --pattern=171 -c 2000 -d 4 -s 1048576
TESTS
