"""The forms a centre's private key could leak in: to look for in bundles and command outputs."""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from labkit.adapters.security.signing import load_private_key


def private_key_forms(pem: bytes) -> list[bytes]:
    """The OpenSSH PEM, its base64 body lines, the raw 32-byte seed, its base64 and hex, and the
    PKCS#8 DER/PEM of the same key."""
    key = load_private_key(pem)
    seed = key.private_bytes_raw()
    pkcs8_pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    pkcs8_der = key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())
    body = [ln.strip() for ln in pem.splitlines() if ln.strip() and not ln.startswith(b"-----")]
    forms = [pem.strip(), seed, base64.b64encode(seed).rstrip(b"="), base64.urlsafe_b64encode(seed).rstrip(b"="),
             seed.hex().encode(), pkcs8_der, base64.b64encode(pkcs8_der)[:40]]
    forms += [ln for ln in body if len(ln) >= 24]
    forms += [ln.strip() for ln in pkcs8_pem.splitlines() if ln.strip() and not ln.startswith(b"-----")]
    return forms
