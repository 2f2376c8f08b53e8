"""A bundle folder's ``SHA256SUMS``, its signature and the ``allowed_signers`` line for a jury.

``SHA256SUMS`` is GNU ``sha256sum`` output (``<hex>  <relpath>``, one line a file, sorted by
path) for every file of the folder except itself and ``SHA256SUMS.sig``; ``SHA256SUMS.sig``
is the centre's SSHSIG signature of its exact bytes (namespace ``labkit-bundle``). With
``allowed_signers`` (``centre ssh-ed25519 AAAA…``) a jury checks a bundle with OpenSSH and
coreutils only::

    ssh-keygen -Y verify -f allowed_signers -I centre -n labkit-bundle -s SHA256SUMS.sig < SHA256SUMS
    sha256sum -c SHA256SUMS

``allowed_signers`` comes with the bundle, so it proves only that the files were not changed
since someone signed them; which key is the centre's is decided by the jury's trusted keys
(``labkit verify --key``), never by this file.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass

from labkit.adapters.security.signing import NAMESPACE_BUNDLE, CentreSigner

__all__ = [
    "ALLOWED_SIGNERS",
    "PRINCIPAL",
    "SUMS",
    "SUMS_SIG",
    "SumsCheck",
    "allowed_signers_line",
    "check_sums",
    "is_exact_armor",
    "parse_sums",
    "render_sums",
    "sign_sums",
]

SUMS = "SHA256SUMS"
SUMS_SIG = "SHA256SUMS.sig"
ALLOWED_SIGNERS = "allowed_signers"
PRINCIPAL = "centre"  # the identity a jury passes to ssh-keygen -Y verify -I
UNSUMMED = (SUMS, SUMS_SIG)

_BEGIN = b"-----BEGIN SSH SIGNATURE-----"
_END = b"-----END SSH SIGNATURE-----"
_LINE = re.compile(r"^([0-9a-f]{64})  (\S.*)$")
_MAX_SUMS = 16 * 1024 * 1024


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check_name(rel: str) -> None:
    parts = rel.split("/")
    if (not rel or rel.startswith("/") or any(p in ("", ".", "..") for p in parts)
            or any(c in rel for c in "\\\n\r") or rel != rel.strip()):
        raise ValueError(
            f"bundle file name {rel!r} cannot be listed in SHA256SUMS (empty part, '..', backslash, "
            "line break or surrounding space); rename the file"
        )


def render_sums(files: Mapping[str, bytes]) -> bytes:
    """``SHA256SUMS`` for ``files`` (relpath -> bytes), minus SHA256SUMS and its signature."""
    lines = []
    for rel in sorted(files):
        if rel in UNSUMMED:
            continue
        _check_name(rel)
        lines.append(f"{_sha256(files[rel])}  {rel}\n")
    return "".join(lines).encode("utf-8")


def sign_sums(sums: bytes, signer: CentreSigner) -> bytes:
    return signer.sign(sums, NAMESPACE_BUNDLE).encode("ascii")


def allowed_signers_line(signer: CentreSigner) -> bytes:
    """``centre ssh-ed25519 AAAA…`` (no comment: ssh-keygen reads exactly principal, key)."""
    words = signer.public_line.split()
    return f"{PRINCIPAL} {words[0]} {words[1]}\n".encode("ascii")


def is_exact_armor(armored: bytes) -> bool:
    """True when ``armored`` is byte for byte the armor :func:`sshsig_sign` writes for the blob it
    holds (70-character base64 lines, ``\n`` line ends). A signature parser forgives other line
    breaks, spaces and unused base64 bits; a proof must not let any byte change unnoticed."""
    lines = armored.split(b"\n")
    if len(lines) < 4 or lines[-1] != b"" or lines[0] != _BEGIN or lines[-2] != _END:
        return False
    body = b"".join(lines[1:-2])
    try:
        blob = base64.b64decode(body, validate=True)
    except ValueError:
        return False
    b64 = base64.b64encode(blob)
    return lines[1:-2] == [b64[i:i + 70] for i in range(0, len(b64), 70)]


def parse_sums(data: bytes) -> tuple[dict[str, str], list[str]]:
    """SHA256SUMS as relpath -> hex, and the problems of its lines (bad line, duplicate)."""
    listed: dict[str, str] = {}
    problems: list[str] = []
    if len(data) > _MAX_SUMS:
        return listed, [f"is larger than {_MAX_SUMS} bytes, not a bundle's list of files"]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return listed, ["is not UTF-8 text"]
    if text and not text.endswith("\n"):
        problems.append("does not end with a line break")
    for n, line in enumerate(text.splitlines(), 1):
        m = _LINE.match(line)
        if not m:
            problems.append(f"line {n} is not '<sha256>  <path>'")
            continue
        digest, rel = m.groups()
        if rel in listed:
            problems.append(f"line {n} lists {rel} twice")
        listed[rel] = digest
    return listed, problems


@dataclass(frozen=True)
class SumsCheck:
    """The files of a bundle folder against its SHA256SUMS: (relpath, what) problems."""

    problems: list[tuple[str, str]]
    listed: dict[str, str]


def check_sums(sums: bytes, files: Mapping[str, bytes | None]) -> SumsCheck:
    """Compare ``files`` (relpath -> bytes, None for a link or special file) with ``sums``:
    changed, missing, added, and renamed (a missing and an added file with the same hash)."""
    listed, line_problems = parse_sums(sums)
    problems: list[tuple[str, str]] = [(SUMS, p) for p in line_problems]
    present = {rel: data for rel, data in files.items() if rel not in UNSUMMED}
    missing = sorted(set(listed) - set(present))
    added = sorted(set(present) - set(listed))
    added_hash = {rel: _sha256(d) for rel in added if (d := present[rel]) is not None}
    renamed_to: dict[str, str] = {}
    for rel in missing:
        for new, h in added_hash.items():
            if h == listed[rel] and new not in renamed_to.values():
                renamed_to[rel] = new
                break
    for rel in missing:
        if rel in renamed_to:
            problems.append((rel, f"missing: renamed to {renamed_to[rel]} (same content)"))
        else:
            problems.append((rel, "missing"))
    for rel in added:
        if rel in renamed_to.values():
            old = next(o for o, n in renamed_to.items() if n == rel)
            problems.append((rel, f"added: {old} renamed (same content)"))
        elif present[rel] is None:
            problems.append((rel, "added (a link or special file)"))
        else:
            problems.append((rel, "added"))
    for rel in sorted(set(listed) & set(present)):
        data = present[rel]
        if data is None:
            problems.append((rel, "replaced by a link or special file"))
        elif _sha256(data) != listed[rel]:
            problems.append((rel, "changed"))
    return SumsCheck(problems=problems, listed=listed)
