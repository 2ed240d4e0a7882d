#!/usr/bin/env bash
# Installs the Debian packages hypernix and its tests need, skipping those present.
# Debian 12, as root (or with sudo). Safe to run again.
set -euo pipefail

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

# debootstrap, extlinux, syslinux-common and fdisk build the Debian guest (scripts/debian-image.sh);
# genisoimage and cloud-init check the composed cloud-init seeds; prometheus (for promtool)
# and python3-prometheus-client check the /metrics exposition; iproute2 (ip netns) and nftables
# build and cut the network of the mesh partition test (crates/hypernix-mesh/tests/it/netns);
# chromium is the headless browser the web console's end-to-end test drives through
# playwright-core (crates/hypernix/tests/ui_console.rs).
WANT=(nix-bin qemu-system-x86 busybox-static linux-image-amd64 libnbd-bin nats-server
      genisoimage cloud-init debootstrap extlinux syslinux-common fdisk
      prometheus python3-prometheus-client iproute2 nftables chromium)
missing=()
for pkg in "${WANT[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: everything is installed"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
extra=()
if printf '%s\n' "${missing[@]}" | grep -qx qemu-system-x86; then
  # qemu-utils must match qemu-system-x86's version; a newer qemu-utils from
  # backports blocks the install, so pin it to the same version in one call.
  v=$(apt-cache policy qemu-system-x86 | awk '/Candidate:/ {print $2}')
  extra+=("qemu-utils=$v" --allow-downgrades)
fi
$SUDO apt-get install -y -qq "${missing[@]}" "${extra[@]}" >/dev/null
# cloud-init is here to check seeds, never to configure this host at its next boot.
$SUDO mkdir -p /etc/cloud && $SUDO touch /etc/cloud/cloud-init.disabled
echo "install-deps: done"
