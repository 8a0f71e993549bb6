"""What the keystore.crypto tests share: openssl and keytool, file corruptions, and the
traps that fail a test when a key is derived or loaded with validation before its price was paid."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import jks
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from keystore import crypto
from keystore.crypto import kdf, pkcs12_export, pkcs12_import
from tests import pki

needs_openssl = pytest.mark.skipif(pki.OPENSSL is None, reason="openssl is not installed")
needs_keytool = pytest.mark.skipif(pki.KEYTOOL is None, reason="keytool is not installed")

PASSWORD = "S3cret-Pw!"


def subjects(certs: list[x509.Certificate]) -> list[str]:
    return [cert.subject.rfc4514_string() for cert in certs]


def openssl(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    assert pki.OPENSSL is not None
    return subprocess.run(
        [pki.OPENSSL, *args], input=stdin, capture_output=True, timeout=60, check=False
    )


def write_pem(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def key_pem(key: pki.AnyPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def corruptions(data: bytes) -> list[bytes]:
    return [
        b"",
        data[: len(data) // 2],
        data[:-40],
        os.urandom(len(data)),
        data[:4] + os.urandom(200),
    ]


def forbid_key_derivation(monkeypatch) -> None:
    """Fail the test if any key is derived: PBKDF2, scrypt, the PKCS#12 KDF, cryptography's
    decryption of an encrypted key or PKCS#12 file, and pyjks's JKS and JCEKS key protection."""

    def derived(*args, **kwargs):
        raise AssertionError("a key was derived before the file's key-derivation work was priced")

    real_loader = serialization.load_der_private_key

    def unencrypted_only(data, password, **kwargs):
        if password is not None:
            derived()
        return real_loader(data, password, **kwargs)

    monkeypatch.setattr(kdf, "PBKDF2HMAC", derived)
    monkeypatch.setattr(kdf, "Scrypt", derived)
    monkeypatch.setattr(kdf, "pkcs12_kdf", derived)
    monkeypatch.setattr(serialization, "load_der_private_key", unencrypted_only)
    monkeypatch.setattr(pkcs12, "load_pkcs12", derived)
    monkeypatch.setattr(jks.sun_crypto, "jce_pbe_decrypt", derived)
    monkeypatch.setattr(jks.sun_crypto, "jks_pkey_decrypt", derived)


# --------------------------------------------------------------------------- RSA keys from uploads
#
# cryptography's validation of an RSA key costs 0.3 s at 4096 bits and seconds beyond, so keys
# from files are loaded without it: too large a key is refused before it is used, and the
# others prove their consistency with arithmetic and one signature.


def rsa_key_of(numbers: rsa.RSAPrivateNumbers) -> rsa.RSAPrivateKey:
    """The key as the numbers say, consistent or not (no validation)."""
    return numbers.private_key(unsafe_skip_rsa_key_validation=True)


def crafted_rsa_key(bits: int) -> rsa.RSAPrivateKey:
    """An RSA key of exactly ``bits`` bits made of random odd numbers, in microseconds: no
    primes, so that nothing but the size check would accept it. A real key of 16384 bits takes
    minutes to generate."""

    def odd(size: int) -> int:
        return int.from_bytes(os.urandom(-(-size // 8)), "big") >> (-size % 8) | 3 << size - 2 | 1

    p, q = odd(bits // 2), odd(bits - bits // 2)
    n = p * q
    assert n.bit_length() == bits
    numbers = rsa.RSAPrivateNumbers(
        p=p,
        q=q,
        d=odd(bits - 8),
        dmp1=odd(bits // 2 - 8),
        dmq1=odd(bits // 2 - 8),
        iqmp=odd(bits // 2 - 8),
        public_numbers=rsa.RSAPublicNumbers(65537, n),
    )
    return rsa_key_of(numbers)


def uploads(alias: str, key, chain) -> dict[str, tuple[bytes, object]]:
    """The key pair as PKCS#12 (encrypted key, and plain key bag) and JKS, each with its reader."""
    plain = pkcs12.serialize_key_and_certificates(
        alias.encode(), key, chain[0], chain[1:] or None, serialization.NoEncryption()
    )
    return {
        "pkcs12": (pki.make_pkcs12_single(alias, key, chain, PASSWORD), crypto.load_pkcs12),
        "pkcs12 key bag": (
            pkcs12_export.sealed_pfx(pkcs12_import.pfx_parts(plain)[2], PASSWORD, 2048),
            None,
        ),
        "jks": (pki.make_jks([(alias, key, chain)], PASSWORD), crypto.load_jks),
    }


def only_unvalidated_loads(monkeypatch) -> list[object]:
    """Fail the test if a key from a file is loaded with cryptography's RSA validation; the
    keys that were loaded come back in the list."""
    real_loader = serialization.load_der_private_key
    loaded: list[object] = []

    def loader(data, password, **kwargs):
        assert kwargs.get("unsafe_skip_rsa_key_validation") is True, "a validating load"
        key = real_loader(data, password, **kwargs)
        loaded.append(key)
        return key

    monkeypatch.setattr(serialization, "load_der_private_key", loader)
    return loaded


def damaged_copy(key: rsa.RSAPrivateKey, part: str) -> rsa.RSAPrivateKey:
    """The key with one private parameter changed: same public key, so same certificate."""
    numbers = key.private_numbers()
    parts = {name: getattr(numbers, name) for name in ("p", "q", "d", "dmp1", "dmq1", "iqmp")}
    parts[part] ^= 2  # stays odd where it must, and below its bound
    return rsa_key_of(rsa.RSAPrivateNumbers(**parts, public_numbers=numbers.public_numbers))
