#!/usr/bin/env bash
# Install the Debian packages labkit needs, idempotently, without starting any service on
# the host (policy-rc.d refuses while apt runs). Safe to run again: it installs only what
# is missing.
set -euo pipefail
PACKAGES=(
  python3 python3-venv python3-dev gcc make iproute2 iputils-ping procps util-linux tini
  openssh-server openssh-client frr snmpd snmp tcpdump
  # ad-gpo: Samba AD DC, member server, Kerberos and LDAP clients
  samba samba-ad-dc samba-ad-provision winbind libnss-winbind krb5-user ldb-tools smbclient
  # backup-restore
  restic borgbackup cron rsync
  # vpn-site-to-site
  nftables wireguard-go wireguard-tools openvpn openssl
  # supervision-snmp
  prometheus prometheus-snmp-exporter prometheus-alertmanager rsyslog chrony
  # exam day: the nodes' own root filesystem image (mmdebstrap), their seccomp filter
  # (libseccomp), the portal's PostgreSQL (tests start it in a scratch folder), the browser
  # terminal (xterm.js) and the browser tests (Chromium)
  mmdebstrap libseccomp2 postgresql libjs-xterm chromium
  # proof bundles: WeasyPrint's text layout (Pango), fonts with French accents, pdftoppm to
  # look at the pages
  libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core fonts-dejavu-extra poppler-utils
)
if [ "$(id -u)" != 0 ]; then
  echo "install-deps: run as root (it installs Debian packages)." >&2
  exit 1
fi
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} Debian packages already installed."
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
created_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod 755 /usr/sbin/policy-rc.d
  created_policy=1
fi
cleanup() { [ "$created_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d; return 0; }
trap cleanup EXIT
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done."
