#!/usr/bin/env bash
# Make the virtualenv that serves fakepve (a fake Proxmox VE API, AGPL-3.0, test-only) for
# labkit's Proxmox provider tests. fakepve is never imported by labkit nor by labkit's test
# process: tests/adapters/proxmox/fakepve_server.py runs with THIS venv's python.
# Idempotent and fast when the venv is already right. Prints the venv's python on stdout.
#   LABKIT_FAKEPVE_VENV  where (default /var/lib/labkit/fakepve-venv)
set -euo pipefail
VERSION="0.5.0"
VENV="${LABKIT_FAKEPVE_VENV:-/var/lib/labkit/fakepve-venv}"
PY="$VENV/bin/python"
STAMP="$VENV/.labkit-fakepve-$VERSION"
if [[ -x "$PY" && -f "$STAMP" ]]; then
  echo "$PY"
  exit 0
fi
mkdir -p "$(dirname "$VENV")"
python3 -m venv "$VENV" >&2
"$PY" -m pip install --quiet --disable-pip-version-check "fakepve[crypto]==$VERSION" >&2
"$PY" -c 'import fakepve, cryptography' >&2
touch "$STAMP"
echo "$PY"
