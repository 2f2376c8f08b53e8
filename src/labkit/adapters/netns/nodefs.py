"""Read a node's files with the grader's own code, never the node's binaries.

A candidate is root in their nodes: the node's ``python3``, ``sha256sum`` or ``grep`` can be
replaced by a script that prints what the grader hopes to see. When a check must read node
state, it reads the files itself from the grader process, through the node's root directory
as the kernel shows it (``/proc/<node init>/root``), with ``openat2(RESOLVE_IN_ROOT)``: every
path, absolute symlinks and ``..`` included, resolves inside the node, so a symlink planted
by the candidate can never make the grader read a host file. Directory walks never follow
symlinks. Nothing is executed in the node.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from labkit.errors import ProviderError

_SYS_OPENAT2 = 437  # the same number on every architecture (new syscall table)
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10

_libc = ctypes.CDLL(None, use_errno=True)


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def openat2_in_root(root_fd: int, path: str, flags: int = os.O_RDONLY) -> int:
    """``openat2(root_fd, path, flags, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)``."""
    how = _OpenHow(flags | os.O_CLOEXEC, 0, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
    fd = _libc.syscall(_SYS_OPENAT2, root_fd, os.fsencode(path), ctypes.byref(how), ctypes.sizeof(how))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{os.strerror(err)} (in node: {path})")
    return int(fd)


@dataclass(frozen=True)
class FileFacts:
    path: str
    size: int
    sha256: str


class NodeFS:
    """The files of one node as the grader reads them (see the module docstring).

    ``root`` is the node's root directory from the host's side, ``/proc/<pid>/root`` of the
    node's init; ``init_pid`` is that init's host pid, when the provider knows it (it lets
    the grader list the node's processes from the host's ``/proc``, which the node cannot
    forge). ``image`` is the read-only image the node's root filesystem is an overlay on:
    the pristine copy of every packaged file, which the candidate cannot write."""

    MAX_READ = 64 << 20

    def __init__(self, root: Path, init_pid: int | None = None, image: Path | None = None):
        self.root = root
        self.init_pid = init_pid
        self.image = image
        try:
            self._fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise ProviderError(f"cannot open the node's root directory {root}: {exc.strerror}.") from exc

    def pristine(self, path: str) -> Path:
        """Where the genuine ``path`` (a packaged file, e.g. /usr/sbin/cron) is read: in the
        node's image when there is one, else on the host (same Debian release)."""
        return self.image / path.lstrip("/") if self.image else Path(path)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> NodeFS:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --------------------------------------------------------------- single files
    def open(self, path: str, flags: int = os.O_RDONLY) -> int:
        return openat2_in_root(self._fd, path, flags)

    def exists(self, path: str) -> bool:
        try:
            os.close(self.open(path, os.O_PATH))
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                return False
            raise
        return True

    def read_bytes(self, path: str, limit: int = MAX_READ) -> bytes:
        fd = self.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(errno.EINVAL, f"not a regular file (in node: {path})")
            chunks, total = [], 0
            while total < limit and (chunk := os.read(fd, min(1 << 20, limit - total))):
                chunks.append(chunk)
                total += len(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def read_text(self, path: str, limit: int = MAX_READ) -> str:
        return self.read_bytes(path, limit).decode("utf-8", "replace")

    def sha256(self, path: str) -> str:
        fd = self.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            return _sha256_fd(fd)
        finally:
            os.close(fd)

    def listdir(self, path: str) -> list[str]:
        fd = self.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            return sorted(os.listdir(fd))
        finally:
            os.close(fd)

    # ---------------------------------------------------------------- trees
    def walk_files(self, path: str, max_files: int = 100_000) -> Iterator[tuple[str, int]]:
        """(relative path, open fd) of every regular file below ``path``; symlinks are not
        followed; the caller must not keep the fd past the next step."""
        top = self.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            seen = 0
            for dirpath, _dirs, files, dirfd in os.fwalk(".", dir_fd=top, follow_symlinks=False):
                for f in sorted(files):
                    try:
                        fd = os.open(f, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dirfd)
                    except OSError:
                        continue  # a symlink, a socket...: not a file
                    try:
                        if not stat.S_ISREG(os.fstat(fd).st_mode):
                            continue
                        seen += 1
                        if seen > max_files:
                            raise OSError(errno.EFBIG, f"more than {max_files} files below {path}")
                        yield os.path.normpath(os.path.join(dirpath, f)), fd
                    finally:
                        os.close(fd)
        finally:
            os.close(top)

    def hash_tree(self, path: str, max_files: int = 100_000) -> dict[str, FileFacts]:
        """sha256 and size of every regular file below ``path``, keyed by relative path."""
        out: dict[str, FileFacts] = {}
        for rel, fd in self.walk_files(path, max_files):
            out[rel] = FileFacts(rel, os.fstat(fd).st_size, _sha256_fd(fd))
        return out

    def process_ids(self) -> list[int]:
        """Host pids of every process in the node's PID namespace, read from the host's
        ``/proc`` (what the kernel says, not the node's own ``/proc`` mount)."""
        if self.init_pid is None:
            raise ProviderError("this provider does not show the node's processes to the grader.")
        want = os.stat(f"/proc/{self.init_pid}/ns/pid").st_ino
        pids = []
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                try:
                    if os.stat(f"/proc/{entry.name}/ns/pid").st_ino == want:
                        pids.append(int(entry.name))
                except OSError:
                    continue
        return sorted(pids)


def _sha256_fd(fd: int) -> str:
    h = hashlib.sha256()
    while chunk := os.read(fd, 1 << 20):
        h.update(chunk)
    return h.hexdigest()


def init_pid_of(pid_ns_file: Path) -> int:
    """Host pid of PID 1 in the PID namespace bound at ``pid_ns_file`` (the node's init).

    The candidate cannot replace it: killing it ends the node, and it never chroots."""
    try:
        target = os.stat(pid_ns_file).st_ino
    except OSError as exc:
        raise ProviderError(f"the node's PID namespace file {pid_ns_file} is gone; bring the lab up again.") from exc
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry.name}/ns/pid").st_ino != target:
                continue
            with open(f"/proc/{entry.name}/status") as fh:
                nspid = next((ln.split()[1:] for ln in fh if ln.startswith("NSpid:")), [])
        except OSError:
            continue
        if nspid and nspid[-1] == "1":
            return int(entry.name)
    raise ProviderError(f"the node behind {pid_ns_file} has no init process; bring the lab down and up again.")


__all__ = ["FileFacts", "NodeFS", "init_pid_of", "openat2_in_root"]
