"""Tests of keystore.crypto.keys: matching, storing and generating keys, and keys from uploads
proved cheaply instead of validated at great cost."""

from __future__ import annotations

import math

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.serialization import pkcs12
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.type import univ
from pyasn1_modules import rfc5208, rfc7292, rfc8017

from keystore import crypto
from keystore.crypto import CryptoError, keys, pkcs12_export
from tests import pki
from tests.keystore.crypto.helpers import (
    PASSWORD,
    crafted_rsa_key,
    damaged_copy,
    only_unvalidated_loads,
    rsa_key_of,
    uploads,
)


def test_private_key_matches(chain_a):
    assert crypto.private_key_matches(chain_a.leaf_key, chain_a.leaf)
    assert not crypto.private_key_matches(chain_a.leaf_key, chain_a.inter)
    ec_key = pki.make_key("ec")
    assert crypto.private_key_matches(ec_key, pki.make_cert("ec", ec_key))
    assert not crypto.private_key_matches(ec_key, chain_a.leaf)


def test_private_key_der_round_trip(chain_a):
    for key in (chain_a.leaf_key, pki.make_key("ec", 384), pki.make_key("ed25519")):
        again = crypto.private_key_from_der(crypto.private_key_to_der(key))
        assert crypto.private_key_to_der(again) == crypto.private_key_to_der(key)

    with pytest.raises(CryptoError):
        crypto.private_key_from_der(b"not a key")


def test_generate_key_pair():
    assert crypto.generate_key_pair("ec", 384).curve.key_size == 384
    with pytest.raises(CryptoError):
        crypto.generate_key_pair("rsa", 1024)


# --------------------------------------------------------------------------- RSA keys from uploads
#
# cryptography's validation of an RSA key costs 0.3 s at 4096 bits and seconds beyond, so keys
# from files are loaded without it: too large a key is refused before it is used, and the
# others prove their consistency with arithmetic and one signature.


@pytest.mark.parametrize(
    ("kind", "size"), [("rsa", 2048), ("rsa", 3072), ("rsa", 4096), ("ec", 256), ("ec", 384)]
)
def test_good_keys_import_without_the_costly_validation(kind, size, monkeypatch):
    key = pki.make_key(kind, size)
    chain = [pki.make_cert(f"Good {kind} {size}", key)]
    files = uploads("good", key, chain)
    loaded = only_unvalidated_loads(monkeypatch)

    for name, (data, reader) in files.items():
        for read in (crypto.load_keystore, reader or crypto.load_pkcs12):
            [item] = read(data, PASSWORD)

            assert (item.alias, item.problem, item.chain) == ("good", "", chain), name
            assert crypto.private_key_to_der(item.private_key) == pki.pkcs8_der(key), name
    assert len(loaded) == 2 * len(files)


@pytest.mark.parametrize("bits", [384, 4097, 8192, 16384])
def test_an_rsa_key_of_an_unsupported_size_is_refused_before_it_is_used(bits, monkeypatch):
    key = crafted_rsa_key(bits)
    issuer_key = pki.make_key("ec")
    issuer = pki.make_cert("Hostile CA", issuer_key, ca=True)
    chain = [pki.make_cert("Hostile", key, issuer, issuer_key), issuer]
    files = uploads("hostile", key, chain)
    only_unvalidated_loads(monkeypatch)

    def used(*args, **kwargs):
        raise AssertionError("the key was used before its size was checked")

    monkeypatch.setattr(keys, "prove_key", used)
    limit = "above 4096" if bits > 4096 else "below 512"
    message = (
        f"The key 'hostile' is an RSA key of {bits} bits; keys {limit} bits are not supported."
    )

    for name, (data, reader) in files.items():
        with pytest.raises(CryptoError) as refused:
            (reader or crypto.load_pkcs12)(data, PASSWORD)
        [item] = [item for item in crypto.load_keystore(data, PASSWORD) if item.problem]

        assert str(refused.value) == message, name
        assert (item.alias, item.private_key, item.chain, item.problem) == (
            "hostile",
            None,
            [],
            message,
        ), name


@pytest.mark.parametrize("part", ["iqmp", "dmp1", "dmq1", "d"])
def test_an_rsa_key_with_a_damaged_private_parameter_is_refused(part, monkeypatch):
    good = pki.make_key("rsa", 2048)
    damaged = damaged_copy(good, part)
    chain = [pki.make_cert("Damaged", good)]
    # What cryptography's validation would have caught, and the certificate check does not.
    with pytest.raises(ValueError):
        serialization.load_der_private_key(pki.pkcs8_der(damaged), None)
    assert crypto.private_key_matches(damaged, chain[0])
    files = uploads("damaged", damaged, chain)
    only_unvalidated_loads(monkeypatch)
    message = "The key 'damaged' is damaged: its RSA private parameters do not fit together."

    for name, (data, reader) in files.items():
        with pytest.raises(CryptoError) as refused:
            (reader or crypto.load_pkcs12)(data, PASSWORD)
        [item] = crypto.load_keystore(data, PASSWORD)

        assert str(refused.value) == message, name
        assert (item.alias, item.private_key, item.chain, item.problem) == (
            "damaged",
            None,
            [],
            message,
        ), name


def test_a_signature_alone_does_not_show_a_damaged_crt_parameter():
    """Why _prove_key checks the arithmetic too: OpenSSL checks its CRT result and quietly
    recomputes a wrong one with d, so the damaged key signs correctly here, while Java, which
    uses the CRT parameters as they are, would not."""
    good = pki.make_key("rsa", 2048)
    message = b"any message"
    for part in ("iqmp", "dmp1"):
        signature = damaged_copy(good, part).sign(message, PKCS1v15(), hashes.SHA256())

        good.public_key().verify(signature, message, PKCS1v15(), hashes.SHA256())
        assert not keys.rsa_parameters_fit(damaged_copy(good, part).private_numbers())


def test_an_rsa_key_with_a_composite_factor_is_refused_by_its_signature(monkeypatch):
    """Parameters that fit together but a factor that is not prime: only the signature shows
    it (the primality tests are what the skipped validation costs)."""
    small = rsa.generate_private_key(65537, 1024).private_numbers()
    q = pki.make_key("rsa", 2048).private_numbers().p
    p, e = small.p * small.q, 65537
    assert p % e != 1 and q % e != 1
    d = pow(e, -1, (p - 1) * (q - 1) // math.gcd(p - 1, q - 1))
    numbers = rsa.RSAPrivateNumbers(
        p=p,
        q=q,
        d=d,
        dmp1=d % (p - 1),
        dmq1=d % (q - 1),
        iqmp=pow(q, -1, p),
        public_numbers=rsa.RSAPublicNumbers(e, p * q),
    )
    key = rsa_key_of(numbers)
    issuer_key = pki.make_key("ec")
    issuer = pki.make_cert("Composite CA", issuer_key, ca=True)
    chain = [pki.make_cert("Composite", key, issuer, issuer_key), issuer]
    assert keys.rsa_parameters_fit(numbers)
    only_unvalidated_loads(monkeypatch)
    message = (
        "The key 'composite' is damaged: a signature made with it does not verify with its "
        "certificate."
    )

    for name, (data, reader) in uploads("composite", key, chain).items():
        with pytest.raises(CryptoError) as refused:
            (reader or crypto.load_pkcs12)(data, PASSWORD)
        [item] = [item for item in crypto.load_keystore(data, PASSWORD) if item.problem]

        assert str(refused.value) == item.problem == message, name
        assert (item.alias, item.private_key, item.chain) == ("composite", None, []), name


def test_keys_sealed_before_the_size_limit_still_open():
    """The limit is for uploads: a larger key stored earlier must not become unusable."""
    key = crafted_rsa_key(8192)

    assert crypto.private_key_from_der(crypto.private_key_to_der(key)).key_size == 8192


def test_an_rsa_key_with_a_private_exponent_beyond_its_modulus_is_refused():
    """Equal to the right one modulo p - 1 and q - 1, so it signs correctly, but OpenSSL would
    compute with all its bits wherever it falls back on d. cryptography loads it unvalidated."""
    good = pki.make_key("rsa", 2048)
    numbers = good.private_numbers()
    n = numbers.public_numbers.n
    key = rfc8017.RSAPrivateKey()
    for name, value in (
        ("version", 0),
        ("modulus", n),
        ("publicExponent", numbers.public_numbers.e),
        ("privateExponent", numbers.d + (numbers.p - 1) * (numbers.q - 1) * n**8),
        ("prime1", numbers.p),
        ("prime2", numbers.q),
        ("exponent1", numbers.dmp1),
        ("exponent2", numbers.dmq1),
        ("coefficient", numbers.iqmp),
    ):
        key[name] = value
    info = rfc5208.PrivateKeyInfo()
    info["version"] = 0
    info["privateKeyAlgorithm"]["algorithm"] = rfc8017.rsaEncryption
    info["privateKeyAlgorithm"]["parameters"] = der_encoder.encode(univ.Null(""))
    info["privateKey"] = der_encoder.encode(key)
    cert = pki.make_cert("Long d", good)
    bags = pkcs12_export.bags_of(
        pkcs12.serialize_key_and_certificates(
            b"long_d", good, cert, None, serialization.NoEncryption()
        )
    )
    for bag in bags:
        if bag["bagId"] == rfc7292.id_keyBag:
            bag["bagValue"] = der_encoder.encode(info)
    data = pkcs12_export.sealed_pfx([pkcs12_export.plain_safe(bags)], PASSWORD, 2048)

    with pytest.raises(CryptoError) as refused:
        crypto.load_pkcs12(data, PASSWORD)

    assert str(refused.value) == (
        "The key 'long_d' is damaged: its RSA private parameters do not fit together."
    )
