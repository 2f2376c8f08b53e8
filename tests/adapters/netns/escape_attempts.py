"""Escape attempts, run INSIDE a lab node by the node's python3, as a candidate would.

Not a test module of its own: tests/adapters/netns/test_escape.py feeds this file to a
candidate console (``labkit console``'s argv) and reads one line per attempt:

    ESCAPE {"id": ..., "refused": true|false, "detail": ...}

"refused" means the attempt did not get what it was after. Every attempt is harmless when it
succeeds (a control run through an unconfined entry proves that the attempts do succeed
there): it mounts read-only, opens for writing without writing, loads no valid module, and
undoes what it did. Standard library only (the node has Debian's python3, nothing else).

argv[1]: JSON with what the host knows and the node should not reach (paths, addresses).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import json
import os
import platform
import signal
import socket
import sys
import time

libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
libc.syscall.restype = ctypes.c_long
ARCH = platform.machine()
# syscall numbers that libc has no wrapper for (x86_64, aarch64); io_uring is the same on both
NR = {
    "x86_64": {"finit_module": 313, "delete_module": 176, "keyctl": 250, "bpf": 321, "open_by_handle_at": 304,
               "reboot": 169},
    "aarch64": {"finit_module": 273, "delete_module": 106, "keyctl": 219, "bpf": 280, "open_by_handle_at": 265,
                "reboot": 142},
}[ARCH]
NR_IO_URING_SETUP = 425
CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWNET = 0x00020000, 0x10000000, 0x40000000
MS_RDONLY, MS_REMOUNT = 1, 32
MNT_DETACH = 2
PTRACE_ATTACH, PTRACE_DETACH = 16, 17
KEYCTL_JOIN_SESSION_KEYRING = 1
BPF_MAP_CREATE = 0
LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2, LINUX_REBOOT_CMD_CAD_OFF = 0xFEE1DEAD, 672274793, 0
REFUSING = {errno.EPERM, errno.EACCES, errno.EROFS, errno.ENOENT, errno.ECONNREFUSED, errno.ENETUNREACH,
            errno.EHOSTUNREACH, errno.ETIMEDOUT, errno.ENOSYS}

ARGS = json.loads(sys.argv[1])
results: list[dict[str, object]] = []


def report(aid: str, refused: bool, detail: str) -> None:
    line = {"id": aid, "refused": refused, "detail": detail}
    results.append(line)
    print("ESCAPE " + json.dumps(line), flush=True)


def err() -> int:
    return ctypes.get_errno()


def call(aid: str, rc: int, *, denied: tuple[int, ...] = (errno.EPERM,), undo=None) -> None:
    """A raw call: refused when it failed with one of ``denied``; anything else (success, or
    an error past the permission check, like EINVAL for a bogus argument) means the kernel
    let the caller in."""
    if rc >= 0:
        if undo:
            undo(rc)
        report(aid, False, f"succeeded (rc {rc})")
        return
    e = err()
    report(aid, e in denied, f"{errno.errorcode.get(e, e)}")


def attempt(aid: str):
    def wrap(fn):
        try:
            fn(aid)
        except Exception as exc:  # noqa: BLE001 - an attempt that crashes is reported, not hidden
            report(aid, False, f"attempt crashed: {type(exc).__name__}: {exc}")
        return fn
    return wrap


def in_child(fn) -> tuple[int, int]:
    """Run ``fn`` (returns rc, errno) in a forked child so that a success changes nothing here."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            rc = fn()
            os.write(w, json.dumps([rc, err()]).encode())
        finally:
            os._exit(0)
    os.close(w)
    data = os.read(r, 100)
    os.close(r)
    os.waitpid(pid, 0)
    rc, e = json.loads(data or b"[-1, 0]")
    return rc, e


@attempt("mount-tmpfs")
def _(aid):
    os.makedirs("/tmp/lk-escape-mnt", exist_ok=True)
    call(aid, libc.mount(b"tmpfs", b"/tmp/lk-escape-mnt", b"tmpfs", MS_RDONLY, None),
         undo=lambda _rc: libc.umount2(b"/tmp/lk-escape-mnt", MNT_DETACH))


@attempt("umount-a-mask")
def _(aid):
    # /proc/sys is a read-only bind over the node's /proc: unmounting it would open the host
    # kernel's sysctls. (Success is undone by the node's end: it is a throwaway node.)
    call(aid, libc.umount2(b"/proc/sys", MNT_DETACH), denied=(errno.EPERM,))


@attempt("remount-sys-rw")
def _(aid):
    call(aid, libc.mount(b"sysfs", b"/sys", b"sysfs", MS_REMOUNT, None),
         undo=lambda _rc: libc.mount(b"sysfs", b"/sys", b"sysfs", MS_REMOUNT | MS_RDONLY, None))


def _mknod(aid: str, path: str, kind: int, dev: int, what: str) -> None:
    """Make a device node (and remove it): refused when mknod is not permitted."""
    try:
        os.mknod(path, 0o600 | kind, dev)
    except PermissionError as exc:
        report(aid, True, exc.strerror)
        return
    os.unlink(path)
    report(aid, False, f"{what} node was made")


@attempt("mknod-block-device")
def _(aid):
    _mknod(aid, "/tmp/lk-escape-disk", 0o060000, os.makedev(*ARGS["disk"]), "a block device")


@attempt("host-disk-mount")
def _(aid):
    """The classic: make the host's disk, mount it read-only, read labkit's home."""
    path, mnt = "/dev/lk-escape-hostdisk", "/tmp/lk-escape-hostroot"  # /tmp is nodev
    try:
        os.mknod(path, 0o600 | 0o060000, os.makedev(*ARGS["disk"]))
    except PermissionError as exc:
        report(aid, True, f"mknod: {exc.strerror}")
        return
    os.makedirs(mnt, exist_ok=True)
    try:
        for fstype in (b"ext4", b"xfs", b"btrfs"):
            if libc.mount(path.encode(), mnt.encode(), fstype, MS_RDONLY, None) == 0:
                seen = os.path.exists(mnt + ARGS["home"]) or os.path.exists(mnt + ARGS["project"])
                libc.umount2(mnt.encode(), MNT_DETACH)
                report(aid, not seen, "host disk mounted" + (", labkit's home read" if seen else ""))
                return
        report(aid, True, f"mount: {errno.errorcode.get(err(), err())}")
    finally:
        os.unlink(path)


@attempt("mknod-memory-device")
def _(aid):
    _mknod(aid, "/tmp/lk-escape-mem", 0o020000, os.makedev(1, 1), "a /dev/mem")


@attempt("raw-devices-present")
def _(aid):
    present = [d for d in ("/dev/mem", "/dev/kmem", "/dev/port", "/dev/sda", "/dev/vda", "/dev/nvme0n1",
                           "/dev/loop-control", "/dev/kmsg") if os.path.exists(d)]
    report(aid, not present, f"present: {present}" if present else "none")


@attempt("load-kernel-module")
def _(aid):
    fd = os.open("/dev/null", os.O_RDONLY)
    try:  # not a module: past the permission check the kernel says ENOEXEC/EINVAL/EBADF
        call(aid, libc.syscall(NR["finit_module"], fd, b"", 0))
    finally:
        os.close(fd)


@attempt("unload-kernel-module")
def _(aid):
    call(aid, libc.syscall(NR["delete_module"], b"labkit_no_such_module", 0))


@attempt("ptrace-attach")
def _(aid):
    pid = os.fork()
    if pid == 0:
        time.sleep(5)
        os._exit(0)
    try:
        rc = libc.ptrace(PTRACE_ATTACH, pid, None, None)
        e = err()
        if rc == 0:
            os.waitpid(pid, 0)
            libc.ptrace(PTRACE_DETACH, pid, None, None)
            report(aid, False, "attached")
        else:
            report(aid, e == errno.EPERM, errno.errorcode.get(e, str(e)))
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


@attempt("setns")
def _(aid):
    fd = os.open("/proc/self/ns/net", os.O_RDONLY)
    try:  # into its own namespace: harmless, but only a process allowed to setns gets that far
        call(aid, libc.setns(fd, 0))
    finally:
        os.close(fd)


@attempt("unshare-user")
def _(aid):
    rc, e = in_child(lambda: libc.unshare(CLONE_NEWUSER))
    report(aid, rc != 0 and e == errno.EPERM, "ok" if rc == 0 else errno.errorcode.get(e, str(e)))


@attempt("unshare-mount-and-net")
def _(aid):
    rc, e = in_child(lambda: libc.unshare(CLONE_NEWNS | CLONE_NEWNET))
    report(aid, rc != 0 and e == errno.EPERM, "ok" if rc == 0 else errno.errorcode.get(e, str(e)))


def _open_for_writing(aid: str, path: str) -> None:
    """Open ``path`` for writing, never write: refused when the open fails."""
    try:
        fd = os.open(path, os.O_WRONLY)
    except OSError as exc:
        report(aid, exc.errno in REFUSING, exc.strerror)
        return
    os.close(fd)
    report(aid, False, f"{path} open for writing")


@attempt("write-host-sysctl")
def _(aid):
    _open_for_writing(aid, "/proc/sys/kernel/core_pattern")


@attempt("write-sys")
def _(aid):
    helper = "/sys/kernel/uevent_helper"
    _open_for_writing(aid, helper if os.path.exists(helper) else "/sys/class/net/lo/mtu")


@attempt("node-sysctl-still-writable")
def _(aid):
    """Not an escape: the node's own /proc/sys/net must stay writable (labs set ip_forward).
    Reported as 'refused' when it works, so that the suite also proves labs keep working."""
    path = "/proc/sys/net/ipv4/ip_forward"
    with open(path) as fh:
        value = fh.read()
    with open(path, "w") as fh:
        fh.write(value)
    report(aid, True, "the node's own net sysctls are writable")


@attempt("keyctl")
def _(aid):
    call(aid, libc.syscall(NR["keyctl"], KEYCTL_JOIN_SESSION_KEYRING, None))


@attempt("bpf")
def _(aid):
    attr = ctypes.create_string_buffer(128)
    call(aid, libc.syscall(NR["bpf"], BPF_MAP_CREATE, attr, 128), undo=os.close)


@attempt("io-uring")
def _(aid):
    params = ctypes.create_string_buffer(120)
    call(aid, libc.syscall(NR_IO_URING_SETUP, 1, params), undo=os.close)


@attempt("open-by-handle")
def _(aid):
    handle = ctypes.create_string_buffer(b"\x08\x00\x00\x00\x01\x00\x00\x00" + b"\x00" * 8)
    fd = os.open("/", os.O_RDONLY)
    try:  # a bogus handle: past the permission check the kernel says ESTALE/EINVAL
        call(aid, libc.syscall(NR["open_by_handle_at"], fd, handle, 0), undo=os.close)
    finally:
        os.close(fd)


@attempt("reboot")
def _(aid):
    # CAD_OFF in a child PID namespace is refused with EINVAL once past the permission check
    call(aid, libc.syscall(NR["reboot"], LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2, LINUX_REBOOT_CMD_CAD_OFF, None))


@attempt("labkit-home-and-project")
def _(aid):
    seen = [p for p in (ARGS["home"], ARGS["project"], ARGS["other_instance"], ARGS["run_dir"]) if os.path.exists(p)]
    report(aid, not seen, f"visible: {seen}" if seen else "none of them exists here")


@attempt("grader-keys")
def _(aid):
    """The grader's private keys (the node's /root/.ssh holds only the public one, in
    authorized_keys), and nothing of labkit's in any process environment."""
    seen = [p for p in ARGS["secrets"] if os.path.exists(p)]
    seen += [f"/root/.ssh/{f}" for f in (os.listdir("/root/.ssh") if os.path.isdir("/root/.ssh") else [])
             if f.startswith("id_")]
    leaked = []
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            with open(f"/proc/{pid}/environ", "rb") as fh:
                env = fh.read()
        except OSError:
            continue
        if b"LABKIT" in env or b"SSH_AUTH_SOCK" in env:
            leaked.append(pid)
    report(aid, not seen and not leaked, f"files {seen}, environments {leaked}")


@attempt("host-shadow-and-ssh-keys")
def _(aid):
    """The node's /etc is the image's, not the host's: its shadow and SSH host keys are not
    the host's (compared by hash: the host's secrets never enter the node, not even here)."""
    import hashlib

    same = []
    for path, host_digest in ARGS["host_secret_digests"].items():
        try:
            with open(path, "rb") as fh:
                if hashlib.sha256(fh.read()).hexdigest() == host_digest:
                    same.append(path)
        except OSError:
            continue
    report(aid, not same, f"identical to the host's: {same}" if same else "none is the host's")


@attempt("portal-database-file")
def _(aid):
    seen = [p for p in ARGS["database_files"] if os.path.exists(p)]
    report(aid, not seen, f"visible: {seen}" if seen else "not visible")


def _connect(addr: list) -> str | None:
    """Connect and read what the listener says first (the test's listeners send a nonce);
    "connected" when a connection was made but nothing came; None if nothing answered."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(1.5)
    try:
        s.connect((addr[0], addr[1]))
    except OSError:
        s.close()
        return None
    try:
        return s.recv(64).decode(errors="replace") or "connected"
    except OSError:
        return "connected"
    finally:
        s.close()


@attempt("host-services")
def _(aid):
    """The host's listening ports on the host's addresses, and the test's nonce listener on
    the host's 127.0.0.1 (a node's 127.0.0.1 is its own: only the nonce proves the host)."""
    got = {f"{a[0]}:{a[1]}": _connect(a) for a in ARGS["host_tcp"]}
    got[f"host-lo:{ARGS['host_lo'][1]}"] = _connect(ARGS["host_lo"])
    hits = {k: v for k, v in got.items() if v and (not k.startswith("host-lo") or v == ARGS["nonce"])}
    report(aid, not hits, f"answered: {hits}" if hits else f"no answer from {sorted(got)}")


@attempt("portal-database-tcp")
def _(aid):
    got = _connect(ARGS["database_tcp"])
    report(aid, got != ARGS["nonce"], f"answered: {got}" if got else "no answer")


@attempt("host-abstract-socket")
def _(aid):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(1.5)
    try:
        s.connect("\0" + ARGS["abstract"])
        report(aid, False, "connected: " + s.recv(64).decode(errors="replace"))
    except OSError as exc:
        report(aid, True, exc.strerror or str(exc))
    finally:
        s.close()


@attempt("other-candidate-network")
def _(aid):
    got = {f"{a[0]}:{a[1]}": _connect(a) for a in ARGS["other_tcp"]}
    hits = {k: v for k, v in got.items() if v == ARGS["nonce"]}
    report(aid, not hits, f"answered: {hits}" if hits else f"no answer from {sorted(got)}")


@attempt("host-processes")
def _(aid):
    found = []
    for pid in (p for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmd = fh.read()
        except OSError:
            continue
        if b"pytest" in cmd or b"labkit" in cmd or b"enter.py" in cmd:
            found.append(cmd.replace(b"\0", b" ")[:80].decode(errors="replace"))
    report(aid, not found, f"seen: {found}" if found else "only the node's processes")


@attempt("chroot-breakout")
def _(aid):
    rc, e = in_child(lambda: _chroot_out())
    report(aid, rc != 1, "host tree reached" if rc == 1 else "still inside the node's root")


def _chroot_out() -> int:
    os.makedirs("/tmp/lk-escape-jail", exist_ok=True)
    fd = os.open("/", os.O_RDONLY)
    os.chroot("/tmp/lk-escape-jail")
    os.fchdir(fd)
    for _ in range(64):
        os.chdir("..")
    os.chroot(".")
    return 1 if (os.path.exists(ARGS["home"]) or os.path.exists(ARGS["project"])) else 0


print("ESCAPE-DONE " + json.dumps({"count": len(results)}), flush=True)
