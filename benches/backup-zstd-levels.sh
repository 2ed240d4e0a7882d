#!/bin/bash
# The repository-size part of benches/backup-vs-restic.sh: backs up v0..v3 of DATA in order
# (backups only, no restore) with hypernix at zstd level LEVEL, or with restic for
# "restic"; prints time, peak RSS and repository size after each version.
# Usage: benches/backup-zstd-levels.sh LEVEL|restic [DATA] [WORK] [HYPERNIX]
set -euo pipefail
L=${1:?usage: backup-zstd-levels.sh LEVEL|restic [DATA] [WORK] [HYPERNIX]}
DATA=$(realpath "${2:-/work/bench-data}")
W=$(realpath -m "${3:-/tmp/bk-zstd}")/w-$L; rm -rf "$W"; mkdir -p "$W/current"
export HYPERNIX_BACKUP_PASSWORD=bench RESTIC_PASSWORD=bench RESTIC_CACHE_DIR=$W/cache
H=$(realpath "${4:-target/release/hypernix}")
if [ "$L" = restic ]; then
  restic init --repo "$W/repo" >/dev/null
else
  echo "{\"hypervisor\":{\"backup\":{\"repositories\":{\"default\":{\"location\":\"$W/repo\",\"compression\":{\"level\":$L}}}}}}" > "$W/c.json"
  $H backup init --repo "$W/repo" --config "$W/c.json" >/dev/null
fi
for v in 0 1 2 3; do
  ln -f $DATA/v$v.img "$W/current/disk.img"
  if [ "$L" = restic ]; then
    /usr/bin/time -f "%e s %M KiB" -o "$W/t" restic backup --repo "$W/repo" "$W/current/disk.img" >/dev/null
  else
    /usr/bin/time -f "%e s %M KiB" -o "$W/t" $H backup create --repo "$W/repo" --image --source disk "$W/current/disk.img" >/dev/null
  fi
  echo "$L v$v $(cat $W/t) repo $(du -sb $W/repo | cut -f1)"
done
rm -rf "$W"
