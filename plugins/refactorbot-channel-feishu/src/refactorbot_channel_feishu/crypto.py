"""Feishu's event security: the request signature and the AES-256-CBC envelope of ``{"encrypt": ...}`` bodies.

- ``X-Lark-Signature`` = hex SHA-256 of ``X-Lark-Request-Timestamp + X-Lark-Request-Nonce +
  encrypt key + raw body`` (sent when the app has an encrypt key).
- ``encrypt`` = base64 of ``IV (16 bytes) + AES-256-CBC(key = SHA-256(encrypt key), PKCS#7(JSON))``.

``cryptography`` is imported inside ``decrypt`` only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib

__all__ = ["DecryptError", "decrypt", "signature"]


class DecryptError(ValueError):
    """An ``encrypt`` value that does not decrypt to UTF-8 with the configured key."""


def signature(timestamp: str, nonce: str, encrypt_key: str, body: bytes) -> str:
    """Return the expected ``X-Lark-Signature`` of a request."""
    return hashlib.sha256((timestamp + nonce + encrypt_key).encode("utf-8") + body).hexdigest()


def decrypt(encrypted: str, encrypt_key: str) -> str:
    """Return the plaintext of an ``encrypt`` value; raise ``DecryptError`` when it cannot be one."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    try:
        data = base64.b64decode(encrypted, validate=True)
    except (binascii.Error, ValueError):
        raise DecryptError("encrypt is not base64") from None
    if len(data) < 32 or len(data) % 16:
        raise DecryptError("encrypt has the wrong length for AES-256-CBC")
    key = hashlib.sha256(encrypt_key.encode("utf-8")).digest()
    decryptor = Cipher(algorithms.AES(key), modes.CBC(data[:16])).decryptor()
    padded = decryptor.update(data[16:]) + decryptor.finalize()
    pad = padded[-1]
    if not 1 <= pad <= 16 or padded[-pad:] != bytes([pad]) * pad:
        raise DecryptError("encrypt does not decrypt with this key")
    try:
        return padded[:-pad].decode("utf-8")
    except UnicodeDecodeError:
        raise DecryptError("encrypt does not decrypt to UTF-8") from None
