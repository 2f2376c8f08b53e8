"""The training centre's signing keys (``<home>/keys``) and the keys a verification trusts.

Layout of the key store (the folder is 0700)::

    keyring.json              every key the centre ever made: fingerprint, public line, centre,
                              created_at, status (active | retired | revoked), retired_at,
                              revoked_at, reason; kept forever
    centre-<fp>               the active key's private key, OpenSSH format, 0600 (usable with
                              ``ssh-keygen -Y sign -f``); deleted when the key is rotated out
    centre-<fp>.pub           each key's public line, kept forever
    revocations.json          signed revocation statements (namespace ``labkit-revocation``)
    .lock                     ``flock``-ed around every change

``<fp>`` is the key's SHA256 fingerprint in URL-safe base64. One key is active (it signs);
``labkit keys rotate`` makes a new one and retires the old one (its private key is deleted,
its public key still verifies the runs it signed); ``labkit keys revoke`` marks a retired key
as compromised: whatever it signed is then reported as revoked.

A revocation statement is the canonical JSON ``{"fingerprint", "public_line", "reason",
"revoked_at"}`` (sorted keys, no spaces), kept verbatim in ``statement`` and signed by the key
active at the time, so a jury given ``revocations.json`` can check who revoked what.

:class:`Trust` is the set of keys one verification believes: the local key store
(:meth:`Trust.from_keyring`) or the files a jury was handed (:meth:`Trust.from_files`: a
``centre.pub``, an ``allowed_signers``, a ``revocations.json``).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, cast

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from labkit.adapters.security.signing import (
    NAMESPACE_BUNDLE,
    NAMESPACE_REVOCATION,
    NAMESPACE_RUN,
    CentreSigner,
    SignatureError,
    fingerprint,
    generate_private_key,
    load_private_key,
    load_public_line,
    private_key_bytes,
    public_line,
    sshsig_verify,
)
from labkit.adapters.storage.files import write_atomic
from labkit.errors import UserError

__all__ = [
    "ALLOWED_SIGNERS",
    "CENTRE_PUB",
    "REVOCATIONS",
    "KeyInfo",
    "KeyStatus",
    "Keyring",
    "Trust",
]

KeyStatus = Literal["active", "retired", "revoked", "unknown"]

META = "keyring.json"
REVOCATIONS = "revocations.json"
CENTRE_PUB = "centre.pub"
ALLOWED_SIGNERS = "allowed_signers"
LOCK = ".lock"
PRINCIPAL = "centre"  # the signer identity in allowed_signers (ssh-keygen -Y verify -I centre)
_VERSION = 1
_MAX_CENTRE = 120
_MAX_REASON = 500
_MIN_PREFIX = 4
_MAX_FILE = 1 << 20  # a key store file or a trust file larger than this is not one
_NO_KEY = "no centre key: run `labkit keys init --centre NAME`"
_COMMENT = re.compile(r"^labkit centre key: (?P<centre>.*?)(?: \(created (?P<created>[^,()\s]+)"
                      r"(?:, retired (?P<retired>[^,()\s]+))?\))?$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_STATUSES = ("active", "retired", "revoked")


@dataclass(frozen=True)
class KeyInfo:
    """One public key and what the centre says about it. Never holds a private key."""

    fingerprint: str
    public_line: str
    centre: str
    created_at: str
    status: KeyStatus
    revoked_at: str | None = None
    reason: str | None = None
    retired_at: str | None = None

    @property
    def trusted(self) -> bool:
        """Its signatures are accepted (active or retired, not revoked)."""
        return self.status in ("active", "retired")

    def comment(self) -> str:
        """The comment of its line in ``centre.pub``: centre, creation and retirement dates."""
        dates = f"created {self.created_at}" + (f", retired {self.retired_at}" if self.retired_at else "")
        return f"labkit centre key: {self.centre} ({dates})" if self.created_at else f"labkit centre key: {self.centre}"

    def pub_line(self) -> str:
        """``ssh-ed25519 AAAA… labkit centre key: NAME (created …)``, as in ``centre.pub``."""
        pub, _ = load_public_line(self.public_line)
        return public_line(pub, self.comment())

    def to_public(self) -> dict[str, Any]:
        return asdict(self)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _stem(fp: str) -> str:
    """A file name for a key: ``centre-`` + the fingerprint's base64 made URL-safe."""
    return "centre-" + fp.removeprefix("SHA256:").replace("+", "-").replace("/", "_")


def _one_line(text: str, what: str, limit: int, example: str) -> str:
    value = " ".join(str(text).split())
    if not value or _CONTROL.search(value) or len(value) > limit:
        raise UserError(f"the {what} must be one line of 1 to {limit} printable characters; "
                        f"give it again, for example {example}.")
    return value


def _json_bytes(data: Any) -> bytes:
    return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _canonical(data: dict[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _read_small(path: Path, what: str, fix: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_FILE + 1)
    except FileNotFoundError:
        raise UserError(f"{what} {path} does not exist; {fix}.") from None
    except IsADirectoryError:
        raise UserError(f"{what} {path} is a folder, not a file; {fix}.") from None
    except OSError as exc:
        raise UserError(f"{what} {path} cannot be read ({exc.strerror}); {fix}.") from None
    if len(data) > _MAX_FILE:
        raise UserError(f"{what} {path} is larger than {_MAX_FILE} bytes, so it is not one; {fix}.")
    return data


def _key_from_record(rec: Any, path: Path) -> KeyInfo:
    fields = ("fingerprint", "public_line", "centre", "created_at", "status")
    if not isinstance(rec, dict) or not all(isinstance(rec.get(k), str) for k in fields) \
            or rec["status"] not in _STATUSES:
        raise ValueError("a key record lacks fingerprint, public_line, centre, created_at or status")
    pub, _ = load_public_line(rec["public_line"])
    if fingerprint(pub) != rec["fingerprint"]:
        raise ValueError(f"the public key of {rec['fingerprint']} does not match its fingerprint")
    opt = {k: rec.get(k) if isinstance(rec.get(k), str) else None for k in ("revoked_at", "reason", "retired_at")}
    return KeyInfo(fingerprint=rec["fingerprint"], public_line=rec["public_line"], centre=rec["centre"],
                   created_at=rec["created_at"], status=cast(KeyStatus, rec["status"]), **opt)


_FRESH_COPY = "get a fresh copy from the centre (`labkit keys export DIR`)"


def _parse_revocations(data: bytes, source: Path, fix: str = _FRESH_COPY) -> list[dict[str, Any]]:
    """The entries of a revocations.json, each with a parsed ``statement``; UserError if malformed.
    Signatures are checked by the caller (who knows which keys may sign)."""
    try:
        doc = json.loads(data)
        entries = doc["revocations"]
        if not isinstance(entries, list):
            raise ValueError("revocations is not a list")
        out = []
        for e in entries:
            statement = json.loads(e["statement"])
            if not isinstance(statement, dict) or not all(
                    isinstance(statement.get(k), str) for k in ("fingerprint", "revoked_at", "reason")):
                raise ValueError("a statement lacks fingerprint, revoked_at or reason")
            if not isinstance(e.get("signature"), str):
                raise ValueError("an entry has no signature")
            out.append({**e, "parsed": statement})
        return out
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{source} is not a valid revocations.json ({exc}); {fix}.") from None


def _check_revocation(entry: dict[str, Any], keys: dict[str, KeyInfo], source: Path) -> str:
    """Check a revocation's signature: made by a key in ``keys`` or by the revoked key itself.
    Returns the signer's fingerprint; UserError when it does not hold."""
    revoked = entry["parsed"]["fingerprint"]
    try:
        signed = sshsig_verify(entry["signature"], entry["statement"].encode("utf-8"), NAMESPACE_REVOCATION)
    except SignatureError as exc:
        raise UserError(f"the revocation of {revoked} in {source}: the signature {exc}; "
                        "get a fresh copy of revocations.json from the centre.") from None
    if signed.fingerprint not in keys and signed.fingerprint != revoked:
        raise UserError(f"the revocation of {revoked} in {source} is signed by {signed.fingerprint}, a key you "
                        "did not pass; pass the centre's centre.pub with it.")
    return signed.fingerprint


class Keyring:
    """The centre's key store in ``root`` (``<home>/keys``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # ---------------------------------------------------------------- files and lock
    @property
    def meta_path(self) -> Path:
        return self.root / META

    def private_path(self, fp: str) -> Path:
        return self.root / _stem(fp)

    def public_path(self, fp: str) -> Path:
        return self.root / f"{_stem(fp)}.pub"

    @contextmanager
    def _locked(self, *, exclusive: bool) -> Iterator[None]:
        try:
            if exclusive:
                self.root.parent.mkdir(parents=True, exist_ok=True)
                self.root.mkdir(mode=0o700, exist_ok=True)
                os.chmod(self.root, 0o700)
            fd = os.open(self.root / LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            raise UserError(f"the key store {self.root} cannot be used ({exc.strerror}); run labkit as the user "
                            "that made it (root), or set LABKIT_HOME to a folder you own.") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)  # releases the flock

    def _read(self) -> list[KeyInfo]:
        path = self.meta_path
        if not path.exists():
            return []
        fix = f"restore {self.root} from a backup"
        data = _read_small(path, "the key store's index", fix)
        try:
            doc = json.loads(data)
            if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
                raise ValueError("no list of keys")
            keys = [_key_from_record(r, path) for r in doc["keys"]]
        except (ValueError, TypeError) as exc:
            raise UserError(f"the key store's index {path} is damaged ({exc}); {fix}.") from None
        if sum(k.status == "active" for k in keys) > 1:
            raise UserError(f"the key store's index {path} is damaged (more than one active key); {fix}.")
        return keys

    def _write(self, keys: list[KeyInfo]) -> None:
        write_atomic(self.meta_path, _json_bytes({"version": _VERSION, "keys": [k.to_public() for k in keys]}),
                     mode=0o600, sync_dir=True)

    def _read_revocations(self) -> list[dict[str, Any]]:
        path = self.root / REVOCATIONS
        if not path.exists():
            return []
        fix = f"restore {self.root} from a backup"
        return _parse_revocations(_read_small(path, "the revocation list", fix), path, fix)

    def _load_private(self, info: KeyInfo) -> Ed25519PrivateKey:
        path = self.private_path(info.fingerprint)
        restore = "restore it from a backup, or run `labkit keys rotate` to make a new key"
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            raise UserError(f"the centre's private key {path} is missing; {restore}.") from None
        except OSError as exc:
            raise UserError(f"the centre's private key {path} cannot be opened ({exc.strerror}); {restore}.") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise UserError(f"the centre's private key {path} is not a regular file; {restore}.")
            if st.st_mode & 0o077:
                raise UserError(f"the centre's private key {path} can be read or changed by other users "
                                f"(mode {stat.S_IMODE(st.st_mode):04o}), so it is not used; run "
                                f"`chmod 600 {path}` and try again.")
            with os.fdopen(os.dup(fd), "rb") as f:
                data = f.read(_MAX_FILE)
        finally:
            os.close(fd)
        try:
            key = load_private_key(data)
        except ValueError as exc:
            raise UserError(f"the centre's private key {path} is damaged ({exc}); {restore}.") from None
        if fingerprint(key.public_key()) != info.fingerprint:
            raise UserError(f"the centre's private key {path} is not the key {info.fingerprint} it should be; "
                            f"{restore}.")
        return key

    # ---------------------------------------------------------------- reading
    def keys(self) -> list[KeyInfo]:
        """Every key the centre made, oldest first, with its status."""
        if not self.root.is_dir():
            return []
        return self._read()

    def active(self) -> KeyInfo | None:
        return next((k for k in self.keys() if k.status == "active"), None)

    def signer(self) -> CentreSigner | None:
        """The active key, ready to sign; None when no key was made. UserError when it exists
        but cannot be used (missing, damaged, readable by others)."""
        if not self.meta_path.exists():
            return None
        with self._locked(exclusive=False):
            info = next((k for k in self._read() if k.status == "active"), None)
            if info is None:
                return None
            return CentreSigner(self._load_private(info), info.centre)

    def require_signer(self) -> CentreSigner:
        signer = self.signer()
        if signer is None:
            raise UserError(f"{_NO_KEY} first (it makes the training centre's signing key).")
        return signer

    def find(self, ref: str) -> KeyInfo:
        """The key whose fingerprint is ``ref`` or starts with it (with or without ``SHA256:``)."""
        return _find(self.keys(), ref)

    # ---------------------------------------------------------------- changes
    def _new_key(self, centre: str) -> KeyInfo:
        key = generate_private_key()
        pub = key.public_key()
        fp = fingerprint(pub)
        info = KeyInfo(fingerprint=fp, public_line=public_line(pub, f"labkit centre key: {centre}"), centre=centre,
                       created_at=_now(), status="active")
        write_atomic(self.private_path(fp), private_key_bytes(key), mode=0o600, sync_dir=True)
        write_atomic(self.public_path(fp), (info.pub_line() + "\n").encode("utf-8"), mode=0o644, sync_dir=True)
        return info

    def _commit(self, keys: list[KeyInfo], new: KeyInfo) -> None:
        """Write the index naming ``new``; if that fails, remove ``new``'s files (nothing half-made)."""
        try:
            self._write(keys)
        except BaseException:
            self.private_path(new.fingerprint).unlink(missing_ok=True)
            self.public_path(new.fingerprint).unlink(missing_ok=True)
            raise

    def init(self, centre: str) -> KeyInfo:
        """Make the centre's first key."""
        centre = _one_line(centre, "centre name", _MAX_CENTRE, '--centre "CFA Lyon Informatique"')
        with self._locked(exclusive=True):
            keys = self._read()
            if keys:
                current = next((k for k in keys if k.status == "active"), keys[-1])
                raise UserError(f"the centre already has a key ({current.fingerprint}, {current.status}); "
                                "run `labkit keys rotate` to replace it, or `labkit keys show` to see it.")
            info = self._new_key(centre)
            self._commit([info], info)
            return info

    def rotate(self) -> KeyInfo:
        """Make a new active key; the old one is retired: its private key is deleted, its public
        key kept, so the runs it signed still verify."""
        with self._locked(exclusive=True):
            keys = self._read()
            if not keys:
                raise UserError(f"{_NO_KEY} first; there is nothing to rotate.")
            old = next((k for k in keys if k.status == "active"), None)
            info = self._new_key(old.centre if old else keys[-1].centre)
            now = _now()
            kept = [replace(k, status="retired", retired_at=now) if k is old else k for k in keys]
            self._commit([*kept, info], info)
            if old is not None:
                self.private_path(old.fingerprint).unlink(missing_ok=True)
            return info

    def revoke(self, fingerprint: str, reason: str) -> KeyInfo:
        """Mark a retired key as compromised, with a statement signed by the active key."""
        reason = _one_line(reason, "reason", _MAX_REASON, '--reason "laptop stolen on 2026-11-02"')
        with self._locked(exclusive=True):
            keys = self._read()
            if not keys:
                raise UserError(f"{_NO_KEY} first; there is no key to revoke.")
            target = _find(keys, fingerprint)
            if target.status == "active":
                raise UserError(f"{target.fingerprint} is the active key and cannot be revoked while it signs; "
                                f"run `labkit keys rotate` first, then `labkit keys revoke {target.fingerprint}`.")
            if target.status == "revoked":
                raise UserError(f"{target.fingerprint} was already revoked on {target.revoked_at} "
                                f"({target.reason}); nothing to do.")
            active = next((k for k in keys if k.status == "active"), None)
            if active is None:
                raise UserError("the centre has no active key to sign the revocation; run `labkit keys rotate` "
                                "first.")
            signer = CentreSigner(self._load_private(active), active.centre)
            now = _now()
            statement = _canonical({"fingerprint": target.fingerprint, "public_line": target.public_line,
                                    "reason": reason, "revoked_at": now})
            entry = {"fingerprint": target.fingerprint, "revoked_at": now, "reason": reason,
                     "signed_by": signer.fingerprint, "statement": statement,
                     "signature": signer.sign(statement.encode("utf-8"), NAMESPACE_REVOCATION)}
            entries = [{k: v for k, v in e.items() if k != "parsed"} for e in self._read_revocations()
                       if e["parsed"]["fingerprint"] != target.fingerprint]
            write_atomic(self.root / REVOCATIONS, _json_bytes({"version": _VERSION, "revocations": [*entries, entry]}),
                         mode=0o644, sync_dir=True)
            revoked = replace(target, status="revoked", revoked_at=now, reason=reason)
            self._write([revoked if k is target else k for k in keys])
            return revoked

    def export(self, folder: Path) -> list[Path]:
        """Write what a jury needs to check the centre's signatures into ``folder``:
        ``centre.pub`` (every trusted key, one line each), ``allowed_signers`` (for
        ``ssh-keygen -Y verify -I centre``) and ``revocations.json``. No private key."""
        folder = Path(folder)
        with self._locked(exclusive=False) if self.root.is_dir() else _nothing():
            keys = self.keys()
            if not keys:
                raise UserError(f"{_NO_KEY} first; there is nothing to export.")
            revocations = [{k: v for k, v in e.items() if k != "parsed"} for e in self._read_revocations()]
        if folder.exists() and not folder.is_dir():
            raise UserError(f"{folder} is a file, not a folder; give a folder to export the keys into.")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot make the folder {folder} ({exc.strerror}); give a folder you can write.") from None
        trusted = [k for k in keys if k.trusted]
        namespaces = ",".join((NAMESPACE_RUN, NAMESPACE_BUNDLE, NAMESPACE_REVOCATION))
        files = {
            CENTRE_PUB: "".join(k.pub_line() + "\n" for k in trusted),
            ALLOWED_SIGNERS: "".join(f'{PRINCIPAL} namespaces="{namespaces}" {k.pub_line()}\n' for k in trusted),
            REVOCATIONS: json.dumps({"version": _VERSION, "revocations": revocations}, indent=2,
                                    ensure_ascii=False) + "\n",
        }
        out = []
        for name, text in files.items():
            write_atomic(folder / name, text.encode("utf-8"), mode=0o644, sync_dir=True)
            out.append(folder / name)
        return out


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def _find(keys: list[KeyInfo], ref: str) -> KeyInfo:
    want = str(ref).strip().removeprefix("SHA256:")
    if len(want) < _MIN_PREFIX:
        raise UserError(f"{ref!r} is too short to name a key; give its fingerprint (SHA256:…) or at least "
                        f"{_MIN_PREFIX} of its first characters, as `labkit keys show` prints it.")
    hits = [k for k in keys if k.fingerprint.removeprefix("SHA256:").startswith(want)]
    if not hits:
        raise UserError(f"no centre key has the fingerprint {ref!r}; `labkit keys show` lists them.")
    if len(hits) > 1:
        raise UserError(f"{ref!r} names {len(hits)} keys ({', '.join(k.fingerprint for k in hits)}); "
                        "give more of the fingerprint.")
    return hits[0]


@dataclass(frozen=True)
class Trust:
    """The keys a verification trusts, by fingerprint, with their status (a fingerprint that is
    not here is unknown: not trusted)."""

    keys: dict[str, KeyInfo]

    @classmethod
    def from_keyring(cls, kr: Keyring) -> Trust:
        return cls({k.fingerprint: k for k in kr.keys()})

    @classmethod
    def from_files(cls, paths: list[Path]) -> Trust:
        """Keys from ``.pub`` / ``allowed_signers`` files and revocations from ``revocations.json``
        files (each revocation must be signed by one of the keys passed or by the revoked key)."""
        fix = "pass the centre's centre.pub (`labkit keys show --pub` prints it)"
        keys: dict[str, KeyInfo] = {}
        revocations: list[tuple[Path, dict[str, Any]]] = []
        for path in map(Path, paths):
            data = _read_small(path, "the key file", fix)
            text = data.decode("utf-8", "replace")
            if path.name.endswith(".json") or text.lstrip().startswith("{"):
                revocations += [(path, e) for e in _parse_revocations(data, path)]
                continue
            found = 0
            for n, line in enumerate(text.splitlines(), 1):
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                try:
                    pub, comment = load_public_line(line)
                except ValueError as exc:
                    raise UserError(f"line {n} of {path} is not an ssh-ed25519 public key ({exc}); {fix}.") from None
                found += 1
                fp = fingerprint(pub)
                m = _COMMENT.match(comment)
                retired = m.group("retired") if m else None
                keys[fp] = KeyInfo(fingerprint=fp, public_line=public_line(pub, comment),
                                   centre=m.group("centre") if m else comment,
                                   created_at=(m.group("created") or "") if m else "",
                                   status="retired" if retired else "active", retired_at=retired)
            if not found:
                raise UserError(f"{path} holds no ssh-ed25519 public key; {fix}.")
        for path, entry in revocations:
            _check_revocation(entry, keys, path)
            st = entry["parsed"]
            fp = st["fingerprint"]
            known = keys.get(fp)
            line = st.get("public_line") if isinstance(st.get("public_line"), str) else ""
            keys[fp] = KeyInfo(fingerprint=fp, public_line=known.public_line if known else line,
                               centre=known.centre if known else "", created_at=known.created_at if known else "",
                               status="revoked", revoked_at=st["revoked_at"], reason=st["reason"],
                               retired_at=known.retired_at if known else None)
        return cls(keys)

    def status(self, fingerprint: str) -> KeyInfo | None:
        """What is known of this key; None when it is not trusted at all (unknown)."""
        return self.keys.get(fingerprint)
