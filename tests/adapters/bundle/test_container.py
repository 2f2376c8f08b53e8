"""The signed bundle zip: deterministic, every byte covered, each change named by region,
and dangerous zips refused before anything is read or unpacked."""

from __future__ import annotations

import io
import os
import stat
import struct
import time
import warnings
import zipfile
from datetime import timedelta
from pathlib import Path

import pytest
from tests.adapters.bundle.bundle_fixture import STEM, T0, key_info, make_bundle, make_signer, make_tree, trust_of

from labkit.adapters.bundle import container, finalize_bundle
from labkit.adapters.bundle.container import CENTRAL, COMMENT, END, build_zip
from labkit.adapters.bundle.verify import verify_path, verify_zip_bytes
from labkit.adapters.security.signing import CentreSigner
from labkit.errors import UserError


@pytest.fixture(scope="module")
def signer() -> CentreSigner:
    return make_signer()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory, signer: CentreSigner) -> tuple[Path, Path]:
    return make_bundle(tmp_path_factory.mktemp("b"), signer)


def _regions(data: bytes) -> list[tuple[int, int, str, str]]:
    """(start, end, path, region word) for every byte of the archive, from zipfile's view of
    the clean zip (independent of the container's own cutting)."""
    zf = zipfile.ZipFile(io.BytesIO(data))
    infos = sorted(zf.infolist(), key=lambda i: i.header_offset)
    eocd = data.rfind(b"PK\x05\x06")
    cd_start = struct.unpack("<I", data[eocd + 16:eocd + 20])[0]
    out = []
    bounds = [i.header_offset for i in infos] + [cd_start]
    for k, info in enumerate(infos):
        n, m = struct.unpack("<HH", data[info.header_offset + 26:info.header_offset + 30])
        hend = info.header_offset + 30 + n + m
        out.append((info.header_offset, hend, info.filename, "local header"))
        out.append((hend, bounds[k + 1], info.filename, "compressed data"))
    out.append((cd_start, eocd, CENTRAL, "was changed"))
    out.append((eocd, eocd + 22, END, "was changed"))
    out.append((eocd + 22, len(data), COMMENT, "changed"))
    assert out[0][0] == 0 and all(a[1] == b[0] for a, b in zip(out, out[1:], strict=False))
    return out


def test_zip_layout_is_deterministic(tmp_path: Path, signer: CentreSigner) -> None:
    tree = make_tree(tmp_path, signer)
    when = T0 + timedelta(minutes=5)
    a = finalize_bundle(tree, tmp_path / f"{STEM}.zip", signer, when).read_bytes()
    b = finalize_bundle(tree, tmp_path / f"{STEM}.zip", signer, when).read_bytes()
    # Ed25519 signatures are deterministic too: the whole file is the same
    assert a == b
    infos = zipfile.ZipFile(io.BytesIO(a)).infolist()
    names = [i.filename for i in infos]
    assert names == sorted(names) and all(n.startswith(f"{STEM}/") for n in names)
    assert {i.date_time for i in infos} == {(2026, 11, 28, 3, 49, 54)}
    assert {(i.create_system, i.external_attr >> 16, i.compress_type) for i in infos} == {
        (3, stat.S_IFREG | 0o644, zipfile.ZIP_DEFLATED)}
    assert not any(i.is_dir() for i in infos)
    assert zipfile.ZipFile(io.BytesIO(a)).testzip() is None
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_every_byte_flip_is_detected_and_named(bundle: tuple[Path, Path], signer: CentreSigner) -> None:
    """Each byte of the zip in turn, XOR 0x01 and XOR 0xff: the signature check fails, the one
    region holding the byte is named (entry X's local header or data, the central directory,
    the end record, the comment), and the whole verification fails."""
    data = bundle[1].read_bytes()
    trust = trust_of(key_info(signer))
    assert verify_zip_bytes(data, trust).ok
    regions = _regions(data)
    assert len(data) < 8000  # a small bundle: every byte is flipped, not a sample
    started = time.perf_counter()
    checked = 0
    for start, end, path, word in regions:
        for i in range(start, end):
            for mask in (0x01, 0xFF):
                mutated = bytearray(data)
                mutated[i] ^= mask
                report = verify_zip_bytes(bytes(mutated), trust)
                assert not report.ok, (i, hex(mask))
                first = report.problems[0]
                assert first.path == path and word in first.what, (i, hex(mask), report.problems[:3])
                # no other region of the archive is blamed
                assert not [p for p in report.problems[1:] if p.path in (CENTRAL, END, COMMENT)
                            or "in the zip (its" in p.what], (i, hex(mask), report.problems)
                checked += 1
    elapsed = time.perf_counter() - started
    assert checked == 2 * len(data)
    print(f"\n{checked} flipped zips of {len(data)} bytes verified in {elapsed:.2f}s "
          f"({elapsed / checked * 1000:.2f} ms each)")


def test_record_too_large_for_a_zip_comment(signer: CentreSigner) -> None:
    files = {f"f{i:05d}.txt": b"" for i in range(1800)}
    with pytest.raises(ValueError, match="more than a zip comment holds"):
        build_zip(files, "big", T0, signer)


def test_finalize_refuses_bad_names_and_leaves_nothing(tmp_path: Path, signer: CentreSigner) -> None:
    tree = make_tree(tmp_path, signer)
    with pytest.raises(UserError, match="not a bundle file name"):
        finalize_bundle(tree, tmp_path / "bad name.zip", signer, T0)
    os.symlink("/etc/passwd", tree / "passwd")
    with pytest.raises(UserError, match="links or special files"):
        finalize_bundle(tree, tmp_path / "ok.zip", signer, T0)
    assert not (tmp_path / "ok.zip").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_finalize_interrupted_leaves_no_zip(tmp_path: Path, signer: CentreSigner,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C while the zip is written: no zip, no temporary file."""
    tree = make_tree(tmp_path, signer)
    real_fsync = os.fsync
    calls = {"n": 0}

    def interrupt(fd: int) -> None:
        calls["n"] += 1
        if calls["n"] == 4:  # allowed_signers, SHA256SUMS, .sig, then the zip
            raise KeyboardInterrupt
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", interrupt)
    with pytest.raises(KeyboardInterrupt):
        finalize_bundle(tree, tmp_path / "out.zip", signer, T0)
    assert calls["n"] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dupont-portfolio", "store"]


# ------------------------------------------------------------------ dangerous zips


def _zip(entries: list[tuple[str, bytes, int]]) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buf, "w") as zf:
        warnings.simplefilter("ignore")  # zipfile warns about duplicate names
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            info.create_system = 3
            info.external_attr = mode << 16
            zf.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
    return buf.getvalue()


REG = stat.S_IFREG | 0o644

DANGEROUS = {
    "dotdot": ([("b/x", b"x", REG), ("b/../../evil", b"pwned", REG)], "b/../../evil", "'..'"),
    "absolute": ([("/tmp/evil-labkit", b"pwned", REG)], "/tmp/evil-labkit", "absolute path"),
    "symlink": ([("b/x", b"x", REG), ("b/link", b"/etc/passwd", stat.S_IFLNK | 0o777)], "b/link", "symbolic link"),
    "duplicate": ([("b/x", b"x", REG), ("b/x", b"y", REG)], "b/x", "appears twice"),
    "outside": ([("b/x", b"x", REG), ("c/evil", b"pwned", REG)], "c/evil", "outside the bundle's top folder"),
    "device": ([("b/x", b"x", REG), ("b/dev", b"", stat.S_IFCHR | 0o644)], "b/dev", "device"),
    "backslash": ([("b/x", b"x", REG), ("b/..\\..\\evil", b"pwned", REG)], "b/..\\..\\evil", "backslash"),
}


@pytest.mark.parametrize("case", sorted(DANGEROUS))
def test_dangerous_zip_is_refused_and_nothing_unpacked(tmp_path: Path, signer: CentreSigner, case: str) -> None:
    entries, path, word = DANGEROUS[case]
    z = tmp_path / "in" / "bad.zip"
    z.parent.mkdir()
    z.write_bytes(_zip(entries))
    before = sorted(tmp_path.rglob("*"))
    report = verify_path(z, trust_of(key_info(signer)))
    assert not report.ok
    assert any(p.path == path and word in p.what and "refused" in p.what for p in report.problems), report.problems
    assert report.files_checked == 0 and not report.runs_checked
    assert sorted(tmp_path.rglob("*")) == before
    assert not Path("/tmp/evil-labkit").exists()


def test_zip_bomb_is_refused_before_inflating(tmp_path: Path, signer: CentreSigner,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A real bomb scaled down (8 MiB of zeros in a few KB) against a 1 MiB bound; then a zip
    whose central directory claims 3 GiB, against the default bound."""
    bomb = _zip([("b/zeros", bytes(8 * 1024 * 1024), REG)])
    assert len(bomb) < 20_000
    monkeypatch.setattr(container, "MAX_TOTAL", 1024 * 1024)
    inflated: list[str] = []
    real_read = zipfile.ZipFile.read

    def spy(self: zipfile.ZipFile, name: str | zipfile.ZipInfo, pwd: bytes | None = None) -> bytes:
        inflated.append(str(name))
        return real_read(self, name, pwd)

    monkeypatch.setattr(zipfile.ZipFile, "read", spy)
    report = verify_zip_bytes(bomb, trust_of(key_info(signer)))
    assert any(p.path == "zip" and "would inflate to 8388608 bytes" in p.what and "zip bomb" in p.what
               for p in report.problems), report.problems
    assert inflated == []
    monkeypatch.undo()

    small = bytearray(_zip([("b/x", b"x" * 10, REG)]))
    cd = small.rfind(b"PK\x01\x02")
    small[cd + 24:cd + 28] = struct.pack("<I", 3 * 1024**3)  # uncompressed size in the central directory
    report = verify_zip_bytes(bytes(small), trust_of(key_info(signer)))
    assert any(p.path == "zip" and "would inflate" in p.what for p in report.problems), report.problems


def test_too_many_entries_is_refused(signer: CentreSigner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(container, "MAX_ENTRIES", 5)
    many = _zip([(f"b/{i}", b"", REG) for i in range(6)])
    report = verify_zip_bytes(many, trust_of(key_info(signer)))
    assert any(p.path == "zip" and "has 6 entries, more than the 5" in p.what for p in report.problems)


def test_not_a_zip_and_no_signature(tmp_path: Path, signer: CentreSigner) -> None:
    plain = _zip([("b/x", b"x", REG)])
    report = verify_zip_bytes(plain, trust_of(key_info(signer)))
    assert report.problems[0].path == COMMENT and "no labkit bundle signature" in report.problems[0].what
    f = tmp_path / "x.zip"
    f.write_bytes(b"hello")
    with pytest.raises(UserError, match="is not a zip"):
        verify_path(f, trust_of())


def test_finalize_refuses_a_zip_inside_the_folder(tmp_path: Path, signer: CentreSigner) -> None:
    tree = make_tree(tmp_path, signer)
    with pytest.raises(UserError, match="inside the bundle folder"):
        finalize_bundle(tree, tree / "self.zip", signer, T0)
    assert not (tree / "self.zip").exists()
