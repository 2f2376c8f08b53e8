"""The bundle zip: deterministic, one top folder, signed in its comment region by region.

Writing: Python's :mod:`zipfile` writes the entries (sorted names under ``<top>/``, fixed
date = bundle time, Unix regular file 0644, deflate level 9, no directory entries, no
zip64), then the end record's comment length is set and the comment appended. The comment
is plain ASCII::

    labkit-bundle-zip 1
    sha256 <sha256 of every byte of the archive before the comment>
    e <local header length> <hash> <data length> <hash>     one line per entry, archive order
    cd <central directory length> <hash>
    end <end record length> <hash>
    -----BEGIN SSH SIGNATURE-----                            SSHSIG, namespace labkit-bundle, of
    …                                                        (archive bytes before the comment
    -----END SSH SIGNATURE-----                               + the lines above)

The signature covers every byte before the comment and the record itself. The per-region
hashes (the first 16 hex digits of a sha256: they only *name* a change, the full sha256 and
the signature *detect* it) cut the archive into contiguous regions, so that one changed byte
is named: an entry's local header or data, the central directory, the end record, or the
comment (the record or the signature) itself.

Reading: nothing is extracted to disk. :func:`check_archive` follows the regions on the raw
bytes; :func:`inspect_entries` reads the central directory with zipfile and refuses what
would be dangerous to unpack (absolute or ``..`` paths, links, duplicate names, names outside
the one top folder, too many entries or too many bytes once inflated) before anything is
read; :func:`read_entries` then inflates the entries in memory.
"""

from __future__ import annotations

import hashlib
import io
import re
import stat
import struct
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from labkit.adapters.bundle.sums import is_exact_armor
from labkit.adapters.security.signing import NAMESPACE_BUNDLE, CentreSigner, Signed, SignatureError, sshsig_verify

__all__ = [
    "COMMENT",
    "MAX_ENTRIES",
    "MAX_TOTAL",
    "ArchiveCheck",
    "Entries",
    "build_zip",
    "check_archive",
    "inspect_entries",
    "read_entries",
]

MAGIC = b"labkit-bundle-zip 1\n"
_BEGIN = b"-----BEGIN SSH SIGNATURE-----"
COMMENT = "zip comment"
CENTRAL = "zip central directory"
END = "zip end record"
ARCHIVE = "zip"
MAX_COMMENT = 0xFFFF
MAX_ENTRIES = 20_000  # a realistic bundle has a few hundred
MAX_TOTAL = 2 * 1024**3  # bytes once inflated
_SHORT = 16  # hex digits of a region hash
_EOCD = b"PK\x05\x06"
_EOCD_LEN = 22
_LOCAL = b"PK\x03\x04"
_CENTRAL = b"PK\x01\x02"
_MODE = (stat.S_IFREG | 0o644) << 16
_HEX = re.compile(f"[0-9a-f]{{{_SHORT}}}")
_CONTROL = re.compile(r"[\x00-\x1f]")


def _short(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:_SHORT]


def _date_time(when: datetime) -> tuple[int, int, int, int, int, int]:
    t = (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC)
    if t.year < 1980:  # the zip date format starts in 1980
        return (1980, 1, 1, 0, 0, 0)
    return (t.year, t.month, t.day, t.hour, t.minute, t.second - t.second % 2)


@dataclass(frozen=True)
class _Region:
    kind: str  # "h" (entry local header), "d" (entry data), "cd", "end"
    index: int  # entry number for h/d
    start: int
    length: int


def _cut(body: bytes, header_offsets: list[int], cd_offset: int) -> list[_Region]:
    """The contiguous regions of a zip written by :func:`build_zip` (no comment yet)."""
    regions: list[_Region] = []
    bounds = [*header_offsets, cd_offset]
    for i, off in enumerate(header_offsets):
        n, m = struct.unpack("<HH", body[off + 26:off + 30])
        hlen = 30 + n + m
        regions.append(_Region("h", i, off, hlen))
        regions.append(_Region("d", i, off + hlen, bounds[i + 1] - off - hlen))
    eocd = len(body) - _EOCD_LEN
    regions.append(_Region("cd", -1, cd_offset, eocd - cd_offset))
    regions.append(_Region("end", -1, eocd, _EOCD_LEN))
    return regions


def _record(digest: str, regions: list[_Region], data: bytes | None) -> bytes:
    def h(r: _Region) -> str:
        return _short(data[r.start:r.start + r.length]) if data is not None else "0" * _SHORT

    lines = [MAGIC.decode("ascii").rstrip("\n"), f"sha256 {digest}"]
    entries = [r for r in regions if r.kind in "hd"]
    for hr, dr in zip(entries[::2], entries[1::2], strict=True):
        lines.append(f"e {hr.length} {h(hr)} {dr.length} {h(dr)}")
    for r in regions:
        if r.kind in ("cd", "end"):
            lines.append(f"{r.kind} {r.length} {h(r)}")
    return ("\n".join(lines) + "\n").encode("ascii")


def build_zip(files: Mapping[str, bytes], top: str, when: datetime, signer: CentreSigner) -> bytes:
    """The signed, deterministic zip of ``files`` (relpath -> bytes) under ``<top>/``.
    ValueError when the signature record does not fit in a zip comment (too many files)."""
    if len(files) > MAX_ENTRIES:
        raise ValueError(f"{len(files)} files, more than the {MAX_ENTRIES} a bundle may hold")
    buf = io.BytesIO()
    date_time = _date_time(when)
    with zipfile.ZipFile(buf, "w", allowZip64=False) as zf:
        for rel in sorted(files):
            info = zipfile.ZipInfo(f"{top}/{rel}", date_time=date_time)
            info.create_system = 3  # Unix, so external_attr holds the mode
            info.external_attr = _MODE
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, files[rel], compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
        offsets = [i.header_offset for i in zf.infolist()]
    body = bytearray(buf.getvalue())
    eocd = len(body) - _EOCD_LEN
    if body[eocd:eocd + 4] != _EOCD:  # pragma: no cover - zipfile wrote no comment
        raise RuntimeError("zipfile did not end the archive with a plain end record")
    cd_offset = struct.unpack("<I", body[eocd + 16:eocd + 20])[0]
    regions = _cut(bytes(body), offsets, cd_offset)

    sig_len = len(signer.sign(b"", NAMESPACE_BUNDLE))  # an Ed25519 SSHSIG has a fixed length
    comment_len = len(_record("0" * 64, regions, None)) + sig_len
    if comment_len > MAX_COMMENT:
        raise ValueError(
            f"the signature record of {len(files)} files needs {comment_len} bytes, more than a zip "
            f"comment holds ({MAX_COMMENT}); make smaller bundles (one per candidate)"
        )
    body[eocd + 20:eocd + 22] = struct.pack("<H", comment_len)
    data = bytes(body)
    record = _record(hashlib.sha256(data).hexdigest(), regions, data)
    signature = signer.sign(data + record, NAMESPACE_BUNDLE).encode("ascii")
    comment = record + signature
    if len(comment) != comment_len:  # pragma: no cover - guarded by the fixed signature length
        raise RuntimeError("the bundle signature changed length while signing")
    return data + comment


# ------------------------------------------------------------------ reading


@dataclass
class ArchiveCheck:
    """The signature over the archive's bytes, and the regions found changed."""

    problems: list[tuple[str, str]] = field(default_factory=list)  # (where, what)
    signed: Signed | None = None  # set when the comment signature verifies


def _parse_record(record: bytes, size: int) -> tuple[str, list[_Region], list[str]]:
    """(archive sha256, regions, region hashes) from the comment; ValueError when damaged."""
    lines = record.decode("ascii").split("\n")
    if lines[0] + "\n" != MAGIC.decode("ascii") or lines[-1] != "":
        raise ValueError("its first line or its end is not a labkit record")
    words = lines[1].split(" ")
    if len(words) != 2 or words[0] != "sha256" or len(words[1]) != 64:
        raise ValueError("its sha256 line is damaged")
    digest = words[1]
    regions: list[_Region] = []
    hashes: list[str] = []
    pos = 0
    body = lines[2:-1]
    if len(body) < 2 or not body[-2].startswith("cd ") or not body[-1].startswith("end "):
        raise ValueError("its cd and end lines are damaged")

    def take(kind: str, index: int, length: str, h: str) -> None:
        nonlocal pos
        if not length.isdigit() or not _HEX.fullmatch(h):
            raise ValueError("a region line is damaged")
        regions.append(_Region(kind, index, pos, int(length)))
        hashes.append(h)
        pos += int(length)

    for i, line in enumerate(body[:-2]):
        w = line.split(" ")
        if len(w) != 5 or w[0] != "e":
            raise ValueError(f"entry line {i + 1} is damaged")
        take("h", i, w[1], w[2])
        take("d", i, w[3], w[4])
    for line, kind in ((body[-2], "cd"), (body[-1], "end")):
        w = line.split(" ")
        if len(w) != 3:
            raise ValueError(f"its {kind} line is damaged")
        take(kind, -1, w[1], w[2])
    return digest, regions, hashes


def _central_names(cd: bytes) -> list[str] | None:
    names: list[str] = []
    pos = 0
    try:
        while pos < len(cd):
            if cd[pos:pos + 4] != _CENTRAL:
                return None
            flags = struct.unpack("<H", cd[pos + 8:pos + 10])[0]
            n, m, k = struct.unpack("<HHH", cd[pos + 28:pos + 34])
            raw = cd[pos + 46:pos + 46 + n]
            names.append(raw.decode("utf-8" if flags & 0x800 else "cp437"))
            pos += 46 + n + m + k
    except (struct.error, UnicodeDecodeError):
        return None
    return names


def _local_name(header: bytes) -> str | None:
    try:
        if header[:4] != _LOCAL:
            return None
        flags = struct.unpack("<H", header[6:8])[0]
        n = struct.unpack("<H", header[26:28])[0]
        return header[30:30 + n].decode("utf-8" if flags & 0x800 else "cp437")
    except (struct.error, UnicodeDecodeError):
        return None


def check_archive(data: bytes) -> ArchiveCheck:
    """Check the comment signature over the raw bytes; name every changed region."""
    out = ArchiveCheck()
    p = data.rfind(MAGIC)
    if p < 0:
        out.problems.append((COMMENT, "holds no labkit bundle signature: it was removed or changed, or "
                                      "this zip was not made by labkit bundle"))
        return out
    comment = data[p:]
    b = comment.find(_BEGIN)
    record, armored = (comment, b"") if b < 0 else (comment[:b], comment[b:])
    try:
        digest, regions, hashes = _parse_record(record, p)
    except (ValueError, UnicodeDecodeError) as exc:
        out.problems.append((COMMENT, f"was changed: the signature record is damaged ({exc})"))
        return out
    body = data[:p]
    intact = hashlib.sha256(body).hexdigest() == digest  # the bytes before the comment are as recorded
    try:
        if not intact:
            raise SignatureError("covers other bytes")  # the regions below say which
        if b < 0:
            raise SignatureError("is missing")
        if not is_exact_armor(armored):
            raise SignatureError("is not exactly as written (a line break, space or base64 bit was changed)")
        out.signed = sshsig_verify(armored.decode("ascii"), body + record, NAMESPACE_BUNDLE)
    except (SignatureError, UnicodeDecodeError) as exc:
        reason = str(exc) if isinstance(exc, SignatureError) else "is not ASCII"
        if intact:
            out.problems.append((COMMENT, f"was changed: the bundle signature {reason}"))
            return out
    if intact:
        if sum(r.length for r in regions) != p:
            out.signed = None
            out.problems.append((COMMENT, "was changed: its regions do not add up to the archive"))
        return out
    out.signed = None  # a signature over bytes that are not the recorded ones cannot stand
    covered = sum(r.length for r in regions)
    if covered != p:
        out.problems.append((ARCHIVE, f"was changed: it has {p} bytes before its comment where the signature "
                                      f"record says {covered}: entries were added, removed or resized"))
        return out
    changed = [(r, h) for r, h in zip(regions, hashes, strict=True)
               if _short(body[r.start:r.start + r.length]) != h]
    if not changed:
        out.problems.append((COMMENT, "was changed: the archive hash it records is not the archive's"))
        return out
    names = _central_names(next((body[r.start:r.start + r.length] for r in regions if r.kind == "cd"), b""))
    cd_ok = not any(r.kind == "cd" for r, _ in changed)
    bad_headers = {r.index for r, _ in changed if r.kind == "h"}

    def name(i: int) -> str:
        if cd_ok and names is not None and i < len(names):
            return names[i]
        if i not in bad_headers:
            hr = next(r for r in regions if r.kind == "h" and r.index == i)
            local = _local_name(body[hr.start:hr.start + hr.length])
            if local is not None:
                return local
        return f"entry #{i + 1}"

    for r, _ in changed:
        if r.kind == "h":
            out.problems.append((name(r.index), "changed in the zip (its local header)"))
        elif r.kind == "d":
            out.problems.append((name(r.index), "changed in the zip (its compressed data)"))
        elif r.kind == "cd":
            out.problems.append((CENTRAL, "was changed (names, sizes or attributes of the entries)"))
        else:
            out.problems.append((END, "was changed"))
    return out


@dataclass
class Entries:
    """The entries of a zip that is safe to read: their top folder and names."""

    top: str | None
    infos: list[zipfile.ZipInfo]
    problems: list[tuple[str, str]]  # set: the zip is refused, nothing may be read from it


def _unsafe(name: str, top: str) -> str | None:
    if "\\" in name or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "has an absolute path or a backslash: refused, it could be unpacked outside the folder"
    parts = name.rstrip("/").split("/")
    if any(p in ("..", ".") for p in parts):
        return "has a '..' or '.' part: refused, it could be unpacked outside the folder"
    if "" in parts or _CONTROL.search(name):
        return "has an empty part or a control character in its name: refused"
    if parts[0] != top or len(parts) < 2 and not name.endswith("/"):
        return f"is outside the bundle's top folder {top}/: refused"
    return None


def inspect_entries(zf: zipfile.ZipFile, *, max_entries: int | None = None,
                    max_total: int | None = None) -> Entries:
    """Refuse a dangerous zip from its central directory alone, before any entry is read.
    The bounds default to :data:`MAX_ENTRIES` and :data:`MAX_TOTAL`."""
    max_entries = MAX_ENTRIES if max_entries is None else max_entries
    max_total = MAX_TOTAL if max_total is None else max_total
    infos = zf.infolist()
    if len(infos) > max_entries:
        return Entries(None, [], [(ARCHIVE, f"has {len(infos)} entries, more than the {max_entries} a bundle "
                                            "may hold: refused (a zip bomb?), nothing was unpacked")])
    total = sum(i.file_size for i in infos)
    if total > max_total:
        return Entries(None, [], [(ARCHIVE, f"would inflate to {total} bytes, more than {max_total}: refused "
                                            "(a zip bomb?), nothing was unpacked")])
    if not infos:
        return Entries(None, [], [(ARCHIVE, "is empty: not a labkit bundle")])
    top = infos[0].filename.split("/")[0]
    problems: list[tuple[str, str]] = []
    seen: set[str] = set()
    for i in infos:
        name = i.filename
        why = _unsafe(name, top)
        mode = i.external_attr >> 16
        if why is None and stat.S_ISLNK(mode):
            why = "is a symbolic link: refused, a bundle holds only files"
        elif why is None and stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
            why = "is a device, pipe or socket: refused, a bundle holds only files"
        elif why is None and i.flag_bits & 0x1:
            why = "is encrypted: refused, a bundle is never encrypted"
        elif why is None and name in seen:
            why = "appears twice in the zip: refused, one of the two would silently replace the other"
        seen.add(name)
        if why:
            problems.append((name, why))
    return Entries(top, infos, problems)


def read_entries(zf: zipfile.ZipFile, entries: Entries) -> tuple[dict[str, bytes], list[tuple[str, str]]]:
    """The files of a zip that :func:`inspect_entries` accepted, as relpath (under the top
    folder) -> bytes, in memory; and the entries that could not be read (CRC, damaged data)."""
    files: dict[str, bytes] = {}
    problems: list[tuple[str, str]] = []
    for info in entries.infos:
        if info.is_dir():
            continue
        rel = info.filename.split("/", 1)[1]
        try:
            files[rel] = zf.read(info)
        except Exception as exc:  # noqa: BLE001 - hostile bytes: any failure of zipfile means unreadable
            problems.append((info.filename, f"cannot be read from the zip ({exc})"))
    return files, problems
