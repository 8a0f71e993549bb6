"""SSH private keys from an uploaded file (the API's SSHKeyGenerationRequests): OpenSSH's own
format, unencrypted or protected by a passphrase, and unencrypted PEM (PKCS#8 or traditional).

A passphrase-protected OpenSSH key is derived with bcrypt_pbkdf for as many rounds as the file
says (ssh-keygen writes 16); the rounds are read from the file's header and refused above
MAX_BCRYPT_ROUNDS before any derivation. Encrypted PEM keys and PuTTY files are refused with a
line that says how to convert them.
"""

from __future__ import annotations

import base64
import binascii
import struct

from cryptography.hazmat.primitives import serialization

from keystore.crypto.errors import CryptoError
from keystore.crypto.keys import PrivateKey, uploaded_key

MAX_SSH_KEY_BYTES = 10_000
#: ssh-keygen's default is 16 rounds (about 0.1 s); 100 rounds is about 0.6 s of one core.
MAX_BCRYPT_ROUNDS = 100
_OPENSSH_BEGIN = b"-----BEGIN OPENSSH PRIVATE KEY-----"
_OPENSSH_END = b"-----END OPENSSH PRIVATE KEY-----"
_MAGIC = b"openssh-key-v1\x00"
_CONVERT = "convert it with ssh-keygen -p -f FILE (OpenSSH format) first"


def _string(data: bytes, at: int) -> tuple[bytes, int]:
    if at + 4 > len(data):
        raise CryptoError("The OpenSSH key file is truncated.")
    (length,) = struct.unpack(">I", data[at : at + 4])
    end = at + 4 + length
    if end > len(data):
        raise CryptoError("The OpenSSH key file is truncated.")
    return data[at + 4 : end], end


def bcrypt_rounds(pem: bytes) -> int | None:
    """The bcrypt rounds an OpenSSH key file asks for, None when it is not encrypted."""
    body = pem.strip()[len(_OPENSSH_BEGIN) :]
    body = body[: body.find(_OPENSSH_END)] if _OPENSSH_END in body else body
    try:
        raw = base64.b64decode(b"".join(body.split()), validate=True)
    except (binascii.Error, ValueError):
        raise CryptoError("The OpenSSH key file is not valid base64.")
    if not raw.startswith(_MAGIC):
        raise CryptoError("Not an OpenSSH private key file.")
    cipher, at = _string(raw, len(_MAGIC))
    kdf_name, at = _string(raw, at)
    options, at = _string(raw, at)
    if cipher == b"none" and kdf_name == b"none":
        return None
    if kdf_name != b"bcrypt":
        raise CryptoError(f"The OpenSSH key uses the key derivation {kdf_name!r}, not bcrypt.")
    _salt, after_salt = _string(options, 0)
    if after_salt + 4 > len(options):
        raise CryptoError("The OpenSSH key file is truncated.")
    (rounds,) = struct.unpack(">I", options[after_salt : after_salt + 4])
    return int(rounds)


def load_ssh_private_key(data: bytes, password: str | None) -> PrivateKey:
    """The private key of an SSH key file, or a CryptoError for the operator."""
    if len(data) > MAX_SSH_KEY_BYTES:
        raise CryptoError(f"The SSH key file is larger than {MAX_SSH_KEY_BYTES} bytes.")
    text = data.strip()
    key: object
    if text.startswith(_OPENSSH_BEGIN):
        rounds = bcrypt_rounds(text)
        if rounds is not None:
            if not password:
                raise CryptoError("The SSH key is protected by a passphrase; give it as Password.")
            if rounds > MAX_BCRYPT_ROUNDS:
                raise CryptoError(
                    f"The SSH key asks for {rounds} bcrypt rounds; at most {MAX_BCRYPT_ROUNDS} "
                    "are taken (ssh-keygen writes 16)."
                )
        secret = password.encode("utf-8") if rounds is not None and password else None
        try:
            key = serialization.load_ssh_private_key(text, secret)
        except ValueError:
            # With a passphrase, a wrong one shows as a broken checksum of the decrypted part.
            raise CryptoError(
                "Wrong passphrase for the SSH key (or the file is damaged)."
                if rounds is not None
                else "The OpenSSH key cannot be read; the file may be damaged."
            ) from None
    elif text.startswith(b"PuTTY-User-Key-File"):
        raise CryptoError(f"PuTTY key files are not taken; {_CONVERT}.")
    elif text.startswith(b"-----BEGIN") and (b"ENCRYPTED" in text or b"DEK-Info" in text):
        raise CryptoError(f"Encrypted PEM keys are not taken; {_CONVERT}.")
    elif text.startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(
                text, None, unsafe_skip_rsa_key_validation=True
            )
        except (ValueError, TypeError):
            raise CryptoError("The PEM private key cannot be read.") from None
    else:
        raise CryptoError("Not an OpenSSH or PEM private key file.")
    return uploaded_key(key, "The SSH key")
