"""pyasn1 decoding for the password-based file readers: the structures cryptography does not
open for us (PKCS#12 safes and bags, password-based encryption parameters).

pyasn1's BER decoder, not DER: PKCS#12 files written on Windows and by older Java use
indefinite lengths. cryptography's own declarative ASN.1 module (cryptography 47 and later)
would decode much faster, but it reads DER only, is not yet covered by cryptography's
compatibility policy (its documentation says so), and cannot express an optional ANY (the
parameters of an AlgorithmIdentifier).
"""

from __future__ import annotations

from typing import Any

from pyasn1.codec.ber import decoder as ber_decoder
from pyasn1.type import base


class DamagedError(Exception):
    """An internal signal: the structure is not what the format prescribes. Readers turn it
    (and anything else pyasn1 raises) into a CryptoError."""


def decode(data: bytes, spec: base.Asn1Type) -> Any:
    """``data`` decoded as ``spec``, all of it. pyasn1's values are dynamically typed."""
    value, rest = ber_decoder.decode(data, asn1Spec=spec)
    if rest:
        raise DamagedError("trailing data")
    return value


def parameters_of(algorithm: Any) -> bytes:
    """The encoded parameters of an AlgorithmIdentifier, ``b""`` when absent."""
    return bytes(algorithm["parameters"]) if algorithm["parameters"].isValue else b""
