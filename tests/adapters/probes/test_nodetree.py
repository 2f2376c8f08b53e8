"""Writing, copying and removing files in a node with the grader's own code: paths stay inside
the node's root, links planted in the node are never followed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from labkit.adapters.netns.nodefs import NodeFS
from labkit.adapters.probes import nodetree


@pytest.fixture
def node(tmp_path: Path) -> tuple[Path, Path]:
    """A fake node root and a file outside it (the 'host')."""
    root = tmp_path / "root"
    (root / "srv/d/sub").mkdir(parents=True)
    (root / "srv/d/a.txt").write_bytes(b"alpha")
    (root / "srv/d/sub/b.txt").write_bytes(b"beta")
    host = tmp_path / "host-secret"
    host.write_bytes(b"host")
    return root, host


def test_write_read_copy_and_restore_a_tree(node: tuple[Path, Path], tmp_path: Path) -> None:
    root, _ = node
    with NodeFS(root) as fs:
        nodetree.write_file(fs, "/srv/d/new.txt", b"x" * 10, mode=0o640)
        assert (root / "srv/d/new.txt").read_bytes() == b"x" * 10
        assert oct((root / "srv/d/new.txt").stat().st_mode & 0o777) == oct(0o640)
        copy = nodetree.read_tree(fs, "/srv/d")
        assert set(copy.files) == {"a.txt", "new.txt", "sub/b.txt"} and copy.size == 19
        nodetree.overwrite_start(fs, "/srv/d/a.txt", b"ZZ")
        assert (root / "srv/d/a.txt").read_bytes() == b"ZZpha"
        nodetree.overwrite_start(fs, "/srv/d/a.txt", b"Y", grow=b"!")
        assert (root / "srv/d/a.txt").read_bytes() == b"YZpha!"
        (root / "srv/d/a.txt").write_bytes(b"alpha")
        assert nodetree.remove(fs, "/srv/d/sub") == 1 and not (root / "srv/d/sub").exists()
        nodetree.clear_dir(fs, "/srv/d")
        assert list((root / "srv/d").iterdir()) == []
        assert nodetree.write_tree(fs, "/srv/d", copy) == 3
        assert (root / "srv/d/sub/b.txt").read_bytes() == b"beta" and (root / "srv/d/a.txt").read_bytes() == b"alpha"
        out = nodetree.copy_out(fs, "/srv/d", tmp_path / "local")
        assert out == {"files": 3, "bytes": 19} and (tmp_path / "local/sub/b.txt").read_bytes() == b"beta"
        nodetree.makedirs(fs, "/srv/e/f", mode=0o750)
        assert (root / "srv/e/f").is_dir()
        assert nodetree.lstat(fs, "/srv/nothing") is None


def test_links_planted_in_the_node_are_never_followed(node: tuple[Path, Path]) -> None:
    root, host = node
    os.symlink(str(host), root / "srv/d/evil")  # absolute link: resolves inside the node's root
    os.symlink("../../../host-secret", root / "srv/d/up")
    with NodeFS(root) as fs:
        # writing "through" a link replaces the link, never the file it points at
        nodetree.write_file(fs, "/srv/d/evil", b"pwned")
        assert host.read_bytes() == b"host" and (root / "srv/d/evil").read_bytes() == b"pwned"
        with pytest.raises(OSError):
            nodetree.overwrite_start(fs, "/srv/d/up", b"pwned")
        assert host.read_bytes() == b"host"
        assert "up" not in nodetree.read_tree(fs, "/srv/d").files
        nodetree.remove(fs, "/srv/d/up")
        assert host.exists() and not (root / "srv/d/up").is_symlink()
        # a linked directory is removed as a link, its target is left alone
        os.symlink(str(root.parent), root / "srv/d/dirlink")
        nodetree.clear_dir(fs, "/srv/d")
        assert host.exists()
