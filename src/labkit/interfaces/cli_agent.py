"""``labkit agent-proxy INSTANCE HOST PORT``: an OpenSSH ProxyCommand through the grader agent.

``ssh -o ProxyCommand='labkit agent-proxy NAME %h %p' root@NODE_ADDRESS`` (and Ansible with
the same ``ansible_ssh_common_args``) reaches a lab node from wherever the grader agent can:
the instance's agent session is opened as grading opens it (netns: a socket in
``lk-<name>.c``; Proxmox: TCP to the grader guest's management address, host key pinned), and
stdin/stdout are piped through one ``direct-tcpip`` channel that the agent's SSH server opens
from the vantage point of the node's LAN. The server refuses any address that is not a node
address of the instance's plan and any port but 22.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

import click

from labkit.errors import LabkitError
from labkit.interfaces.cli import _ctx, cli

CHUNK = 65536


def _pipe(chan: Any) -> int:
    """stdin -> channel, channel -> stdout, until the channel ends."""
    def upstream() -> None:
        try:
            while True:
                data = os.read(0, CHUNK)
                if not data:
                    break
                chan.sendall(data)
        except OSError:
            pass
        finally:
            try:
                chan.shutdown_write()
            except OSError:
                pass

    threading.Thread(target=upstream, daemon=True, name="agent-proxy-up").start()
    while True:
        data = chan.recv(CHUNK)
        if not data:
            break
        view = memoryview(data)
        while view:
            n = os.write(1, view)
            view = view[n:]
    return 0


@cli.command("agent-proxy")
@click.argument("instance")
@click.argument("host")
@click.argument("port", type=click.IntRange(1, 65535))
def agent_proxy(instance: str, host: str, port: int) -> None:
    """Pipe stdin/stdout to HOST:PORT of INSTANCE's lab through its grader agent (an ssh
    ProxyCommand: -o ProxyCommand='labkit agent-proxy INSTANCE %h %p')."""
    ctx = _ctx()
    try:
        state = ctx.store.load(instance)
        ground = ctx.provider(state.provider).ground(state, "agent")
    except LabkitError as exc:
        click.echo(f"labkit agent-proxy: {exc}", err=True)
        raise SystemExit(1) from None
    try:
        opener = getattr(ground, "open_relay", None)
        if opener is None:
            click.echo(f"labkit agent-proxy: the {state.provider} provider's grader ground has no relay; "
                       "use ssh to the nodes directly.", err=True)
            raise SystemExit(1)
        try:
            chan = opener(host, port)
        except LabkitError as exc:
            click.echo(f"labkit agent-proxy: {exc}", err=True)
            raise SystemExit(1) from None
        try:
            code = _pipe(chan)
        except (OSError, EOFError) as exc:
            click.echo(f"labkit agent-proxy: the connection to {host}:{port} failed ({exc}).", err=True)
            code = 1
        finally:
            chan.close()
    finally:
        ground.close()
    sys.stdout.flush()
    raise SystemExit(code)
