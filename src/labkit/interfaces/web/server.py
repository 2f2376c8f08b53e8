"""``labkit serve``: the portal (uvicorn) and the SSH bastion in one process and one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import Any

from labkit.errors import UserError
from labkit.usecases.lifecycle import Context

LOG = logging.getLogger("labkit.serve")


def open_database(ctx: Context) -> Any:
    """The configured database (LABKIT_DB_URL, else SQLite in LABKIT_HOME), migrated to head."""
    from labkit.adapters.db.database import Database, url_for

    db = Database(url_for(ctx.settings))
    db.upgrade()
    return db


def _listen_socket(host: str, port: int) -> socket.socket:
    if not 0 < port < 65536:
        raise UserError(f"port {port} is out of range; give a port from 1 to 65535.")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        raise UserError(f"{host!r} is not an address of this machine; give --listen an IP address such as "
                        "127.0.0.1 or the exam room's address.") from None
    family, kind, proto, _, addr = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise UserError(f"the portal cannot listen on {host}:{port} ({exc.strerror}); choose another --port or "
                        "--listen, or stop what uses it.") from None
    sock.setblocking(False)
    return sock


def serve(ctx: Context, *, listen: str = "127.0.0.1", port: int = 8000, ssh_port: int | None = 2222,
          secure_cookies: bool = False) -> None:
    """Run the portal on ``listen:port`` and, unless ``ssh_port`` is None, the SSH bastion on
    ``listen:ssh_port``, until interrupted."""
    import uvicorn

    from labkit.interfaces.web import create_app

    sock = _listen_socket(listen, port)
    db = open_database(ctx)
    app = create_app(ctx, db, secure_cookies=secure_cookies, ssh_port=ssh_port or 2222)
    config = uvicorn.Config(app, log_level="info", proxy_headers=False, server_header=False,
                            date_header=False, access_log=True)
    server = uvicorn.Server(config)

    async def main() -> None:
        bastion = None
        if ssh_port:
            try:
                from labkit.interfaces.bastion import start_bastion
            except ImportError as exc:  # the bastion is optional: the portal still serves
                LOG.warning("SSH bastion unavailable (%s); serving the portal only", exc)
            else:
                bastion = await start_bastion(ctx, db, listen, ssh_port)
        try:
            await server.serve(sockets=[sock])
        finally:
            hub = getattr(app.state, "console_hub", None)  # browser terminals: every shell reaped
            if hub is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(hub.wait_idle(), 10)
            if bastion is not None:
                bastion.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(bastion.wait_closed(), 10)

    try:
        asyncio.run(main())
    finally:
        sock.close()
        db.dispose()
