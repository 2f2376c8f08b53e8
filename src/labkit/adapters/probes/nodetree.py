"""Write, copy and remove files in a node with the grader's own code, through a
:class:`~labkit.adapters.netns.nodefs.NodeFS` (``openat2(RESOLVE_IN_ROOT)``): nothing runs in
the node, so a candidate who replaced the node's ``cp``, ``tar`` or ``python3`` cannot change
what the grader writes, copies or deletes there.

Every path is resolved inside the node's root; below the first directory, entries are opened
relative to their parent's descriptor with ``O_NOFOLLOW``, so a symlink planted by the
candidate is never followed (it is removed or skipped as a link). Sizes are bounded.
"""

from __future__ import annotations

import errno
import os
import posixpath
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

from labkit.adapters.providers.base import NodeFiles as NodeFS

MAX_TREE_BYTES = 512 << 20
MAX_TREE_FILES = 200_000


@dataclass
class TreeCopy:
    """A directory tree read from a node: files with their bytes, mode and owner; directories."""

    files: dict[str, tuple[bytes, int, int, int]] = field(default_factory=dict)  # rel: (data, mode, uid, gid)
    dirs: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # rel: (mode, uid, gid)

    @property
    def size(self) -> int:
        return sum(len(f[0]) for f in self.files.values())


def _split(path: str) -> tuple[str, str]:
    path = posixpath.normpath("/" + path)
    parent, name = posixpath.split(path)
    if not name or name in (".", ".."):
        raise OSError(errno.EINVAL, f"not a file path: {path}")
    return parent, name


def lstat(fs: NodeFS, path: str) -> os.stat_result | None:
    """``lstat`` of ``path`` in the node, or None if it does not exist."""
    try:
        fd = fs.open(path, os.O_PATH | os.O_NOFOLLOW)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return None
        raise
    try:
        return os.fstat(fd)
    finally:
        os.close(fd)


def write_file(fs: NodeFS, path: str, data: bytes, *, mode: int = 0o644, uid: int | None = None,
               gid: int | None = None) -> None:
    """Write ``path`` atomically (a new file renamed over the old one): its parent must exist."""
    parent, name = _split(path)
    dfd = fs.open(parent, os.O_RDONLY | os.O_DIRECTORY)
    tmp = f".{name[:40]}.labkit-{secrets.token_hex(4)}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dfd)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if uid is not None or gid is not None:
                os.fchown(fd, -1 if uid is None else uid, -1 if gid is None else gid)
            os.fchmod(fd, mode & 0o7777)
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=dfd)
        except OSError:
            pass
        raise
    finally:
        os.close(dfd)


def overwrite_start(fs: NodeFS, path: str, data: bytes, grow: bytes = b"") -> None:
    """Overwrite the first bytes of an existing regular file in place, and append ``grow`` at
    its end (a simulated encryption: the size changes, as with real ransomware)."""
    fd = fs.open(path, os.O_WRONLY | os.O_NOFOLLOW)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, f"not a regular file (in node: {path})")
        os.pwrite(fd, data, 0)
        if grow:
            os.pwrite(fd, grow, max(st.st_size, len(data)))
    finally:
        os.close(fd)


def makedirs(fs: NodeFS, path: str, *, mode: int = 0o755, uid: int | None = None, gid: int | None = None) -> None:
    """``mkdir -p`` in the node; existing directories are left as they are."""
    parts = [p for p in posixpath.normpath("/" + path).split("/") if p]
    cur = fs.open("/", os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts:
            try:
                nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=cur)
            except FileNotFoundError:
                os.mkdir(part, 0o700, dir_fd=cur)
                nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=cur)
                if uid is not None or gid is not None:
                    os.fchown(nxt, -1 if uid is None else uid, -1 if gid is None else gid)
                os.fchmod(nxt, mode & 0o7777)
            os.close(cur)
            cur = nxt
    finally:
        os.close(cur)


def _rmtree_at(dfd: int, name: str) -> int:
    """Remove ``name`` below the directory ``dfd`` (a tree, a file or a link); returns the
    number of files removed."""
    try:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return 0
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=dfd)
        return 1
    n = _clear_fd(os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd))
    os.rmdir(name, dir_fd=dfd)
    return n


def _clear_fd(fd: int) -> int:
    """Remove everything below the open directory ``fd``, then close it; files removed."""
    n = 0
    try:
        for entry in list(os.scandir(fd)):
            n += _rmtree_at(fd, entry.name)
    finally:
        os.close(fd)
    return n


def remove(fs: NodeFS, path: str) -> int:
    """``rm -rf path`` in the node (links are removed, never followed); files removed."""
    parent, name = _split(path)
    try:
        dfd = fs.open(parent, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return 0
        raise
    try:
        return _rmtree_at(dfd, name)
    finally:
        os.close(dfd)


def clear_dir(fs: NodeFS, path: str) -> int:
    """Remove everything below the directory ``path``, keeping the directory itself."""
    return _clear_fd(fs.open(path, os.O_RDONLY | os.O_DIRECTORY))


def _walk(fs: NodeFS, path: str, max_files: int, max_bytes: int):  # type: ignore[no-untyped-def]
    """(rel dir, dir stat, [(name, fd)]) below ``path``, links skipped."""
    top = fs.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        files = total = 0
        for dirpath, _dirs, names, dirfd in os.fwalk(".", dir_fd=top, follow_symlinks=False):
            yield "dir", os.path.normpath(dirpath), os.fstat(dirfd), None
            for f in sorted(names):
                try:
                    fd = os.open(f, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dirfd)
                except OSError:
                    continue
                try:
                    st = os.fstat(fd)
                    if not stat.S_ISREG(st.st_mode):
                        continue
                    files += 1
                    total += st.st_size
                    if files > max_files or total > max_bytes:
                        raise OSError(errno.EFBIG, f"more than {max_files} files or {max_bytes} bytes below {path}")
                    yield "file", os.path.normpath(os.path.join(dirpath, f)), st, fd
                finally:
                    os.close(fd)
    finally:
        os.close(top)


def _read_fd(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def read_tree(fs: NodeFS, path: str, *, max_files: int = MAX_TREE_FILES, max_bytes: int = MAX_TREE_BYTES) -> TreeCopy:
    """Every regular file and directory below ``path`` (links skipped), into memory."""
    out = TreeCopy()
    for what, rel, st, fd in _walk(fs, path, max_files, max_bytes):
        if what == "dir":
            out.dirs[rel] = (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
        else:
            out.files[rel] = (_read_fd(fd), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
    return out


def copy_out(fs: NodeFS, path: str, dest: Path, *, max_files: int = MAX_TREE_FILES,
             max_bytes: int = MAX_TREE_BYTES) -> dict[str, int]:
    """Copy the tree at ``path`` in the node to the grader's local directory ``dest`` (which
    must not exist); returns {files, bytes}."""
    dest.mkdir(mode=0o700)
    n = size = 0
    for what, rel, _st, fd in _walk(fs, path, max_files, max_bytes):
        target = dest / rel
        if what == "dir":
            target.mkdir(mode=0o700, parents=True, exist_ok=True)
            continue
        data = _read_fd(fd)
        target.write_bytes(data)
        n += 1
        size += len(data)
    return {"files": n, "bytes": size}


def write_tree(fs: NodeFS, path: str, tree: TreeCopy) -> int:
    """Recreate ``tree`` below the existing directory ``path`` (directories first, with their
    modes and owners); returns the number of files written."""
    for rel, (mode, uid, gid) in sorted(tree.dirs.items()):
        if rel != ".":
            makedirs(fs, posixpath.join(path, rel), mode=mode, uid=uid, gid=gid)
    for rel, (data, mode, uid, gid) in sorted(tree.files.items()):
        write_file(fs, posixpath.join(path, rel), data, mode=mode, uid=uid, gid=gid)
    return len(tree.files)


__all__ = ["MAX_TREE_BYTES", "TreeCopy", "clear_dir", "copy_out", "lstat", "makedirs", "overwrite_start",
           "read_tree", "remove", "write_file", "write_tree"]
