"""Node files read by the grader's own code: paths resolve inside the node, symlinks never
lead out of it, and a forged binary in the node changes nothing the grader reads."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import pytest

from labkit.adapters.netns.nodefs import NodeFS
from labkit.errors import ProviderError
from tests.conftest import LabEnv


def _tree(root: Path) -> None:
    (root / "srv/data/sub").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "etc/hostname").write_text("node-a\n")
    (root / "srv/data/a.txt").write_text("alpha\n")
    (root / "srv/data/sub/b.bin").write_bytes(b"\x00" * 1000)
    # the candidate's traps: absolute and relative links that aim at the host
    (root / "srv/data/escape-abs").symlink_to("/etc/passwd")
    (root / "srv/data/escape-rel").symlink_to("../../../../../../../etc/passwd")
    (root / "srv/link-to-etc").symlink_to("/etc")


def test_paths_resolve_inside_the_node_root(tmp_path: Path) -> None:
    _tree(tmp_path)
    with NodeFS(tmp_path) as fs:
        assert fs.read_text("/etc/hostname") == "node-a\n"
        # /srv/link-to-etc -> /etc means the node's /etc, not the host's
        assert fs.read_text("/srv/link-to-etc/hostname") == "node-a\n"
        assert fs.read_text("/../../etc/hostname") == "node-a\n"
        for trap in ("/srv/data/escape-abs", "/srv/data/escape-rel"):
            with pytest.raises(OSError) as exc:
                fs.read_bytes(trap)
            assert exc.value.errno in (errno.ENOENT, errno.ELOOP)
        assert not fs.exists("/etc/passwd")


def test_hash_tree_skips_symlinks_and_hashes_with_grader_code(tmp_path: Path) -> None:
    _tree(tmp_path)
    with NodeFS(tmp_path) as fs:
        tree = fs.hash_tree("/srv/data")
    assert sorted(tree) == ["a.txt", "sub/b.bin"]
    assert tree["a.txt"].sha256 == hashlib.sha256(b"alpha\n").hexdigest()
    assert tree["sub/b.bin"].size == 1000


def test_hash_tree_is_bounded(tmp_path: Path) -> None:
    _tree(tmp_path)
    with NodeFS(tmp_path) as fs, pytest.raises(OSError) as exc:
        fs.hash_tree("/srv/data", max_files=1)
    assert exc.value.errno == errno.EFBIG


@pytest.mark.root
def test_forged_node_binaries_do_not_change_what_the_grader_reads(lab_env: LabEnv) -> None:
    from labkit.usecases.lifecycle import Context

    lab_env.labkit("up", "routing-multisite", "--instance", "nfs1", "--seed", "8")
    # root in the node forges sha256sum and plants a link to the host's shadow file
    lab_env.labkit("exec", "nfs1", "pc-hq", "--", "sh", "-c",
                   "printf '#!/bin/sh\\necho 0000  forged\\n' > /usr/bin/sha256sum; "
                   "echo real-content > /root/data.txt")
    forged = lab_env.labkit("exec", "nfs1", "pc-hq", "--", "sha256sum", "/root/data.txt").stdout
    assert forged.startswith("0000")
    ctx = Context(lab_env.settings)
    state = ctx.store.load("nfs1")
    with ctx.provider(state.provider).node_fs(state, "pc-hq") as fs:
        assert fs.sha256("/root/data.txt") == hashlib.sha256(b"real-content\n").hexdigest()
        assert fs.read_text("/etc/hostname").strip() == "pc-hq"
    lab_env.labkit("down", "nfs1")


def test_process_ids_need_the_init_pid(tmp_path: Path) -> None:
    with NodeFS(tmp_path) as fs, pytest.raises(ProviderError):
        fs.process_ids()


def test_process_ids_are_those_of_the_init_pid_namespace(tmp_path: Path) -> None:
    # this test process's own PID namespace: every process of it is listed, ours included
    with NodeFS(tmp_path, init_pid=os.getpid()) as fs:
        assert os.getpid() in fs.process_ids()
