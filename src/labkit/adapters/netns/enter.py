"""Enter a lab node, confined: the one way anything gets into a node after it is made.

Run by the HOST's Python (``sys.executable -I enter.py …``), never by a binary of the node:
the candidate is root in the node and can replace any file there, so whatever confines them
must be loaded from the host before the first instruction of the node's runs. The steps,
all on the host's code:

1. open the node's namespace files and ``setns`` into its network, UTS, IPC, PID and mount
   namespaces (the mount namespace last: after it, the filesystem is the node's own root);
2. load a seccomp filter (no mount, no setns/unshare or namespace flags to clone, no ptrace,
   no module loading, no kexec/reboot, no bpf/perf/keyctl/userfaultfd, no
   open_by_handle_at, no TIOCSTI), drop every capability from the bounding, ambient and
   inheritable sets but those a lab needs (network administration, binding ports, dropping
   privileges, file ownership) — still outside the node's PID namespace, so the node never
   sees an unconfined process it could tamper with;
3. fork (the PID namespace applies to children): the child ``execve``s the command of the
   node, the parent relays signals and the exit status.

Everything started from the command inherits the filter and the bounding set: a daemon the
candidate restarts is as confined as their shell. With ``--init`` the helper is the node's
PID 1 being born: it mounts the node's /proc, makes /proc/sys read-only but for the node's
own /proc/sys/net, hides /proc entries that talk to the host kernel, then confines itself
and becomes ``tini``.

This file imports only the standard library, and pyseccomp (a ctypes binding of libseccomp)
when it has to compile the filter itself; nothing of labkit. It runs with ``python -I -S``
when given ``--filter FILE``, the filter compiled once per instance by the provider (raw
BPF, in the instance's private run directory): Python's start-up without ``site`` and
without libseccomp is most of what an entry costs. Everything is loaded before setns.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyseccomp

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWTIME = 0x00000080
NAMESPACE_FLAGS = (CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER,
                   CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWTIME)
NS_OPTIONS = {"--net": CLONE_NEWNET, "--uts": CLONE_NEWUTS, "--ipc": CLONE_NEWIPC,
              "--pid": CLONE_NEWPID, "--mnt": CLONE_NEWNS}
NS_ORDER = ("--net", "--uts", "--ipc", "--pid", "--mnt")  # mount last: it changes our root

# Capabilities a node keeps (linux/capability.h numbers). Everything else leaves the bounding
# set: mknod, sys_module, sys_rawio, dac_read_search (open_by_handle_at),
# sys_boot, sys_time, syslog, bpf, perfmon, linux_immutable, mac_*, audit_control,
# sys_pacct, sys_nice, sys_tty_config, lease, wake_alarm, block_suspend, audit_read,
# checkpoint_restore, ipc_owner.
# sys_admin STAYS: FRR's zebra and ospfd refuse to start without it in their permitted set
# ("privs_init: initial cap_set_proc failed"), and Samba keeps NT ACLs in security.* extended
# attributes. What it would open towards the host is closed otherwise: the seccomp filter
# refuses every mount call (old and new API), setns, unshare and namespace flags to clone,
# bpf, perf, keyctl, quotactl, swap, fanotify, handle lookups and page poisoning; /proc/sys
# (but the node's own net/) and /sys are read-only mounts that cannot be remounted; the
# node's /dev has no disk and mknod is refused; no file of the host is below the node's root.
# sys_ptrace STAYS too: init scripts (start-stop-daemon --exec) read /proc/PID/exe of daemons
# that run as another user, which needs it. ptrace, process_vm_* and pidfd_getfd are refused
# by the filter, and the node's /proc shows the node's processes only, all confined: the
# entering process confines itself BEFORE it forks into the node's PID namespace, so no
# unconfined process is ever visible there (but the init being born, before any candidate).
KEEP_CAPS = {
    0: "chown", 1: "dac_override", 3: "fowner", 4: "fsetid", 5: "kill", 6: "setgid", 7: "setuid",
    8: "setpcap", 10: "net_bind_service", 11: "net_broadcast", 12: "net_admin", 13: "net_raw",
    14: "ipc_lock", 18: "sys_chroot", 19: "sys_ptrace", 21: "sys_admin", 24: "sys_resource", 29: "audit_write",
    31: "setfcap",
}
DENIED_SYSCALLS = (
    "mount", "umount", "umount2", "pivot_root", "move_mount", "open_tree", "fsopen", "fsconfig",
    "fsmount", "fspick", "mount_setattr", "setns", "unshare", "ptrace", "process_vm_readv",
    "process_vm_writev", "kcmp", "init_module", "finit_module", "delete_module", "kexec_load",
    "kexec_file_load", "reboot", "swapon", "swapoff", "open_by_handle_at", "name_to_handle_at",
    "bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key", "acct",
    "quotactl", "quotactl_fd", "syslog", "settimeofday", "clock_settime", "iopl", "ioperm",
    "lookup_dcookie", "nfsservctl", "vhangup", "uselib", "_sysctl", "io_uring_setup",
    "io_uring_enter", "io_uring_register", "fanotify_init", "pidfd_getfd",
)
TIOCSTI = 0x5412  # push bytes into a terminal's input: into the terminal of whoever entered
TIOCLINUX = 0x541C
MADV_HWPOISON, MADV_SOFT_OFFLINE = 100, 101  # take a physical page out of the host's service
PR_CAPBSET_DROP = 24
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND = 32, 4096
# /proc entries that reach the host's kernel: hidden under an empty read-only file or dir
PROC_MASKED_FILES = ("kcore", "keys", "timer_list", "sched_debug", "kmsg", "latency_stats",
                     "timer_stats", "vmallocinfo", "kallsyms", "config.gz")
PROC_MASKED_DIRS = ("acpi", "scsi", "asound", "bus", "fs", "irq", "driver", "tty/driver")
PROC_READ_ONLY = ("sys", "sysrq-trigger")

PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2
BPF_INSTRUCTION_SIZE = 8  # struct sock_filter
_libc = ctypes.CDLL("libc.so.6", use_errno=True)  # glibc; find_library would spawn ldconfig
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


_libc.capset.argtypes = [ctypes.POINTER(_CapHeader), ctypes.POINTER(_CapData)]


class EnterError(Exception):
    pass


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise EnterError(f"{what}: {os.strerror(err)}")


def _mount(source: str, target: str, fstype: str | None, flags: int) -> None:
    _check(_libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None, flags, None),
           f"mount {target}")


def own_caps(field: str = "CapPrm") -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1], 16)
    raise EnterError(f"no {field} in /proc/self/status")


def keep_mask() -> int:
    """The capabilities a node keeps: ``KEEP_CAPS`` that the host's labkit has at all (a
    container or sandbox may have fewer, e.g. no sys_resource)."""
    return sum(1 << c for c in KEEP_CAPS) & own_caps("CapBnd") & own_caps("CapPrm")


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def seccomp_filter() -> pyseccomp.SyscallFilter:
    """Allow everything but what reaches outside the node; refused calls fail with EPERM
    (clone3 with ENOSYS, so that libc falls back to clone, whose flags the filter can read)."""
    import pyseccomp as seccomp

    f = seccomp.SyscallFilter(seccomp.ALLOW)
    for name in DENIED_SYSCALLS:
        try:
            f.add_rule(seccomp.ERRNO(errno.EPERM), name)
        except (OSError, ValueError, RuntimeError):
            pass  # not a system call on this architecture
    f.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    for flag in NAMESPACE_FLAGS:
        f.add_rule(seccomp.ERRNO(errno.EPERM), "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
    for request in (TIOCSTI, TIOCLINUX):
        f.add_rule(seccomp.ERRNO(errno.EPERM), "ioctl", seccomp.Arg(1, seccomp.MASKED_EQ, 0xFFFFFFFF, request))
    for advice in (MADV_HWPOISON, MADV_SOFT_OFFLINE):
        f.add_rule(seccomp.ERRNO(errno.EPERM), "madvise", seccomp.Arg(2, seccomp.EQ, advice))
    return f


def cap_last_cap() -> int:
    with open("/proc/sys/kernel/cap_last_cap") as fh:
        return int(fh.read())


def write_filter(path: str) -> None:
    """Compile the filter once (libseccomp) into raw BPF at ``path``, for ``--filter``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        seccomp_filter().export_bpf(fh)


def load_filter(program: bytes) -> None:
    """Install a raw BPF program (as ``write_filter`` made it) for this thread and its heirs."""
    if not program or len(program) % BPF_INSTRUCTION_SIZE:
        raise EnterError("the seccomp filter file is empty or truncated")
    buf = ctypes.create_string_buffer(program, len(program))
    prog = _SockFprog(len(program) // BPF_INSTRUCTION_SIZE, ctypes.cast(buf, ctypes.c_void_p))
    _check(_libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(prog), 0, 0), "load the seccomp filter")


def confine(keep: int, last: int, program: bytes | None = None) -> None:
    """Seccomp first (loading it without no_new_privs needs CAP_SYS_ADMIN, still ours), then
    the capability sets. The next execve gives the command only ``keep``. ``keep``, ``last``
    and ``program`` are read before entering the node: after setns, /proc is the node's, where
    this process (outside the node's PID namespace) has no /proc/self."""
    if program is None:
        seccomp_filter().load()
    else:
        load_filter(program)
    for cap in range(last + 1):
        if not keep & (1 << cap):
            _check(_libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), f"drop capability {cap}")
    _check(_libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "clear ambient capabilities")
    data = (_CapData * 2)(_CapData(keep & 0xFFFFFFFF, keep & 0xFFFFFFFF, 0),
                          _CapData(keep >> 32, keep >> 32, 0))
    _check(_libc.capset(ctypes.byref(_CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)), data), "set capabilities")


def mount_node_proc() -> None:
    """As the node's PID 1: its own /proc, with what reaches the host's kernel read-only
    (/proc/sys but the node's /proc/sys/net, sysrq-trigger) or hidden (kcore, keys, …)."""
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    for entry in PROC_READ_ONLY:
        path = f"/proc/{entry}"
        if not os.path.exists(path):  # a kernel without magic SysRq has no sysrq-trigger
            continue
        _mount(path, path, None, MS_BIND)
        _mount(path, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    net = "/proc/sys/net"  # per network namespace: the node's own (ip_forward, rp_filter)
    _mount(net, net, None, MS_BIND)
    _mount(net, net, None, MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    for entry in PROC_MASKED_FILES:
        if os.path.exists(f"/proc/{entry}"):
            _mount("/dev/null", f"/proc/{entry}", None, MS_BIND)
            _mount("/dev/null", f"/proc/{entry}", None, MS_BIND | MS_REMOUNT | MS_RDONLY)
    for entry in PROC_MASKED_DIRS:
        if os.path.isdir(f"/proc/{entry}"):
            _mount("tmpfs", f"/proc/{entry}", "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)


def _enter_namespaces(paths: dict[str, str]) -> None:
    for option in NS_ORDER:
        if option not in paths:
            continue
        fd = os.open(paths[option], os.O_RDONLY | os.O_CLOEXEC)
        try:
            _check(_libc.setns(fd, NS_OPTIONS[option]), f"enter {option[2:]} namespace {paths[option]}")
        finally:
            os.close(fd)


def _relay(child: int) -> int:
    """Wait for the child like nsenter does: signals meant for the command reach it, the
    exit status is the command's own."""
    for sig in (signal.SIGINT, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_IGN)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda s, _f: os.kill(child, s))
    while True:
        try:
            _, status = os.waitpid(child, 0)
            break
        except InterruptedError:
            continue
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def parse(argv: list[str]) -> tuple[dict[str, str], str, bool, list[str]]:
    if "--" not in argv:
        raise EnterError("usage: enter.py [--init] [--filter BPF] --net F --uts F --ipc F [--pid F] --mnt F "
                         "[--wd DIR] -- CMD…")
    sep = argv.index("--")
    opts, cmd = argv[:sep], argv[sep + 1:]
    paths: dict[str, str] = {}
    wd, init = "/", False
    it = iter(opts)
    for opt in it:
        if opt == "--init":
            init = True
        elif opt in NS_OPTIONS or opt in ("--wd", "--filter"):
            value = next(it, None)
            if value is None or not value.startswith("/"):
                raise EnterError(f"{opt} needs an absolute path")
            if opt == "--wd":
                wd = value
            elif opt == "--filter":
                paths["filter"] = value
            else:
                paths[opt] = value
        else:
            raise EnterError(f"unknown option {opt!r}")
    if not cmd or "--mnt" not in paths:
        raise EnterError("a mount namespace (--mnt) and a command are needed")
    return paths, wd, init, cmd


def main(argv: list[str]) -> int:
    try:
        paths, wd, init, cmd = parse(argv)
        keep, last = keep_mask(), cap_last_cap()
        program = None
        if "filter" in paths:
            with open(paths.pop("filter"), "rb") as fh:
                program = fh.read()
        _enter_namespaces(paths)
        if init:
            mount_node_proc()
            confine(keep, last, program)
            os.execv(cmd[0], cmd)
        confine(keep, last, program)
        child = os.fork()
        if child:
            return _relay(child)
        try:
            os.chdir(wd)
        except OSError:
            os.chdir("/")
        os.execvp(cmd[0], cmd)
    except EnterError as exc:
        print(f"labkit enter: {exc}", file=sys.stderr)
        return 125
    except OSError as exc:  # the command itself cannot run (not found, not executable)
        print(f"labkit enter: {cmd[0] if 'cmd' in locals() else ''}: {exc.strerror}", file=sys.stderr)
        return 127 if exc.errno == errno.ENOENT else 126
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
