#!/usr/bin/env bash
# Builds the full Debian guest for provisioning tests (issue 7): Debian bookworm with
# systemd, cloud-init (NoCloud), ifupdown + DHCP, the example components' packages (nginx)
# and the distribution kernel, on one MBR partition booted by extlinux, serial console on
# ttyS0. Cached: the image's name carries a hash of this script, so an unchanged script
# reuses the image and a changed one builds a new one.
#
# Usage: scripts/debian-image.sh [DIR]   (default /var/tmp/hypernix-images)
# Prints the image's path on stdout; progress goes to stderr. Needs root, loop devices,
# debootstrap, extlinux and a reachable Debian mirror (the machine's apt source).
set -euo pipefail

DIR=${1:-/var/tmp/hypernix-images}
HASH=$(sha256sum "$0" | cut -c1-12)
IMG=$DIR/debian-bookworm-$HASH.raw
if [ -s "$IMG" ]; then
  echo "$IMG"
  exit 0
fi
[ "$(id -u)" -eq 0 ] || { echo "debian-image: needs root (loop devices, chroot)" >&2; exit 1; }
for tool in debootstrap extlinux sfdisk losetup mkfs.ext4; do
  command -v "$tool" >/dev/null || { echo "debian-image: $tool is missing; run scripts/install-deps.sh" >&2; exit 1; }
done
MBR=/usr/lib/syslinux/mbr/mbr.bin
[ -f "$MBR" ] || { echo "debian-image: $MBR is missing; apt-get install syslinux-common" >&2; exit 1; }
MIRROR=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
MIRROR=${MIRROR:-http://deb.debian.org/debian}

mkdir -p "$DIR"
WORK=$(mktemp -d "$DIR/build.XXXXXX")
MNT=$WORK/mnt
LOOP=""
cleanup() {
  set +e
  for m in dev sys proc; do umount "$MNT/$m" 2>/dev/null; done
  umount "$MNT" 2>/dev/null
  [ -n "$LOOP" ] && losetup -d "$LOOP"
  rm -rf "$WORK"
}
trap cleanup EXIT

RAW=$WORK/disk.raw
truncate -s 3G "$RAW"
echo 'type=83, bootable' | sfdisk -q "$RAW"
# The partition through an offset loop device: partition device nodes need udev.
START=$(sfdisk -d "$RAW" | awk -F'[=,]' '/start=/ {gsub(/ /, "", $2); print $2}')
SECTORS=$(sfdisk -d "$RAW" | awk -F'[=,]' '/size=/ {gsub(/ /, "", $4); print $4}')
LOOP=$(losetup --show -f -o $((START * 512)) --sizelimit $((SECTORS * 512)) "$RAW")
# extlinux reads ext4 without the 64bit feature.
mkfs.ext4 -q -O ^64bit -L root "$LOOP"
mkdir -p "$MNT"
mount "$LOOP" "$MNT"

echo "debian-image: debootstrap bookworm from $MIRROR, then the packages (a few minutes)" >&2
debootstrap --variant=minbase bookworm "$MNT" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
  { tail -30 "$WORK/debootstrap.log" >&2; exit 1; }
for m in proc sys dev; do mount --bind "/$m" "$MNT/$m"; done
# No service starts inside the chroot (nginx would bind the host's port 80).
printf '#!/bin/sh\nexit 101\n' >"$MNT/usr/sbin/policy-rc.d"; chmod +x "$MNT/usr/sbin/policy-rc.d"
chroot "$MNT" bash -c 'export DEBIAN_FRONTEND=noninteractive; apt-get update -q &&
  apt-get install -y -q --no-install-recommends systemd-sysv udev linux-image-amd64 cloud-init \
    ifupdown isc-dhcp-client iproute2 nginx procps curl && apt-get clean' >"$WORK/packages.log" 2>&1 ||
  { tail -30 "$WORK/packages.log" >&2; exit 1; }
rm -f "$MNT/usr/sbin/policy-rc.d"
for m in dev sys proc; do umount "$MNT/$m"; done

cat >"$MNT/etc/fstab" <<'EOF'
LABEL=root / ext4 defaults,errors=remount-ro 0 1
EOF
# cloud-init finds its seed on the `cidata` volume only; no network metadata services.
cat >"$MNT/etc/cloud/cloud.cfg.d/90-hypernix.cfg" <<'EOF'
datasource_list: [ NoCloud, None ]
# The image has no locales package; C.UTF-8 is built into the C library.
locale: C.UTF-8
EOF
# Kept quiet and quick under emulation: no apt timers, no waiting for every link.
for unit in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer man-db.timer; do
  ln -sf /dev/null "$MNT/etc/systemd/system/$unit"
done
# Tests read the guest through its serial console: root is logged in there, nowhere else.
mkdir -p "$MNT/etc/systemd/system/serial-getty@ttyS0.service.d"
cat >"$MNT/etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf" <<'EOF'
[Service]
ExecStart=
ExecStart=-/sbin/agetty --autologin root --noclear --keep-baud 115200,57600,38400,9600 %I $TERM
EOF
mkdir -p "$MNT/boot/extlinux"
cat >"$MNT/boot/extlinux/extlinux.conf" <<'EOF'
DEFAULT debian
TIMEOUT 1
LABEL debian
  LINUX /vmlinuz
  INITRD /initrd.img
  APPEND root=LABEL=root rw console=ttyS0,115200 net.ifnames=0 quiet
EOF
extlinux --install "$MNT/boot/extlinux" >/dev/null 2>&1
# /vmlinuz and /initrd.img are the package's symlinks into /boot; extlinux follows them
# only inside the file system, so point it at the real files.
sed -i "s|/vmlinuz|/boot/$(basename "$(readlink "$MNT/vmlinuz")")|; s|/initrd.img|/boot/$(basename "$(readlink "$MNT/initrd.img")")|" \
  "$MNT/boot/extlinux/extlinux.conf"
# The guest starts with no machine id, so each instance makes its own.
: >"$MNT/etc/machine-id"
sync
umount "$MNT"
losetup -d "$LOOP"; LOOP=""
dd if="$MBR" of="$RAW" bs=440 count=1 conv=notrunc status=none
mv "$RAW" "$IMG"
echo "$IMG"
