"""A lab node's serial console on Proxmox, on stdin/stdout: what ``console_argv`` runs, so the
bastion and the portal's terminal work on Proxmox as on netns.

    python -m labkit.adapters.proxmox.console --instance NAME --node NODE

How (the protocol of Proxmox's xterm.js console):
1. ``POST /nodes/{n}/qemu/{vmid}/termproxy {serial: serial0}`` -> ``{port, ticket, user}``
   (privilege VM.Console);
2. a websocket (subprotocol ``binary``) to ``/nodes/{n}/qemu/{vmid}/vncwebsocket?port=&vncticket=``
   with the API token's header; the ticket is valid for one connection, a few seconds;
3. first text frame ``<user>:<ticket>\\n``; the server answers ``OK``;
4. keystrokes go as text frames ``0:<byte length>:<data>``, window sizes as ``1:<cols>:<rows>:``,
   a keep-alive as ``2``; everything the server sends is the terminal's output.
The VM is found from the names alone (``naming.vm_name``), as ``down`` finds it. A container
node (LXC) has the same protocol on ``/nodes/{n}/lxc/{vmid}/termproxy`` (no ``serial``: its
console is the container's tty) and ``.../lxc/{vmid}/vncwebsocket``; privilege VM.Console too.
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import os
import shutil
import signal
import ssl
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any, BinaryIO, Protocol

from labkit.adapters.proxmox.naming import vm_name
from labkit.adapters.proxmox.settings import ProxmoxSettings
from labkit.errors import LabkitError, ProviderError, UserError
from labkit.models.instance import InstanceState

SERIAL = "serial0"
PING_SECONDS = 30.0
DRAIN_QUIET_S = 1.0  # after stdin ends: close once the console has been quiet this long
DRAIN_MAX_S = 10.0


class Api(Protocol):
    def call(self, method: str, path: str, /, **params: Any) -> Any: ...


def console_argv(provider: Any, state: InstanceState, node: str) -> list[str]:
    """What the bastion/portal runs for ``node``'s console: this module, with labkit's Python.
    The bastion starts it with PATH alone in its environment, so the argv names the
    configuration file (``proxmox.toml`` of the provider's home, or ``LABKIT_PROXMOX_CONFIG``);
    the token secret then comes from its ``token_secret_file`` (never from the command line,
    which every local user can read)."""
    from labkit.adapters.proxmox.settings import config_path

    return [sys.executable, "-m", "labkit.adapters.proxmox.console", "--instance", state.name, "--node", node,
            "--config", str(config_path(provider.settings.home))]


def find_vm(api: Api, instance: str, node: str) -> tuple[str, int, str]:
    """(Proxmox node, VMID, ``qemu`` or ``lxc``) of lab node ``node`` of ``instance``."""
    name = vm_name(instance, node)
    for r in api.call("GET", "/cluster/resources", type="vm") or []:
        if r.get("name") == name and not r.get("template"):
            return str(r["node"]), int(r["vmid"]), "lxc" if r.get("type") == "lxc" else "qemu"
    raise UserError(f"instance {instance} has no VM for node {node} on Proxmox ({name}); check the names with "
                    f"'labkit status {instance}'.")


def frame_input(data: str) -> str:
    return f"0:{len(data.encode())}:{data}"


def frame_resize(cols: int, rows: int) -> str:
    return f"1:{cols}:{rows}:"


def _ssl_context(settings: ProxmoxSettings) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=settings.ca_file) if settings.ca_file else ssl.create_default_context()
    if not settings.ca_file and not settings.verify_tls:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


@contextlib.contextmanager
def open_console(api: Api, settings: ProxmoxSettings, pve_node: str, vmid: int,
                 kind: str = "qemu") -> Iterator[Any]:
    """A logged-in websocket on the VM's serial console, or a container's console (``kind``
    lxc), with the ``websockets`` sync client."""
    from websockets.sync.client import connect
    from websockets.typing import Subprotocol

    base = f"/nodes/{pve_node}/{kind}/{vmid}"
    term = api.call("POST", f"{base}/termproxy", **({} if kind == "lxc" else {"serial": SERIAL}))
    query = urllib.parse.urlencode({"port": term["port"], "vncticket": term["ticket"]})
    host, port = settings.host_port
    url = f"wss://{host}:{port}/api2/json{base}/vncwebsocket?{query}"
    auth = f"PVEAPIToken={settings.token_id}={settings.token_secret}"
    from websockets.exceptions import WebSocketException

    what = f"{'CT' if kind == 'lxc' else 'VM'} {vmid}"
    try:
        conn = connect(url, ssl=_ssl_context(settings), additional_headers={"Authorization": auth},
                       subprotocols=[Subprotocol("binary")], open_timeout=settings.api_timeout, max_size=2**20)
    except WebSocketException as exc:
        raise ProviderError(f"Proxmox refused the console websocket of {what} ({exc}); retry, and check that "
                            f"the token holds VM.Console on /vms/{vmid}.") from None
    with conn as ws:
        ws.send(f"{term['user']}:{term['ticket']}\n")
        hello = ws.recv(timeout=settings.api_timeout)
        if hello not in (b"OK", "OK"):
            raise ProviderError(f"the console of {what} refused the login ({hello!r}); "
                                "retry, or check the VM's serial0 in its configuration.")
        yield ws


def bridge(ws: Any, stdin: BinaryIO, stdout: BinaryIO, size: tuple[int, int] | None = None) -> None:
    """Copy stdin to the console and the console to stdout until either side ends."""
    from websockets.exceptions import ConnectionClosed

    done = threading.Event()
    lock = threading.Lock()
    last_out = [time.monotonic()]

    def send(text: str) -> None:
        with lock:
            ws.send(text)

    def pump_out() -> None:
        try:
            for msg in ws:
                stdout.write(msg if isinstance(msg, bytes) else msg.encode())
                stdout.flush()
                last_out[0] = time.monotonic()
        except (ConnectionClosed, OSError):
            pass
        finally:
            done.set()

    def keepalive() -> None:
        while not done.wait(PING_SECONDS):
            try:
                send("2")
            except (ConnectionClosed, OSError):
                return

    threading.Thread(target=pump_out, daemon=True).start()
    threading.Thread(target=keepalive, daemon=True).start()
    if size:
        send(frame_resize(*size))
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    try:
        while not done.is_set():
            chunk = os.read(stdin.fileno(), 4096)
            if not chunk:
                break
            text = decoder.decode(chunk)
            if text:
                send(frame_input(text))
    except (ConnectionClosed, OSError):
        pass
    finally:
        # stdin ended (a piped command): let the console answer what was sent, until it has
        # been quiet for DRAIN_QUIET_S (at most DRAIN_MAX_S), then close
        end = time.monotonic() + DRAIN_MAX_S
        while not done.is_set() and time.monotonic() < end:
            if time.monotonic() - last_out[0] >= DRAIN_QUIET_S:
                break
            done.wait(0.1)
        ws.close()
        done.wait(5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labkit.adapters.proxmox.console",
                                     description="A lab node's serial console on Proxmox, on stdin/stdout.")
    parser.add_argument("--instance", required=True)
    parser.add_argument("--node", required=True)
    parser.add_argument("--config", help="the proxmox.toml to use (default: LABKIT_HOME's)")
    parser.add_argument("--trace", action="store_true",
                        help="print each step and its time on stderr (to see where a console hangs)")
    args = parser.parse_args(argv)
    t0 = time.monotonic()

    def trace(step: str) -> None:
        if args.trace:
            print(f"labkit console: {time.monotonic() - t0:7.3f} s {step}", file=sys.stderr, flush=True)

    from labkit.adapters.proxmox.client import PveClient
    from labkit.adapters.proxmox.settings import ENV_CONFIG, load_proxmox_settings
    from labkit.settings import load_settings

    if args.config:
        os.environ[ENV_CONFIG] = args.config
    try:
        trace("started")
        settings = load_proxmox_settings(load_settings().home)
        api = PveClient(settings)
        pve_node, vmid, kind = find_vm(api, args.instance, args.node)
        trace(f"{'CT' if kind == 'lxc' else 'VM'} {vmid} on {pve_node}")
        with open_console(api, settings, pve_node, vmid, kind) as ws:
            trace("console open")
            _run_terminal(ws)
        trace("console closed")
    except (LabkitError, OSError) as exc:
        print(f"labkit: error: {exc}", file=sys.stderr)
        return 1
    return 0


def _run_terminal(ws: Any) -> None:
    restore = None
    stdin = sys.stdin.buffer
    size = None
    if stdin.isatty():
        import termios
        import tty

        restore = termios.tcgetattr(stdin.fileno())
        tty.setraw(stdin.fileno())
        cols, rows = shutil.get_terminal_size()
        size = (cols, rows)

        def resized(*_a: Any) -> None:
            c, r = shutil.get_terminal_size()
            try:
                ws.send(frame_resize(c, r))
            except Exception:  # noqa: BLE001 - the console is closing
                pass
        signal.signal(signal.SIGWINCH, resized)
    try:
        bridge(ws, stdin, sys.stdout.buffer, size)
    finally:
        if restore is not None:
            import termios

            termios.tcsetattr(stdin.fileno(), termios.TCSADRAIN, restore)

if __name__ == "__main__":
    raise SystemExit(main())
