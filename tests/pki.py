"""A test PKI factory: real keys, certificates, chains and keystore files, made at test time.

Pure Python (no Django), shared by every test. RSA-2048 key generation is the slow part, so
``make_key`` hands out keys from a small pool that is filled lazily and then reused in turn:
up to ``POOL_SIZE`` consecutive calls return distinct keys. Pass ``fresh=True`` when a test
needs a key no other test has seen.

Files that only Java writes (multi-entry PKCS#12 from keytool, keytool-made JKS) use the
``keytool`` binary; tests that need it should skip when ``KEYTOOL`` is ``None``.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jks
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from pyasn1.codec.der import decoder as der_decoder
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.type import univ
from pyasn1_modules import rfc5280

AnyPrivateKey = (
    rsa.RSAPrivateKey
    | ec.EllipticCurvePrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
    | dsa.DSAPrivateKey
)
Chain = list[x509.Certificate]
#: (alias, private key or None for a trusted certificate, chain leaf first)
Entry = tuple[str, AnyPrivateKey | None, Chain]

KEYTOOL = shutil.which("keytool")
OPENSSL = shutil.which("openssl")

POOL_SIZE = 6
_pools: dict[tuple[str, int], list[AnyPrivateKey]] = {}
_handed_out: dict[tuple[str, int], int] = {}

_EC_CURVES: dict[int, ec.EllipticCurve] = {
    192: ec.SECP192R1(),
    224: ec.SECP224R1(),
    256: ec.SECP256R1(),
    384: ec.SECP384R1(),
    521: ec.SECP521R1(),
}
_SHA256 = hashes.SHA256()


def _generate(kind: str, size: int) -> AnyPrivateKey:
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=size)
    if kind == "ec":
        return ec.generate_private_key(_EC_CURVES[size])
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if kind == "ed448":
        return ed448.Ed448PrivateKey.generate()
    if kind == "dsa":
        return dsa.generate_private_key(key_size=size)
    raise ValueError(f"unknown key kind {kind!r}")


def make_key(kind: str = "rsa", size: int | None = None, *, fresh: bool = False) -> AnyPrivateKey:
    """A private key: ``rsa`` (default 2048 bits), ``ec`` (curve bits, default 256),
    ``ed25519``, ``ed448`` or ``dsa`` (default 2048 bits).

    Keys come from a per-(kind, size) pool of ``POOL_SIZE`` keys unless ``fresh`` is set.
    """
    bits = size or {"rsa": 2048, "ec": 256, "dsa": 2048}.get(kind, 0)
    if fresh:
        return _generate(kind, bits)
    slot = (kind, bits)
    pool = _pools.setdefault(slot, [])
    count = _handed_out.get(slot, 0)
    _handed_out[slot] = count + 1
    if len(pool) < POOL_SIZE:
        pool.append(_generate(kind, bits))
        return pool[-1]
    return pool[count % POOL_SIZE]


def _name(common_name: str, org: str | None) -> x509.Name:
    """O before CN, as CAs write it, so the RFC 4514 string reads "CN=...,O=SAP SE"."""
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)] if org else []
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def make_cert(
    subject_cn: str,
    key: AnyPrivateKey,
    issuer_cert: x509.Certificate | None = None,
    issuer_key: AnyPrivateKey | None = None,
    *,
    days: int = 365,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    ca: bool = False,
    hash_alg: hashes.HashAlgorithm | None = _SHA256,
    org: str | None = "SAP SE",
    san_dns: list[str] | None = None,
    serial: int | None = None,
) -> x509.Certificate:
    """A certificate for ``key``, self-signed unless an issuer is given.

    ``issuer_key`` defaults to ``key`` (self-signed); passing an ``issuer_cert`` with a key
    that is not its own forges a link whose signature does not verify. ``hash_alg`` may be
    SHA-1 or MD5: cryptography refuses to sign with those, so such certificates are re-signed
    by hand. Ed25519/Ed448 issuers ignore ``hash_alg``.
    """
    signing_key = issuer_key or key
    start = not_before or (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0)
    end = not_after or start + timedelta(days=days)
    subject = _name(subject_cn, org)
    issuer_name = issuer_cert.subject if issuer_cert is not None else subject
    issuer_public = (
        issuer_cert.public_key() if issuer_cert is not None else signing_key.public_key()
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(serial or x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=not ca and isinstance(key, rsa.RSAPrivateKey),
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public),
            critical=False,
        )
    )
    if san_dns:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(name) for name in san_dns]), critical=False
        )
    if isinstance(signing_key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        return builder.sign(signing_key, None)
    if isinstance(hash_alg, hashes.SHA1 | hashes.MD5):
        return _resign(builder.sign(signing_key, _SHA256), signing_key, hash_alg)
    return builder.sign(signing_key, hash_alg or _SHA256)


_WEAK_SIGNATURE_OIDS = {
    ("rsa", "sha1"): "1.2.840.113549.1.1.5",
    ("rsa", "md5"): "1.2.840.113549.1.1.4",
    ("ec", "sha1"): "1.2.840.10045.4.1",
    ("dsa", "sha1"): "1.2.840.10040.4.3",
}


def _resign(
    cert: x509.Certificate, key: AnyPrivateKey, hash_alg: hashes.HashAlgorithm
) -> x509.Certificate:
    """Sign ``cert``'s content again with a hash that cryptography will not sign with."""
    if isinstance(key, rsa.RSAPrivateKey):
        kind = "rsa"
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        kind = "ec"
    elif isinstance(key, dsa.DSAPrivateKey):
        kind = "dsa"
    else:
        raise ValueError("only RSA, EC and DSA keys sign with a weak hash")
    oid = univ.ObjectIdentifier(_WEAK_SIGNATURE_OIDS[(kind, hash_alg.name)])
    decoded, _ = der_decoder.decode(
        cert.public_bytes(serialization.Encoding.DER), asn1Spec=rfc5280.Certificate()
    )
    decoded["tbsCertificate"]["signature"]["algorithm"] = oid
    decoded["signatureAlgorithm"]["algorithm"] = oid
    tbs = der_encoder.encode(decoded["tbsCertificate"])
    if isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(tbs, padding.PKCS1v15(), hash_alg)
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        signature = key.sign(tbs, ec.ECDSA(hash_alg))
    else:
        signature = key.sign(tbs, hash_alg)
    decoded["signature"] = univ.BitString.fromOctetString(signature)
    return x509.load_der_x509_certificate(der_encoder.encode(decoded))


@dataclass
class Pki:
    """A three-level PKI: root CA -> intermediate CA -> leaf."""

    root_key: AnyPrivateKey
    root: x509.Certificate
    inter_key: AnyPrivateKey
    inter: x509.Certificate
    leaf_key: AnyPrivateKey
    leaf: x509.Certificate

    @property
    def chain(self) -> Chain:
        """Leaf first, root last."""
        return [self.leaf, self.inter, self.root]


def make_pki(
    prefix: str = "Test",
    leaf_days: int = 365,
    *,
    kind: str = "rsa",
    size: int | None = None,
    leaf_cn: str | None = None,
    leaf_not_before: datetime | None = None,
    leaf_not_after: datetime | None = None,
    hash_alg: hashes.HashAlgorithm | None = _SHA256,
) -> Pki:
    """Root CA "<prefix> Root CA" -> "<prefix> Intermediate CA" -> leaf "<prefix> Leaf"."""
    root_key = make_key(kind, size)
    root = make_cert(f"{prefix} Root CA", root_key, ca=True, days=3650, hash_alg=hash_alg)
    inter_key = make_key(kind, size)
    inter = make_cert(
        f"{prefix} Intermediate CA",
        inter_key,
        root,
        root_key,
        ca=True,
        days=1825,
        hash_alg=hash_alg,
    )
    leaf_key = make_key(kind, size)
    leaf = make_cert(
        leaf_cn or f"{prefix} Leaf",
        leaf_key,
        inter,
        inter_key,
        days=leaf_days,
        not_before=leaf_not_before,
        not_after=leaf_not_after,
        hash_alg=hash_alg,
        san_dns=[f"{prefix.lower().replace(' ', '-')}.example.com"],
    )
    return Pki(root_key, root, inter_key, inter, leaf_key, leaf)


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def pem(*certs: x509.Certificate) -> bytes:
    return b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in certs)


def pkcs8_der(key: AnyPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_pkcs12_single(alias: str, key: AnyPrivateKey, chain: Chain, password: str) -> bytes:
    """One key pair as PKCS#12, written by cryptography (AES-256, few rounds: tests are fast)."""
    encryption = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(2048)
        .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
        .hmac_hash(hashes.SHA256())
        .build(password.encode("utf-8"))
    )
    return pkcs12.serialize_key_and_certificates(
        alias.encode("utf-8"), key, chain[0], chain[1:] or None, encryption
    )


def make_jks(items: list[Entry], password: str) -> bytes:
    """A JKS keystore written by pyjks; each key is protected by the store password.

    pyjks (like Java) stores aliases in lower case.
    """
    entries: list[jks.PrivateKeyEntry | jks.TrustedCertEntry] = []
    for alias, key, chain in items:
        if key is None:
            entries.append(jks.TrustedCertEntry.new(alias, der(chain[0])))
        else:
            entries.append(
                jks.PrivateKeyEntry.new(alias, [der(cert) for cert in chain], pkcs8_der(key))
            )
    return jks.KeyStore.new("jks", entries).saves(password)


def run_keytool(*args: str) -> None:
    """Run keytool (which must exist) and fail loudly with its output."""
    if KEYTOOL is None:
        raise RuntimeError("keytool is not installed")
    result = subprocess.run(
        [KEYTOOL, *args], capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"keytool {args[0]} failed: {result.stdout}{result.stderr}")


def make_multi_pkcs12(tmp_path: Path, items: list[Entry], password: str) -> bytes:
    """A PKCS#12 keystore with many key pairs and trusted certificates, written by keytool.

    No Python library writes multi-key PKCS#12, so the entries go into a JKS first (pyjks)
    and one ``keytool -importkeystore`` run converts the whole store, the way Java users do.
    Aliases come out in lower case; keytool wants a password of at least 6 characters.
    """
    source = tmp_path / "multi-source.jks"
    target = tmp_path / "multi.p12"
    source.write_bytes(make_jks(items, password))
    target.unlink(missing_ok=True)
    run_keytool(
        "-importkeystore",
        "-noprompt",
        "-srckeystore",
        str(source),
        "-srcstoretype",
        "JKS",
        "-srcstorepass",
        password,
        "-destkeystore",
        str(target),
        "-deststoretype",
        "PKCS12",
        "-deststorepass",
        password,
    )
    return target.read_bytes()


def make_pkcs12(items: list[Entry], password: str) -> bytes:
    """Any mix of key pairs and trusted certificates as one PKCS#12 file.

    A single key pair is written by cryptography; anything else by keytool (see
    make_multi_pkcs12), which needs a password of at least 6 characters.
    """
    if len(items) == 1 and items[0][1] is not None:
        alias, key, chain = items[0]
        return make_pkcs12_single(alias, key, chain, password)
    with tempfile.TemporaryDirectory() as directory:
        return make_multi_pkcs12(Path(directory), items, password)


def make_keytool_store(
    tmp_path: Path, store_type: str, password: str, alias: str = "mykey", cn: str = "keytool"
) -> bytes:
    """A keystore with one RSA key pair made by ``keytool -genkeypair`` (JKS, JCEKS, PKCS12)."""
    target = tmp_path / f"genkeypair.{store_type.lower()}"
    target.unlink(missing_ok=True)
    run_keytool(
        "-genkeypair",
        "-alias",
        alias,
        "-keyalg",
        "RSA",
        "-keysize",
        "2048",
        "-dname",
        f"CN={cn},O=SAP SE",
        "-validity",
        "30",
        "-storetype",
        store_type,
        "-keystore",
        str(target),
        "-storepass",
        password,
        "-keypass",
        password,
    )
    return target.read_bytes()
