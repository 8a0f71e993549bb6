"""Certificate files: read and write PEM (one block or a bundle), DER (``.cer``) and PKCS#7
certs-only bundles (``.p7b``), and a certificate authority's answer to a signing request.

Every reader checks the size first and raises CryptoError and nothing else.
"""

from __future__ import annotations

import base64
import binascii
import re
import warnings
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from keystore.crypto.errors import CryptoError, checked_size

MAX_CERTIFICATE_BYTES = 64 * 1024

_PEM_BEGIN = re.compile(rb"-----BEGIN ([A-Z0-9 ]{1,64})-----")
_CERTIFICATE_LABELS = {b"CERTIFICATE", b"X509 CERTIFICATE"}
_UTF8_BOM = b"\xef\xbb\xbf"
_NOT_A_CERTIFICATE = "Not a certificate: the file is neither PEM nor DER X.509."


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """Read a PEM file (one or many CERTIFICATE blocks) or a DER certificate.

    A PEM file must hold only CERTIFICATE blocks separated by whitespace: any other text, any
    other block type (a private key above all) or a damaged block rejects the whole file.
    """
    data = checked_size(data, MAX_CERTIFICATE_BYTES, "64 KiB", "a certificate file")
    try:
        return _load_certificates(data)
    except CryptoError:
        raise
    except Exception:
        raise CryptoError("The certificate file could not be read; it may be damaged.") from None


def _load_certificates(data: bytes) -> list[x509.Certificate]:
    if data.startswith(_UTF8_BOM):
        data = data[len(_UTF8_BOM) :]
    if not data.strip():
        raise CryptoError("The file is empty.")
    if b"-----BEGIN" not in data:
        return [parse_der_certificate(data, "The file", invalid=_NOT_A_CERTIFICATE)]
    return [_parse_pem_block(number, label, body) for number, label, body in _pem_blocks(data)]


def _pem_blocks(data: bytes) -> list[tuple[int, bytes, bytes]]:
    """Split a PEM file into (number, label, body); reject any text outside the blocks."""
    blocks: list[tuple[int, bytes, bytes]] = []
    position = 0
    while True:
        number = len(blocks) + 1
        begin = _PEM_BEGIN.search(data, position)
        if begin is None:
            if data[position:].strip():
                raise CryptoError(
                    "The file has unexpected text after the last PEM block; "
                    "only CERTIFICATE blocks are allowed."
                    if blocks
                    else _NOT_A_CERTIFICATE
                )
            return blocks
        if data[position : begin.start()].strip():
            raise CryptoError(
                f"The file has unexpected text before PEM block {number}; "
                "only CERTIFICATE blocks are allowed."
            )
        label = begin.group(1)
        end_line = b"-----END " + label + b"-----"
        end = data.find(end_line, begin.end())
        next_begin = data.find(b"-----BEGIN", begin.end())
        if end < 0 or 0 <= next_begin < end:
            raise CryptoError(
                f"PEM block {number} has no END line; the file may be truncated or damaged."
            )
        blocks.append((number, label, data[begin.end() : end]))
        position = end + len(end_line)


def _parse_pem_block(number: int, label: bytes, body: bytes) -> x509.Certificate:
    if b"PRIVATE KEY" in label:
        raise CryptoError(
            f"PEM block {number} is a private key. Only certificates are accepted here; "
            "upload a key pair as a password-protected PKCS#12 file."
        )
    if label not in _CERTIFICATE_LABELS:
        raise CryptoError(
            f"PEM block {number} is a {label.decode('ascii')} block, not a certificate."
        )
    compact = b"".join(body.split())
    try:
        der = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        der = b""
    if not der or base64.b64encode(der) != compact:
        raise CryptoError(
            f"PEM block {number} contains text that is not Base64; the file is damaged."
        )
    return parse_der_certificate(der, f"PEM block {number}")


def parse_der_certificate(der: bytes, what: str, invalid: str | None = None) -> x509.Certificate:
    """Parse one DER certificate and touch the fields we rely on, which are parsed lazily, so
    that a damaged one is refused here (``what`` names it in the message) and not later."""
    try:
        cert = x509.load_der_x509_certificate(der)
        _touched = (
            cert.subject.rfc4514_string(),
            cert.issuer.rfc4514_string(),
            cert.not_valid_before_utc,
            cert.not_valid_after_utc,
            cert.signature_algorithm_oid,
        )
    except Exception:
        raise CryptoError(invalid or f"{what} is not a valid X.509 certificate.") from None
    try:
        cert.public_key()
    except Exception:
        raise CryptoError(f"{what} uses a public key algorithm that is not supported.") from None
    return cert


def to_der(cert: x509.Certificate) -> bytes:
    """The certificate as DER (a ``.cer`` file)."""
    return cert.public_bytes(serialization.Encoding.DER)


def to_pem_chain(chain: Sequence[x509.Certificate]) -> bytes:
    """The certificates as concatenated PEM blocks, in the given order."""
    return b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in chain)


def to_p7b(chain: Sequence[x509.Certificate]) -> bytes:
    """A DER PKCS#7 certs-only bundle (a ``.p7b`` file) of the given certificates."""
    if not chain:
        raise CryptoError("There are no certificates.")
    return pkcs7.serialize_certificates(list(chain), serialization.Encoding.DER)


def load_p7b(data: bytes) -> list[x509.Certificate]:
    """The certificates of a DER or PEM PKCS#7 bundle, in the order stored (see order_chain)."""
    data = checked_size(data, MAX_CERTIFICATE_BYTES, "64 KiB", "a certificate file")
    if not data.strip():
        raise CryptoError("The file is empty.")
    try:
        with warnings.catch_warnings():
            # openssl crl2pkcs7 writes its SET of certificates unsorted (BER, not DER):
            # cryptography reads it and warns, but such files are what CAs hand out.
            warnings.simplefilter("ignore", UserWarning)
            if data.lstrip().startswith(b"-----BEGIN"):
                certs = pkcs7.load_pem_pkcs7_certificates(data)
            else:
                certs = pkcs7.load_der_pkcs7_certificates(data)
    except Exception:
        raise CryptoError("Not a PKCS#7 certificate bundle, or the file is damaged.") from None
    if not certs:
        raise CryptoError("The PKCS#7 bundle holds no certificates.")
    return [parse_der_certificate(to_der(cert), "A certificate in the bundle") for cert in certs]


def load_certificate_response(data: bytes) -> list[x509.Certificate]:
    """A certificate authority's answer to a signing request: the certificate alone or with its
    chain, as PEM, DER (.cer, .crt) or PKCS#7 (.p7b, .p7c, PEM or DER)."""
    if b"-----BEGIN PKCS7-----" in data[:MAX_CERTIFICATE_BYTES]:
        return load_p7b(data)
    try:
        return load_certificates(data)
    except CryptoError as error:
        if b"-----BEGIN" in data:
            raise
        try:
            return load_p7b(data)  # DER: a certificate failed, a bundle may not
        except CryptoError:
            raise error from None
