#!/bin/bash
# Backs up the VM disk series v0..v3 in order with hypernix, restic and borg (default
# settings each), then restores v3; prints, per tool, backup time per version, repository
# size after each, restore time and peak RSS (issue 6's benchmark).
#
# Usage: benches/backup-vs-restic.sh DATA WORK [HYPERNIX]
#   DATA      holds v0.img .. v3.img (made by ../shared/tools/make-vmdisk-series.sh DATA)
#   WORK      a scratch directory (emptied)
#   HYPERNIX  the binary (default target/release/hypernix; build it with
#             `cargo build --release -p hypernix`)
# Needs restic, borg (Debian: restic borgbackup) and GNU time. Caches are warm: every
# tool reads the same files right after the previous one did.
set -euo pipefail
DATA=$(realpath "${1:?usage: backup-vs-restic.sh DATA WORK [HYPERNIX]}")
WORK=${2:?usage: backup-vs-restic.sh DATA WORK [HYPERNIX]}
HYPERNIX=$(realpath "${3:-target/release/hypernix}")
rm -rf "$WORK"; mkdir -p "$WORK/current"; WORK=$(realpath "$WORK")
export HYPERNIX_BACKUP_PASSWORD=bench RESTIC_PASSWORD=bench BORG_PASSPHRASE=bench
export BORG_BASE_DIR=$WORK/borg-home RESTIC_CACHE_DIR=$WORK/restic-cache

# run LABEL CMD...: runs CMD under GNU time, appends "LABEL seconds max_rss_kib" to results.
run() {
    local label=$1; shift
    /usr/bin/time -f "%e %M" -o "$WORK/time.out" "$@" >"$WORK/$label.log" 2>&1
    echo "$label $(cat "$WORK/time.out")" >>"$WORK/results"
}
size() { du -sb "$1" | cut -f1; }

for tool in hypernix restic borg; do
    repo=$WORK/repo-$tool
    case $tool in
        hypernix) "$HYPERNIX" backup init --repo "$repo" >/dev/null ;;
        restic) restic init --repo "$repo" >/dev/null ;;
        borg) borg init --encryption=repokey "$repo" ;;
    esac
    for v in 0 1 2 3; do
        # The same path for every version, as a VM's disk would be.
        ln -f "$DATA/v$v.img" "$WORK/current/disk.img"
        case $tool in
            hypernix) run "$tool-backup-v$v" "$HYPERNIX" backup create --repo "$repo" --image --source disk "$WORK/current/disk.img" ;;
            restic) run "$tool-backup-v$v" restic backup --repo "$repo" "$WORK/current/disk.img" ;;
            borg) run "$tool-backup-v$v" borg create "$repo::v$v" "$WORK/current/disk.img" ;;
        esac
        echo "$tool-size-v$v $(size "$repo")" >>"$WORK/results"
    done
    out=$WORK/out-$tool; mkdir -p "$out"
    case $tool in
        hypernix) run "$tool-restore-v3" "$HYPERNIX" backup restore --repo "$repo" latest --target "$out/disk.img" ;;
        restic) run "$tool-restore-v3" restic restore --repo "$repo" latest --target "$out" ;;
        borg) (cd "$out" && run "$tool-restore-v3" borg extract "$repo::v3") ;;
    esac
    restored=$(find "$out" -name disk.img -type f | head -1)
    if cmp -s "$restored" "$DATA/v3.img"; then verdict=identical; else verdict=DIFFERENT; fi
    echo "$tool-restored $verdict $(du -B1 "$restored" | cut -f1)" >>"$WORK/results"
    rm -rf "$out"
done
"$HYPERNIX" backup stats --repo "$WORK/repo-hypernix" --json >"$WORK/hypernix-stats.json"
cat "$WORK/results"
echo "hypernix stats: $(tr -d '\n ' <"$WORK/hypernix-stats.json")"
