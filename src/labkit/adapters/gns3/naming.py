"""Names of an instance's GNS3 objects, derived from the instance name and the labkit home
alone, so that ``destroy``, ``leftovers`` and ``instances`` find them after a crash without
the state file, and two labkit homes sharing one GNS3 server never touch each other.

- the home mark ``<homeid>``: 8 hex characters of a hash of (host name, home path);
- project: ``<prefix><homeid>-<instance>`` (``project_prefix``, ``lk-`` by default:
  ``lk-1a2b3c4d-exam-07``); the candidate's user and the project's pool: ``lk-<homeid>-<instance>``
  (:func:`labkit.adapters.gns3.access.candidate_name`; GNS3 accepts ``[a-zA-Z0-9_-]``, at
  least 3 characters: an instance name ``[a-z][a-z0-9-]{0,30}`` always fits);
- the host bridge of one vantage point on the GNS3 host (the cloud node ``grader`` plugs one
  ethernet port into each): ``lkb`` + 12 hex characters of a hash (Linux interface names are
  at most 15 characters; the hash includes the home mark, so homes never share a bridge).
"""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

GRADER_NODE = "grader"  # the cloud node of the grader's vantage points
BASE_SNAPSHOT = "labkitbase"  # the project snapshot made after create (reset restores it)
BRIDGE_PREFIX = "lkb"


def home_id(home: Path | str, host: str | None = None) -> str:
    """A short id of one labkit home on one host, marked on every name labkit makes."""
    host = socket.gethostname() if host is None else host
    return hashlib.sha256(f"{host}\0{Path(home).resolve()}".encode()).hexdigest()[:8]


def home_prefix(prefix: str, hid: str) -> str:
    """What every project (user, pool: with prefix ``lk-``) name of one home starts with."""
    return f"{prefix}{hid}-"


def project_name(prefix: str, hid: str, instance: str) -> str:
    return f"{home_prefix(prefix, hid)}{instance}"


def instance_of(prefix: str, hid: str, name: str) -> str | None:
    """The instance a project/user/pool name of this home belongs to (None: not this home's)."""
    head = home_prefix(prefix, hid)
    return name[len(head):] if name.startswith(head) and len(name) > len(head) else None


def host_bridge(hid: str, instance: str, vantage: str) -> str:
    """The Linux bridge on the GNS3 host for one vantage point of an instance (15 characters)."""
    return BRIDGE_PREFIX + hashlib.sha256(f"{hid}\0{instance}\0{vantage}".encode()).hexdigest()[:12]


def switch_name(segment: str) -> str:
    """The GNS3 node name of a LAN segment's switch."""
    return f"sw-{segment}"
