"""Envelope encryption of private keys at rest under the key-encryption keys in KEYSTORE_KEK.

AES-256-GCM; the associated data binds each ciphertext to its row, so a ciphertext copied to another
row (or another alias or version) fails to open. Each ciphertext records which KEK sealed it, so
keys can be rotated: the first KEK seals, every listed KEK opens.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.core.exceptions import ImproperlyConfigured

from keystore import conf

NONCE_BYTES = 12


class SealingError(Exception):
    """A sealed private key could not be opened (wrong row, unknown or wrong KEK)."""


@dataclass(frozen=True)
class Kek:
    kek_id: str
    key: bytes


def decode_kek(text: str) -> bytes:
    """The 32 raw bytes of one KEYSTORE_KEK key; ImproperlyConfigured naming what is wrong."""
    padded = text + "=" * (-len(text) % 4)
    try:
        raw = base64.urlsafe_b64decode(padded.encode("ascii"))
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise ImproperlyConfigured("KEYSTORE_KEK holds a value that is not URL-safe base64.")
    if len(raw) != 32:
        raise ImproperlyConfigured("Each KEYSTORE_KEK key must be 32 bytes (URL-safe base64).")
    return raw


def kek_id_of(key: bytes) -> str:
    """A short public identifier of a KEK: it names the KEK without revealing it."""
    return hashlib.sha256(b"kek-id:" + key).hexdigest()[:16]


def keks() -> list[Kek]:
    configured = conf.kek_texts()
    if not configured:
        raise ImproperlyConfigured("KEYSTORE_KEK is empty.")
    result = []
    for text in configured:
        raw = decode_kek(text)
        result.append(Kek(kek_id_of(raw), raw))
    return result


def current_kek_id() -> str:
    return keks()[0].kek_id


def seal(plaintext: bytes, associated_data: bytes) -> tuple[str, bytes]:
    """Encrypt under the first KEK; returns (kek_id, nonce + ciphertext)."""
    kek = keks()[0]
    nonce = os.urandom(NONCE_BYTES)
    return kek.kek_id, nonce + AESGCM(kek.key).encrypt(nonce, plaintext, associated_data)


def unseal(kek_id: str, blob: bytes, associated_data: bytes) -> bytes:
    """Decrypt with the KEK that sealed the blob; SealingError for an unknown KEK or another row."""
    for kek in keks():
        if kek.kek_id == kek_id:
            try:
                return AESGCM(kek.key).decrypt(
                    bytes(blob[:NONCE_BYTES]), bytes(blob[NONCE_BYTES:]), associated_data
                )
            except InvalidTag:
                raise SealingError(
                    "The stored private key does not open for this entry "
                    "(it was moved, altered or sealed for another row)."
                )
    raise SealingError(f"The private key was sealed with KEK {kek_id}, which is not configured.")
