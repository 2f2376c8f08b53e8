# Ansible connection plugin of labkit: run tasks inside a lab node from the host.
# Modelled on ansible's local plugin and community.general's chroot/lxc plugins.
from __future__ import annotations

DOCUMENTATION = """
    name: labkit_netns
    short_description: run tasks inside a labkit node (network + mount + UTS namespaces)
    description:
        - Runs every command as
          C(python -I enter.py --net NETNS --uts UTS --ipc IPC --pid PID --mnt MNT -- /bin/sh -c CMD)
          on the controller (labkit's confined way into a node, loaded from the host), so the
          command sees the node's interfaces, files, hostname and processes, with the node's
          reduced capabilities and seccomp filter, so a binary the candidate replaced in the node
          never runs with more rights than the candidate has.
        - Files are streamed through the same entry with C(cat), so they land in the node's own
          root filesystem and never in the host's.
        - The plugin refuses to run when a path is missing, is not a namespace file of the
          right kind, or names one of the controller's own namespaces; it never falls back to
          running on the host.
    author: labkit
    options:
        netns:
            description: Absolute path of the node's network namespace file (/run/netns/NAME).
            type: str
            vars:
                - name: labkit_netns
        mnt:
            description: Absolute path of the file the node's mount namespace is bound to.
            type: str
            vars:
                - name: labkit_mnt
        uts:
            description: Absolute path of the file the node's UTS namespace is bound to.
            type: str
            vars:
                - name: labkit_uts
        ipc:
            description: Absolute path of the file the node's IPC namespace is bound to.
            type: str
            vars:
                - name: labkit_ipc
        pid:
            description: Absolute path of the file the node's PID namespace is bound to.
            type: str
            vars:
                - name: labkit_pid
    extends_documentation_fragment:
        - connection_pipelining
    notes:
        - Needs root on the controller. The remote user is always root.
"""

import fcntl
import os
import shlex
import subprocess
import sys
import typing as t

from ansible.errors import AnsibleConnectionFailure, AnsibleError, AnsibleFileNotFound
from ansible.module_utils.common.text.converters import to_bytes, to_text
from ansible.plugins.connection import BUFSIZE, ConnectionBase
from ansible.utils.display import Display

display = Display()

# ioctl(2) on a namespace file descriptor: which kind of namespace is it (linux/nsfs.h).
NS_GET_NSTYPE = 0xB703
CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWNET = 0x40000000
CLONE_NEWPID = 0x20000000

# option -> (enter.py flag, expected namespace kind, /proc/self/ns entry)
_NAMESPACES: dict[str, tuple[str, int, str]] = {
    "netns": ("--net", CLONE_NEWNET, "net"),
    "uts": ("--uts", CLONE_NEWUTS, "uts"),
    "ipc": ("--ipc", CLONE_NEWIPC, "ipc"),
    "pid": ("--pid", CLONE_NEWPID, "pid"),
    "mnt": ("--mnt", CLONE_NEWNS, "mnt"),
}


def _enter_helper() -> list[str]:
    """labkit's node entry (``labkit.adapters.netns.enter``) on this controller's Python."""
    from labkit.adapters.netns import enter

    return [sys.executable, "-I", os.path.realpath(enter.__file__)]

NODE_SHELL = "/bin/sh"
# Commands in a node get a small, predictable environment, not the controller's (whose PATH
# may point into a virtualenv the node does not have).
NODE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "USER": "root",
    "LOGNAME": "root",
    "SHELL": NODE_SHELL,
    "LANG": "C.UTF-8",
    "TERM": "dumb",
}


def check_namespace_file(option: str, path: t.Any) -> str:
    """Return ``path`` if it is a usable namespace file for ``option``; raise otherwise.

    Usable: a non-empty absolute path to a namespace file of the right kind that is not one
    of the controller's own namespaces.
    """
    flag, kind, proc_name = _NAMESPACES[option]
    var = f"labkit_{option}"
    if not isinstance(path, str) or not path:
        raise AnsibleConnectionFailure(
            f"labkit_netns: host variable {var} is not set; refusing to run (this connection "
            "never falls back to the host). Is the inventory the one labkit generated?"
        )
    if not os.path.isabs(path) or "\x00" in path:
        raise AnsibleConnectionFailure(f"labkit_netns: {var}={path!r} is not an absolute path; refusing to run.")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise AnsibleConnectionFailure(
            f"labkit_netns: cannot open {var}={path!r} ({exc.strerror}); is the lab instance up?"
        ) from exc
    try:
        try:
            got = fcntl.ioctl(fd, NS_GET_NSTYPE)
        except OSError as exc:
            raise AnsibleConnectionFailure(
                f"labkit_netns: {var}={path!r} is not a namespace file (the node's namespace is gone "
                "or was never bound there); refusing to run."
            ) from exc
        if got != kind:
            raise AnsibleConnectionFailure(
                f"labkit_netns: {var}={path!r} is a namespace of another kind than {flag[2:]}; refusing to run."
            )
        st = os.fstat(fd)
    finally:
        os.close(fd)
    own = os.stat(f"/proc/self/ns/{proc_name}")
    if (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino):
        raise AnsibleConnectionFailure(
            f"labkit_netns: {var}={path!r} is the controller's own {proc_name} namespace; refusing to run "
            "a node task on the host."
        )
    return path


class Connection(ConnectionBase):
    """Run commands and copy files inside a labkit node through nsenter."""

    transport = "labkit_netns"
    has_pipelining = True
    has_tty = False
    default_user = "root"

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self._prefix: list[str] | None = None

    # -- connection ---------------------------------------------------------------------------
    def _node_prefix(self) -> list[str]:
        """``python -I enter.py --net .. --uts .. --ipc .. --pid .. --mnt .. --``, built only
        from checked paths."""
        argv = _enter_helper()
        for option, (flag, _kind, _proc) in _NAMESPACES.items():
            path = check_namespace_file(option, self.get_option(option))
            argv += [flag, path]
        # the instance's compiled filter, next to its namespace files (else enter.py compiles it)
        bpf = os.path.join(os.path.dirname(self.get_option("mnt")), "seccomp.bpf")
        if os.path.isfile(bpf):
            argv[3:3] = ["--filter", bpf]
            argv.insert(2, "-S")
        argv.append("--")
        return argv

    def _connect(self) -> Connection:
        if os.geteuid() != 0:
            raise AnsibleConnectionFailure("labkit_netns: entering a node needs root on the controller.")
        self._play_context.remote_user = self.default_user
        if not self.connected:
            self._prefix = self._node_prefix()
            display.vvv(f"LABKIT NODE {' '.join(self._prefix)}", host=self._play_context.remote_addr)
            self._connected = True
        return self

    def _argv(self, cmd: str) -> list[str]:
        # Re-check every time: a node torn down between two tasks must not turn into the host.
        prefix = self._node_prefix()
        if not prefix or prefix[-1] != "--" or len(prefix) not in (4 + 2 * len(_NAMESPACES), 7 + 2 * len(_NAMESPACES)):
            raise AnsibleConnectionFailure("labkit_netns: internal error building the node entry command.")
        self._prefix = prefix
        return [*prefix, NODE_SHELL, "-c", cmd]

    def _popen(self, cmd: str, stdin: t.Any = subprocess.PIPE) -> subprocess.Popen[bytes]:
        argv = self._argv(cmd)
        display.vvv(f"EXEC {argv}", host=self._play_context.remote_addr)
        return subprocess.Popen(
            [to_bytes(a, errors="surrogate_or_strict") for a in argv],
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(NODE_ENV),
            cwd="/",
            close_fds=True,
        )

    def exec_command(self, cmd: str, in_data: bytes | None = None, sudoable: bool = True) -> tuple[int, bytes, bytes]:
        super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
        p = self._popen(to_text(cmd, errors="surrogate_or_strict"))
        stdout, stderr = p.communicate(in_data)
        return p.returncode, stdout, stderr

    # -- files --------------------------------------------------------------------------------
    @staticmethod
    def _node_path(path: str) -> str:
        """Absolute, normalised path inside the node (nsenter --mount starts in /)."""
        path = to_text(path, errors="surrogate_or_strict")
        if not path.startswith("/"):
            path = "/" + path
        return os.path.normpath(path)

    def put_file(self, in_path: str, out_path: str) -> None:
        super().put_file(in_path, out_path)
        out_path = self._node_path(out_path)
        display.vvv(f"PUT {in_path} TO {out_path}", host=self._play_context.remote_addr)
        local = to_bytes(in_path, errors="surrogate_or_strict")
        if not os.path.isfile(local):
            raise AnsibleFileNotFound(f"file or module does not exist: {in_path}")
        with open(local, "rb") as in_file:
            p = self._popen(f"cat > {shlex.quote(out_path)}", stdin=in_file)
            stdout, stderr = p.communicate()
        if p.returncode != 0:
            raise AnsibleError(
                f"labkit_netns: failed to put {in_path} to {out_path} in the node: "
                f"{to_text(stderr).strip() or to_text(stdout).strip()}"
            )

    def fetch_file(self, in_path: str, out_path: str) -> None:
        super().fetch_file(in_path, out_path)
        in_path = self._node_path(in_path)
        display.vvv(f"FETCH {in_path} TO {out_path}", host=self._play_context.remote_addr)
        p = self._popen(f"cat {shlex.quote(in_path)}", stdin=subprocess.DEVNULL)
        assert p.stdout is not None and p.stderr is not None
        try:
            with open(to_bytes(out_path, errors="surrogate_or_strict"), "wb") as out_file:
                while chunk := p.stdout.read(BUFSIZE):
                    out_file.write(chunk)
        except OSError as exc:
            p.kill()
            p.wait()
            raise AnsibleError(f"labkit_netns: failed to write {out_path}: {exc.strerror}") from exc
        stderr = p.stderr.read()
        p.wait()
        if p.returncode != 0:
            raise AnsibleError(
                f"labkit_netns: failed to fetch {in_path} from the node: {to_text(stderr).strip()}"
            )

    def reset(self) -> None:
        self._prefix = None
        self._connected = False

    def close(self) -> None:
        self._prefix = None
        self._connected = False
