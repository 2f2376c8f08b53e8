#!/usr/bin/env bash
# Build the root filesystem every lab node starts from: a Debian 12 system made by
# mmdebstrap from Debian's packages only, so that nothing of this host (its /etc/shadow, SSH
# host keys, /var, labkit's home, the portal's database) is ever below a node. Nodes mount
# it read-only as the lower layer of their own overlay.
#
# Idempotent: the image is named after a hash of its package list and this script; an image
# that is already there is kept. `current` points at the image new nodes use; an older image
# stays until no instance uses it (remove it by hand, or with 'make clean-images').
set -euo pipefail
IMAGE_DIR=${LABKIT_IMAGE_DIR:-/var/lib/labkit/images}
MIRROR=${LABKIT_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY=${LABKIT_DEBIAN_SECURITY:-http://deb.debian.org/debian-security}
PACKAGES=(
  # every node: init, tools a candidate expects, python3 for Ansible's modules
  tini python3 iproute2 iputils-ping procps psmisc less nano vim-tiny curl ca-certificates
  traceroute dnsutils netcat-openbsd tcpdump nftables iptables openssl
  openssh-server openssh-client frr snmpd snmp
  # ad-gpo
  samba samba-ad-dc samba-ad-provision winbind libnss-winbind krb5-user ldb-tools smbclient
  # backup-restore
  restic borgbackup cron rsync
  # vpn-site-to-site
  wireguard-go wireguard-tools openvpn
  # supervision-snmp
  prometheus prometheus-snmp-exporter prometheus-alertmanager rsyslog chrony
)
if [ "$(id -u)" != 0 ]; then
  echo "build-node-image: run as root (it builds a Debian root filesystem)." >&2
  exit 1
fi
if ! command -v mmdebstrap >/dev/null; then
  echo "build-node-image: mmdebstrap is missing; run 'make deps' first." >&2
  exit 1
fi
tag=$( (printf '%s\n' "${PACKAGES[@]}" "$MIRROR"; cat "$0") | sha256sum | cut -c1-12)
name="node-bookworm-$tag"
mkdir -p "$IMAGE_DIR"
chmod 755 "$IMAGE_DIR"
if [ -f "$IMAGE_DIR/$name/.labkit-image" ]; then
  ln -sfn "$name" "$IMAGE_DIR/current"
  echo "build-node-image: $IMAGE_DIR/$name is already built."
  exit 0
fi
build="$IMAGE_DIR/.build-$tag-$$"
trap 'rm -rf "$build"' EXIT
include=$(IFS=,; echo "${PACKAGES[*]}")
echo "build-node-image: building $name (about 30 s to a few minutes, ~900 MB)"
# customize hooks: no SSH host key or machine id of the image's own (each node makes its own
# at 'up'); /etc/mtab as on an installed system (systemd makes it there; net-snmp's disk
# table reads it); no package cache
mmdebstrap --variant=minbase --mode=root --format=directory --quiet \
  --aptopt='APT::Install-Recommends "false"' \
  --include="$include" \
  --customize-hook='rm -f "$1"/etc/ssh/ssh_host_* "$1"/var/lib/dbus/machine-id' \
  --customize-hook=': > "$1"/etc/machine-id' \
  --customize-hook='ln -sfn ../proc/self/mounts "$1"/etc/mtab' \
  --customize-hook='rm -rf "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/*' \
  bookworm "$build" \
  "deb $MIRROR bookworm main" "deb $MIRROR bookworm-updates main" "deb $SECURITY bookworm-security main"
printf 'name=%s\nbuilt=%s\npackages=%s\n' "$name" "$(date -u +%FT%TZ)" "$include" > "$build/.labkit-image"
chmod 755 "$build"
mv "$build" "$IMAGE_DIR/$name"
trap - EXIT
ln -sfn "$name" "$IMAGE_DIR/current"
echo "build-node-image: done: $IMAGE_DIR/$name"
