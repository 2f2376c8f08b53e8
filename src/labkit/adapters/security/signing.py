"""Ed25519 signatures in OpenSSH's SSHSIG format, so that anyone can check them without labkit.

The keys are plain OpenSSH keys (``ssh-ed25519``), made and used with the ``cryptography``
package. Signatures are the armored ``SSHSIG`` blobs that ``ssh-keygen -Y sign`` writes
(https://github.com/openssh/openssh-portable/blob/master/PROTOCOL.sshsig): a jury with
nothing but OpenSSH can check one with ``ssh-keygen -Y verify``, and a fingerprint printed by
labkit is the one ``ssh-keygen -lf centre.pub`` prints. ``cryptography`` makes and checks the
Ed25519 signature itself; this module only lays out the few SSH wire fields around it
(cryptography has no SSHSIG support, and the small PyPI packages for it only verify).

Namespaces keep a signature made for one purpose from being replayed for another:
:data:`NAMESPACE_RUN` signs a grading run's ``seal.json``, :data:`NAMESPACE_BUNDLE` a
portfolio bundle's ``SHA256SUMS`` and archive, :data:`NAMESPACE_REVOCATION` a key revocation.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = [
    "NAMESPACE_BUNDLE",
    "NAMESPACE_REVOCATION",
    "NAMESPACE_RUN",
    "CentreSigner",
    "SignatureError",
    "Signed",
    "fingerprint",
    "generate_private_key",
    "load_private_key",
    "load_public_line",
    "private_key_bytes",
    "public_line",
    "sshsig_sign",
    "sshsig_verify",
]

NAMESPACE_RUN = "labkit-run"
NAMESPACE_BUNDLE = "labkit-bundle"
NAMESPACE_REVOCATION = "labkit-revocation"

_MAGIC = b"SSHSIG"
_VERSION = 1
_HASH = "sha512"
_KEY_TYPE = b"ssh-ed25519"
_BEGIN = "-----BEGIN SSH SIGNATURE-----"
_END = "-----END SSH SIGNATURE-----"
_MAX_ARMORED = 4096  # an Ed25519 SSHSIG is under 300 characters


class SignatureError(ValueError):
    """A signature that is malformed, made for another purpose, or does not match the data.
    The message says which, in a form that can follow "the signature ...: "."""


@dataclass(frozen=True)
class Signed:
    """What a valid signature says: which key made it."""

    public_key: Ed25519PublicKey
    fingerprint: str
    public_line: str


def generate_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def private_key_bytes(key: Ed25519PrivateKey) -> bytes:
    """The key in OpenSSH's private key format, unencrypted (``ssh-keygen -Y sign -f`` reads it)."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                             serialization.NoEncryption())


def load_private_key(data: bytes) -> Ed25519PrivateKey:
    """Read an OpenSSH (or PKCS#8 PEM) Ed25519 private key; ValueError when it is not one."""
    key: object
    try:
        key = serialization.load_ssh_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise ValueError("not an unencrypted OpenSSH or PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"a {type(key).__name__} key, not an Ed25519 key")
    return key


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _key_blob(pub: Ed25519PublicKey) -> bytes:
    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return _string(_KEY_TYPE) + _string(raw)


def fingerprint(pub: Ed25519PublicKey) -> str:
    """``SHA256:<base64, no padding>`` of the key's SSH blob, as ``ssh-keygen -l`` prints it."""
    digest = hashlib.sha256(_key_blob(pub)).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def public_line(pub: Ed25519PublicKey, comment: str = "") -> str:
    """``ssh-ed25519 AAAA… comment``: one line, as in an OpenSSH ``.pub`` file."""
    b64 = base64.b64encode(_key_blob(pub)).decode("ascii")
    comment = " ".join(comment.split())  # one line
    return f"ssh-ed25519 {b64} {comment}".rstrip()


def load_public_line(text: str) -> tuple[Ed25519PublicKey, str]:
    """The key and comment of an OpenSSH public key line (``ssh-ed25519 AAAA… comment``), or of
    an ``allowed_signers`` line (``principal ssh-ed25519 AAAA…``). ValueError when there is none."""
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if "ssh-ed25519" not in words:
            continue
        i = words.index("ssh-ed25519")
        if i + 1 >= len(words):
            continue
        try:
            key = serialization.load_ssh_public_key(f"ssh-ed25519 {words[i + 1]}".encode("ascii"))
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise ValueError(f"the ssh-ed25519 key is damaged ({exc})") from exc
        if not isinstance(key, Ed25519PublicKey):  # pragma: no cover - the type word says ed25519
            raise ValueError("not an Ed25519 key")
        return key, " ".join(words[i + 2:])
    raise ValueError("no ssh-ed25519 public key in it")


def _signed_data(namespace: str, message: bytes) -> bytes:
    return (_MAGIC + _string(namespace.encode("utf-8")) + _string(b"") + _string(_HASH.encode("ascii"))
            + _string(hashlib.sha512(message).digest()))


def sshsig_sign(key: Ed25519PrivateKey, message: bytes, namespace: str) -> str:
    """The armored SSHSIG signature of ``message`` for ``namespace`` (what ``ssh-keygen -Y sign``
    writes to ``FILE.sig``)."""
    if not namespace:
        raise ValueError("a signature needs a namespace")
    sig = key.sign(_signed_data(namespace, message))
    blob = (_MAGIC + struct.pack(">I", _VERSION) + _string(_key_blob(key.public_key()))
            + _string(namespace.encode("utf-8")) + _string(b"") + _string(_HASH.encode("ascii"))
            + _string(_string(_KEY_TYPE) + _string(sig)))
    b64 = base64.b64encode(blob).decode("ascii")
    lines = [b64[i:i + 70] for i in range(0, len(b64), 70)]
    return "\n".join([_BEGIN, *lines, _END]) + "\n"


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise SignatureError("is truncated")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def uint32(self) -> int:
        return int(struct.unpack(">I", self.take(4))[0])

    def string(self) -> bytes:
        return self.take(self.uint32())

    def end(self) -> None:
        if self.pos != len(self.data):
            raise SignatureError("has trailing bytes")


def _dearmor(armored: str) -> bytes:
    if len(armored) > _MAX_ARMORED:
        raise SignatureError("is too long to be an Ed25519 SSH signature")
    lines = [ln.strip() for ln in armored.strip().splitlines()]
    if len(lines) < 3 or lines[0] != _BEGIN or lines[-1] != _END:
        raise SignatureError(f"is not an armored SSH signature ({_BEGIN} … {_END})")
    body = "".join(lines[1:-1])
    try:
        return base64.b64decode(body, validate=True)
    except ValueError:
        raise SignatureError("is not valid base64") from None


def sshsig_verify(armored: str, message: bytes, namespace: str) -> Signed:
    """Check an armored SSHSIG signature of ``message`` for ``namespace``; return the key that
    made it. Raises :class:`SignatureError` saying what is wrong. Which keys to trust is the
    caller's decision: compare :attr:`Signed.fingerprint` with the expected one."""
    r = _Reader(_dearmor(armored))
    if r.take(6) != _MAGIC:
        raise SignatureError("does not start with SSHSIG")
    if r.uint32() != _VERSION:
        raise SignatureError("has an unknown SSHSIG version")
    key_blob = r.string()
    ns = r.string()
    reserved = r.string()
    hash_alg = r.string()
    sig_blob = r.string()
    r.end()
    kr = _Reader(key_blob)
    if kr.string() != _KEY_TYPE:
        raise SignatureError("was not made with an Ed25519 key")
    raw_key = kr.string()
    kr.end()
    if len(raw_key) != 32:
        raise SignatureError("carries a damaged public key")
    if ns != namespace.encode("utf-8"):
        raise SignatureError(f"was made for {ns.decode('utf-8', 'replace')!r}, not for {namespace!r}")
    if hash_alg not in (b"sha512", b"sha256"):
        raise SignatureError(f"uses an unknown hash {hash_alg.decode('ascii', 'replace')!r}")
    sr = _Reader(sig_blob)
    if sr.string() != _KEY_TYPE:
        raise SignatureError("is not an Ed25519 signature")
    sig = sr.string()
    sr.end()
    try:
        pub = Ed25519PublicKey.from_public_bytes(raw_key)
    except ValueError:  # pragma: no cover - any 32 bytes are accepted today
        raise SignatureError("carries a damaged public key") from None
    digest = (hashlib.sha512 if hash_alg == b"sha512" else hashlib.sha256)(message).digest()
    signed = _MAGIC + _string(ns) + _string(reserved) + _string(hash_alg) + _string(digest)
    try:
        pub.verify(sig, signed)
    except InvalidSignature:
        raise SignatureError("does not match the data: the data or the signature was changed") from None
    return Signed(public_key=pub, fingerprint=fingerprint(pub), public_line=public_line(pub))


@dataclass(frozen=True)
class CentreSigner:
    """The training centre's private key in use, with the centre's name. It signs; it never
    appears in a report, bundle or log (its ``repr`` shows the fingerprint only)."""

    key: Ed25519PrivateKey
    centre: str

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.key.public_key())

    @property
    def public_line(self) -> str:
        return public_line(self.key.public_key(), f"labkit centre key: {self.centre}")

    def sign(self, message: bytes, namespace: str) -> str:
        return sshsig_sign(self.key, message, namespace)

    def __repr__(self) -> str:
        return f"CentreSigner(centre={self.centre!r}, fingerprint={self.fingerprint!r})"
