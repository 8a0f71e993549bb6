"""The one error every reader of untrusted bytes raises, and the size check that comes first.

A CryptoError's message is a short sentence for an operator; it never contains a password or
key bytes.
"""

from __future__ import annotations


class CryptoError(ValueError):
    """A clean, user-facing message (never contains key material or passwords)."""


def checked_size(data: object, limit: int, limit_text: str, kind: str) -> bytes:
    """``data`` as bytes, refused before any parsing when it is not bytes or over ``limit``."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise CryptoError("The upload is not a file.")
    if len(data) > limit:
        raise CryptoError(f"The file is larger than {limit_text}, the limit for {kind}.")
    return bytes(data)
