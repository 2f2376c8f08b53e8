#!/usr/bin/env bash
# Make the virtualenv that runs gns3-server 3.0.6 (GPL-3.0, test-only) for labkit's GNS3 provider
# tests. gns3-server is never imported by labkit nor by labkit's test process: the harness
# tests/adapters/gns3/g3server.py runs THIS venv's `gns3server` as a separate server process.
# Its pins clash with labkit's (aiohttp, ...): never install it in labkit's venv.
# Usage: scripts/gns3-venv.sh [DIR]   (DIR default: $LABKIT_GNS3_VENV or /var/lib/labkit/gns3-venv)
# Idempotent and fast when the venv is already right (a stamp file names the version).
# Prints the venv's gns3server executable on stdout.
set -euo pipefail
VERSION="3.0.6"
VENV="${1:-${LABKIT_GNS3_VENV:-/var/lib/labkit/gns3-venv}}"
EXE="$VENV/bin/gns3server"
STAMP="$VENV/.labkit-gns3-server-$VERSION"
if [[ -x "$EXE" && -f "$STAMP" ]]; then
  echo "$EXE"
  exit 0
fi
mkdir -p "$(dirname "$VENV")"
rm -f "$VENV"/.labkit-gns3-server-*
python3 -m venv "$VENV" >&2
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "gns3-server==$VERSION" >&2
got="$("$VENV/bin/python" -c 'import gns3server.version as v; print(v.__version__)')"
if [[ "$got" != "$VERSION" ]]; then
  echo "gns3-venv.sh: $VENV holds gns3-server $got, not $VERSION; remove $VENV and run again." >&2
  exit 1
fi
touch "$STAMP"
echo "$EXE"
