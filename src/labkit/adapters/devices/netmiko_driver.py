"""Drive a network device through its CLI with netmiko: push a config set, read a ``show``.

Platforms are netmiko device types (``cisco_ios``, ``vyos``, ``juniper_junos``...; with
``transport: telnet`` the ``<type>_telnet`` class) plus labkit's alias ``frr``: FRR's ``vtysh``
as the device's CLI (the login shell of the device user, see the netns provider). netmiko has no
FRR device type; :class:`FrrVtyshSSH` is ``cisco_ios``'s class with what vtysh differs in:

- vtysh starts in privileged mode (``r-hq#``), has no ``enable`` password, and its
  ``configure terminal`` / ``end`` and prompts (``r-hq(config-if)#``) are IOS's, so the IOS
  prompt and config-mode handling fit as they are;
- ``terminal length 0`` exists (paging off) but ``terminal width`` does not: the session
  preparation sends the former only;
- saving is ``write memory`` (integrated configuration, ``/etc/frr/frr.conf``); no confirmation;
- errors are lines starting with ``%`` (``% Unknown command``, ``% Command incomplete``,
  ``% Ambiguous command``...): every config set is pushed with that error pattern, and the first
  failing line stops the push with a message naming it.

The connection's socket comes from the provider (``device_socket``): on netns it is opened
inside the vantage namespace of the device's LAN, so netmiko never connects from labkit's host.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from netmiko import BaseConnection, ConnectHandler
from netmiko.cisco.cisco_ios import CiscoIosSSH, CiscoIosTelnet
from netmiko.exceptions import ConfigInvalidException, NetmikoAuthenticationException, NetmikoTimeoutException

from labkit.errors import ProviderError, UserError
from labkit.models.device import DeviceEndpoint

# a CLI error line (IOS, vtysh, VyOS and most others start theirs with "%" or "Invalid")
ERROR_PATTERN = r"^\s*% .*|^\s*%[A-Z].*|^Invalid .*|^\s*\^\s*$"
READ_TIMEOUT = 30.0
MAX_LINES = 2000  # a config set longer than this is a lab bug


class _Vtysh:
    """What FRR's vtysh differs in from IOS (see the module's docstring)."""

    def session_preparation(self) -> None:
        self._test_channel_read(pattern=r"[>#]")  # type: ignore[attr-defined]
        self.set_base_prompt()  # type: ignore[attr-defined]
        self.disable_paging(command="terminal length 0")  # type: ignore[attr-defined]

    def check_enable_mode(self, check_string: str = "#") -> bool:
        return True

    def enable(self, *args: Any, **kwargs: Any) -> str:
        return ""

    def save_config(self, cmd: str = "write memory", confirm: bool = False, confirm_response: str = "") -> str:
        return self._send_command_str(cmd, expect_string=r"#", read_timeout=READ_TIMEOUT)  # type: ignore[attr-defined]


class FrrVtyshSSH(_Vtysh, CiscoIosSSH):
    """FRR's vtysh over SSH (the device user's login shell)."""


class FrrVtyshTelnet(_Vtysh, CiscoIosTelnet):
    """FRR's vtysh on a telnet console."""


def _normalise(lines: Iterable[str]) -> list[str]:
    """The config set's lines without blank and comment (``!``) lines; indentation kept."""
    out = [ln.rstrip() for ln in lines if ln.strip() and not ln.lstrip().startswith("!")]
    if len(out) > MAX_LINES:
        raise UserError(f"the config set has {len(out)} lines; at most {MAX_LINES}: split it.")
    return out


def connect(endpoint: DeviceEndpoint, sock: Any = None, *, timeout: float = 20.0) -> BaseConnection:
    """An open netmiko session to ``endpoint`` (over ``sock`` when given)."""
    kwargs: dict[str, Any] = {
        "host": endpoint.host, "port": endpoint.port, "username": endpoint.username or "",
        "password": endpoint.password or "", "conn_timeout": timeout, "auth_timeout": timeout,
        "banner_timeout": timeout, "read_timeout_override": None, "fast_cli": False,
    }
    if endpoint.transport == "ssh":
        kwargs.update(use_keys=bool(endpoint.key_file), key_file=endpoint.key_file, allow_agent=False,
                      ssh_config_file=None, system_host_keys=False, alt_host_keys=False, ssh_strict=False)
        if sock is not None:
            kwargs["sock"] = sock
    try:
        if endpoint.platform == "frr":
            # netmiko picks the protocol from device_type ("..._telnet"), not from the class
            if endpoint.transport == "ssh":
                return FrrVtyshSSH(device_type="cisco_ios", **kwargs)
            return FrrVtyshTelnet(device_type="cisco_ios_telnet", **kwargs)
        device_type = endpoint.platform + ("_telnet" if endpoint.transport == "telnet" else "")
        return ConnectHandler(device_type=device_type, **kwargs)
    except ValueError as exc:  # netmiko: unsupported device type
        raise UserError(f"device {endpoint.node!r}: platform {endpoint.platform!r} over "
                        f"{endpoint.transport} is not a netmiko device type ({str(exc).splitlines()[0]}); "
                        "use one of netmiko's device types or 'frr'.") from None
    except NetmikoAuthenticationException as exc:
        raise ProviderError(f"device {endpoint.label()} refused the login as {endpoint.username!r}: "
                            f"{str(exc).splitlines()[0]}; check the device user and its key.") from None
    except (NetmikoTimeoutException, OSError, EOFError) as exc:
        raise ProviderError(f"cannot open the CLI of device {endpoint.label()}: "
                            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}.") from None


def has_commit(session: BaseConnection) -> bool:
    """Whether the device has a candidate configuration to commit (its netmiko class has a
    ``commit``; IOS-like devices and vtysh apply each line at once)."""
    return type(session).commit is not BaseConnection.commit


def push_config(endpoint: DeviceEndpoint, lines: Sequence[str], *, sock: Any = None, save: bool = True,
                conn: BaseConnection | None = None) -> str:
    """Enter config mode, send ``lines`` one by one (each echoed and checked for an error line),
    commit where the device has a candidate configuration, leave config mode and save. Returns
    the session's output. A line the device rejects stops the push: :class:`ProviderError`
    naming the line and the device's answer."""
    cmds = _normalise(lines)
    own = conn is None
    session = conn or connect(endpoint, sock)
    try:
        commits = has_commit(session)
        try:
            out = session.send_config_set(cmds, error_pattern=ERROR_PATTERN, read_timeout=READ_TIMEOUT,
                                          strip_prompt=False, strip_command=False, exit_config_mode=not commits)
        except ConfigInvalidException as exc:
            text = str(exc)
            m = re.match(r"Invalid input detected at command: (.*), matched error: (.*)", text, re.S)
            line, answer = (m.group(1), m.group(2).strip()) if m else ("?", text)
            try:
                session.exit_config_mode()
            except Exception:  # noqa: BLE001 - the session is closed below anyway
                pass
            raise ProviderError(f"device {endpoint.node!r} rejected the config line {line.strip()!r}: "
                                f"{answer!r}; fix that line of the config set (nothing after it was sent).") \
                from None
        if commits:  # candidate-configuration devices (VyOS, Junos, IOS XR...): commit, then leave
            try:
                out += session.commit()
            except ValueError as exc:
                raise ProviderError(f"device {endpoint.node!r} refused to commit the config set: "
                                    f"{str(exc).strip().splitlines()[-1]}; fix the config set.") from None
            out += session.exit_config_mode()
        if save:
            try:
                out += session.save_config()
            except NotImplementedError:  # the device keeps what is committed (Junos): nothing to save
                pass
            except ValueError as exc:
                raise ProviderError(f"device {endpoint.node!r} could not save its configuration: "
                                    f"{str(exc).strip().splitlines()[-1]}.") from None
        return out
    except (NetmikoTimeoutException, OSError, EOFError) as exc:
        raise ProviderError(f"the CLI of device {endpoint.label()} stopped answering: {exc}.") from None
    finally:
        if own:
            session.disconnect()


def show(endpoint: DeviceEndpoint, command: str, *, sock: Any = None, conn: BaseConnection | None = None) -> str:
    """The device's answer to one (exec-mode) command."""
    own = conn is None
    session = conn or connect(endpoint, sock)
    try:
        return str(session.send_command(command, read_timeout=READ_TIMEOUT))
    except (NetmikoTimeoutException, OSError, EOFError) as exc:
        raise ProviderError(f"the CLI of device {endpoint.label()} stopped answering: {exc}.") from None
    finally:
        if own:
            session.disconnect()
