"""PX's launcher: PV's fakepve_server (same LabPve, same control ops) plus the ops the doctor,
templates and access tests need. TEST-ONLY, run with the fakepve venv's python; fakepve is
AGPL-3.0 and stays in this separate process.

Extra control ops:
- ``grant {user, path, privs}``: fakepve's ``grant`` (once any grant exists, only what is
  granted is allowed, and ``GET /access/permissions`` answers from the grants);
- ``acl_off``: back to "everyone may do anything";
- ``bodies {clear}``: recorded requests with their bodies ``[method, path, body]``;
- ``storage {name, **options}``: change a storage's options (e.g. content, avail);
- ``bridges {node, ifaces}``: the bridges ``GET /nodes/{n}/network`` answers for a node;
- ``version {version}``: the version ``GET /version`` answers.
"""

from __future__ import annotations

import asyncio
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fakepve_server as base  # noqa: E402


class Control(base.Control):
    def handle(self, req):
        pve, op = self.pve, req.get("op")
        if op == "grant":
            pve.grant(req["user"], req["path"], *req["privs"])
            return None
        if op == "acl_off":
            pve.acl = None
            return None
        if op == "bodies":
            out = [[m, p, b.decode("utf-8", "replace") if isinstance(b, bytes) else b]
                   for m, p, b in pve.requests]
            if req.get("clear"):
                pve.requests.clear()
            return out
        if op == "storage":
            pve.storages[req["name"]].update(req["options"])
            return None
        if op == "bridges":
            pve.px_bridges[req["node"]] = list(req["ifaces"])
            return None
        if op == "version":
            pve.version = req["version"]
            return None
        return super().handle(req)


class PxPve(base.LabPve):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.px_bridges = {}

    def _routes_px(self):
        return [("GET", "/nodes/{node}/network", self._px_network)]

    async def _px_network(self, v, user):
        names = self.px_bridges.get(v["node"], ["vmbr0"])
        return [{"iface": n, "type": "bridge", "active": 1, "exists": 1} for n in names]


base.Control = Control
base.LabPve = PxPve

if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", required=True)
    parser.add_argument("--nodes", default="pve1,pve2,pve3")
    asyncio.run(base.main(parser.parse_args()))
