"""Hostile input: fuzzing the certificate, keystore and integration-flow parsers, a sample of
the same inputs through the admin upload pages, and the size caps that apply before parsing.

The parsers are fuzzed directly, 10,000 inputs each (more with HARDENING_FUZZ_INPUTS), made
from valid files by a seeded generator: bit flips, byte changes, truncations, insertions,
deletions, duplicated slices, splices of two files and plain random bytes. Some mutations are
made "past the checksum": the JKS digest and the PKCS#12 MAC are recomputed, and flow files are
zipped again with valid CRCs, so the mutated content reaches the parsers behind them. Only
CryptoError / FlowParseError may come out, each with a one-line message.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import io
import random
import re
import struct
import time
import warnings
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.serialization import pkcs12
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from pyasn1.codec.der import decoder as der_decoder
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.type import univ
from pyasn1_modules import rfc5280, rfc5652, rfc5958, rfc7292, rfc7914, rfc8018

from keystore import admin as keystore_admin
from keystore import crypto, merging, services
from keystore.crypto import certfiles, jks_import, pkcs12_export, pkcs12_import
from keystore.models import AuditEvent, KeystoreEntry
from renewals.activation import RenewalError, import_sap_key
from renewals.whereused import importing as whereused_importing
from renewals.whereused import parser
from renewals.whereused.models import IntegrationFlow
from tests import pki as pki_factory
from tests.conftest import client_for
from tests.hardening.conftest import fuzz_inputs, fuzz_seed
from tests.keystore.crypto.helpers import (
    crafted_rsa_key,
    forbid_key_derivation,
    only_unvalidated_loads,
)
from tests.renewals import flowfactory as flows

PASSWORD = "fuzz-password"
ADMIN_SAMPLE = 50  # per upload page; four pages


# -- the mutator ------------------------------------------------------------------------------

INTERESTING_BYTES = (0x00, 0x01, 0x7F, 0x80, 0x81, 0x82, 0x84, 0xFF, 0x30, 0x02, 0x04, 0xA0)


def mutate(data: bytes, rng: random.Random, others: list[bytes]) -> bytes:
    """One mutation of `data` (which may change its length)."""
    buf = bytearray(data)
    kind = rng.randrange(10)
    if not buf or kind == 9:
        return rng.randbytes(rng.choice((0, 1, 2, 16, 64, 512)))
    if kind <= 2:
        return bytes(flip(buf, rng))
    position = rng.randrange(len(buf))
    if kind == 3:
        return bytes(buf[:position])
    if kind == 4:
        buf[position:position] = rng.randbytes(rng.randint(1, 32))
    elif kind == 5:
        del buf[position : position + rng.randint(1, 64)]
    elif kind == 6:
        piece = buf[position : position + rng.randint(1, 256)]
        buf[position:position] = piece * rng.randint(1, 8)
    elif kind == 7:
        other = rng.choice(others)
        return bytes(buf[:position]) + other[rng.randrange(len(other) + 1) :]
    else:
        buf[position] = rng.choice(INTERESTING_BYTES)
    return bytes(buf)


def flip(buf: bytearray, rng: random.Random) -> bytearray:
    """Length-preserving damage: flipped bits and changed bytes."""
    for _ in range(rng.randint(1, 8)):
        position = rng.randrange(len(buf))
        if rng.random() < 0.7:
            buf[position] ^= 1 << rng.randrange(8)
        else:
            buf[position] = rng.choice(INTERESTING_BYTES)
    return buf


@dataclass
class FuzzReport:
    tried: int = 0
    refused: int = 0
    accepted: int = 0
    slowest: float = 0.0
    messages: Counter | None = None


def fuzz(
    parse: Callable[[bytes], object],
    generate: Callable[[random.Random], bytes],
    allowed: type[Exception],
    count: int,
    keep: Path,
) -> FuzzReport:
    """Feed `count` generated inputs to `parse`; anything but `allowed` fails the test, and the
    input that did it is kept in the file `keep` (the seed files are made afresh each run)."""
    rng = random.Random(fuzz_seed())
    report = FuzzReport(messages=Counter())
    with warnings.catch_warnings():
        # cryptography warns about lax encodings it still accepts; not an outcome here.
        warnings.simplefilter("ignore")
        for _ in range(count):
            data = generate(rng)
            started = time.perf_counter()
            try:
                parse(data)
            except allowed as error:
                message = str(error)
                assert message and "\n" not in message and len(message) < 400, repr(message)
                assert "Traceback" not in message, message
                report.refused += 1
                report.messages[message[:60]] += 1
            except Exception as error:  # the defect this test exists to find
                keep.write_bytes(data)
                raise AssertionError(
                    f"{type(error).__name__}: {error}; the input is in {keep}"
                ) from error
            else:
                report.accepted += 1
            report.slowest = max(report.slowest, time.perf_counter() - started)
            report.tried += 1
    assert report.tried == count >= 10_000
    assert report.refused > count // 2  # the mutations do reach the checks
    return report


def record(figures, name: str, report: FuzzReport) -> None:
    figures[f"fuzz inputs: {name}"] += report.tried
    figures[f"fuzz inputs: {name}, refused cleanly"] += report.refused
    slowest = f"fuzz inputs: {name}, slowest single input (ms)"
    figures[slowest] = max(figures[slowest], round(report.slowest * 1000))


def test_the_fuzz_loop_fails_on_any_other_exception(tmp_path):
    def broken_parser(data: bytes):
        raise KeyError("a defect")

    with pytest.raises(AssertionError, match="KeyError"):
        fuzz(broken_parser, lambda rng: b"x", ValueError, fuzz_inputs(), tmp_path / "x.bin")
    assert (tmp_path / "x.bin").read_bytes() == b"x"


# -- seeds ------------------------------------------------------------------------------------


@dataclass
class Seeds:
    certificates: list[bytes]
    pkcs12: list[bytes]
    jks: list[bytes]
    flows: list[bytes]
    flow_members: dict[str, bytes]


def light_pkcs12(alias: str, key, chain) -> bytes:
    """PKCS#12 as cryptography writes it (AES-256, PBKDF2, HMAC-SHA256), with few KDF rounds:
    the structure is what is fuzzed; key stretching would only cost time."""
    encryption = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(16)
        .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
        .hmac_hash(hashes.SHA256())
        .build(PASSWORD.encode())
    )
    return pkcs12.serialize_key_and_certificates(
        alias.encode(), key, chain[0], chain[1:] or None, encryption
    )


def make_seeds() -> Seeds:
    """Valid files the mutations start from (pure crypto, no database)."""
    ec = pki_factory.make_pki("Fuzz EC", kind="ec", size=256)
    rsa = pki_factory.make_pki("Fuzz RSA")
    pem_chain = pki_factory.pem(*ec.chain)
    certificates = [
        pki_factory.der(ec.leaf),
        pki_factory.der(rsa.root),
        pem_chain,
        b"\xef\xbb\xbf" + pem_chain.replace(b"\n", b"\r\n"),
        pki_factory.pem(rsa.leaf),
    ]
    pkcs12 = [
        light_pkcs12("fuzz_ec", ec.leaf_key, ec.chain),
        light_pkcs12("fuzz_rsa", rsa.leaf_key, rsa.chain[:2]),
    ]
    jks = [
        pki_factory.make_jks(
            [("fuzz_ec", ec.leaf_key, ec.chain), ("fuzz_root", None, [rsa.root])], PASSWORD
        )
    ]
    xml = flows.iflw(
        flows.channel(
            "MessageFlow_1",
            "To ERP",
            "SOAP",
            props={"authentication": "Client Certificate", "privateKeyAlias": "{{alias}}"},
        ),
        flows.channel(
            "MessageFlow_2", "To Bank", "HTTP", props={"authenticationMethod": "Client Certificate"}
        ),
        flows.step("CallActivity_1", "Sign", "PKCS7Signer", {"privateKeyAlias": "sap_signing"}),
        flows.step("CallActivity_2", "Decrypt", "PKCS7Decryptor", {}),
    )
    members = {
        "META-INF/MANIFEST.MF": flows.manifest("com.example.fuzz", "Fuzz flow"),
        flows.FLOW_DIR + "Fuzz.iflw": xml,
        flows.PARAMETERS_PATH: flows.parameters_prop({"alias": "sap_cloudintegrationcertificate"}),
        flows.SCRIPT_DIR + "sign.groovy": b'def k = keystore.getKey("sap_signing")\n',
    }
    return Seeds(certificates, pkcs12, jks, [flows.zip_bytes(members)], members)


@pytest.fixture(scope="module")
def seeds() -> Seeds:
    return make_seeds()


# -- past the checksums -----------------------------------------------------------------------


def jks_resigned(body: bytes, password: str) -> bytes:
    """A JKS file whose trailing SHA-1 digest matches its (mutated) content."""
    digest = hashlib.sha1(password.encode("utf-16-be") + b"Mighty Aphrodite" + body).digest()
    return body + digest


def _pkcs12_kdf(password: str, salt: bytes, iterations: int, hash_name: str) -> bytes:
    """RFC 7292 appendix B.2, purpose 3 (MAC key), one block (as long as the digest)."""
    block = hashlib.new(hash_name).block_size

    def stretched(data: bytes) -> bytes:
        length = block * -(-len(data) // block)  # whole blocks
        return (data * (length // len(data) + 1))[:length] if data else b""

    secret = password.encode("utf-16-be") + b"\x00\x00"
    key = hashlib.new(hash_name, bytes([3]) * block + stretched(salt) + stretched(secret)).digest()
    for _ in range(iterations - 1):
        key = hashlib.new(hash_name, key).digest()
    return key


class Remac:
    """Mutates the content of a PKCS#12 file in place and recomputes its MAC."""

    def __init__(self, data: bytes, password: str) -> None:
        pfx, _ = der_decoder.decode(data, asn1Spec=rfc7292.PFX())
        content = bytes(der_decoder.decode(bytes(pfx["authSafe"]["content"]))[0])
        mac = pfx["macData"]
        self.hash_name = {
            "2.16.840.1.101.3.4.2.1": "sha256",
            "1.3.14.3.2.26": "sha1",
        }[str(mac["mac"]["digestAlgorithm"]["algorithm"])]
        digest = bytes(mac["mac"]["digest"])
        self.key = _pkcs12_kdf(
            password, bytes(mac["macSalt"]), int(mac["iterations"]), self.hash_name
        )
        assert hmac.new(self.key, content, self.hash_name).digest() == digest  # the KDF is right
        self.data = data
        self.content_at = data.index(content)
        self.content_length = len(content)
        self.digest_at = data.rindex(digest)

    def mutated(self, rng: random.Random) -> bytes:
        start, end = self.content_at, self.content_at + self.content_length
        content = bytes(flip(bytearray(self.data[start:end]), rng))
        digest = hmac.new(self.key, content, self.hash_name).digest()
        return (
            self.data[:start]
            + content
            + self.data[end : self.digest_at]
            + digest
            + self.data[self.digest_at + len(digest) :]
        )


# -- hostile flow content ---------------------------------------------------------------------

XML_TOKENS = (
    b'<!DOCTYPE d [<!ENTITY e "ha"><!ENTITY f "&e;&e;&e;&e;&e;&e;&e;&e;">]>',
    b'<!DOCTYPE d SYSTEM "file:///etc/passwd">',
    b'<!ENTITY x SYSTEM "http://127.0.0.1:1/">',
    b"&f;",
    b"<![CDATA[",
    b"]]>",
    b"<ifl:property><key>privateKeyAlias</key><value>${header.alias}</value></ifl:property>",
    b"<ifl:property><key>authentication</key><value>Client Certificate</value></ifl:property>",
    b"{{alias}}",
    b"{{missing}}",
    b"<a>" * 200,
    b"\xff\xfe",
    b'<?xml version="1.0" encoding="UTF-16"?>',
    b"&#0;",
    b"<bpmn2:messageFlow>",
    b"</bpmn2:messageFlow>",
)


def mutate_member(data: bytes, rng: random.Random, others: list[bytes]) -> bytes:
    if rng.random() < 0.4:
        position = rng.randrange(len(data) + 1)
        return data[:position] + rng.choice(XML_TOKENS) + data[position:]
    return mutate(data, rng, others)


def rezipped(members: dict[str, bytes], rng: random.Random) -> bytes:
    """The flow's members, one or two of them mutated, zipped again (valid CRCs)."""
    changed = dict(members)
    for name in rng.sample(sorted(members), rng.randint(1, 2)):
        changed[name] = mutate_member(members[name], rng, list(members.values()))
    extra = rng.random()
    if extra < 0.05:
        changed["../../outside.iflw"] = changed[flows.FLOW_DIR + "Fuzz.iflw"]
    elif extra < 0.10:
        changed[flows.FLOW_DIR + "Deep/Second.iflw"] = b"<" * rng.randint(1, 5000)
    elif extra < 0.15:
        changed[flows.FLOW_DIR + "Blank.iflw"] = b" " * 200_000  # compresses to 200 bytes
    buf = io.BytesIO()
    compression = rng.choice((zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED))
    with zipfile.ZipFile(buf, "w", compression=compression, compresslevel=1) as zf:
        for name, data in changed.items():
            zf.writestr(name, data)
    return buf.getvalue()


# -- generators ---------------------------------------------------------------------------------


def certificate_inputs(seeds: Seeds):
    def generate(rng: random.Random) -> bytes:
        seed = rng.choice(seeds.certificates)
        data = mutate(seed, rng, seeds.certificates)
        if rng.random() < 0.1:
            data = mutate(data, rng, seeds.certificates)  # two mutations now and then
        return data

    return generate


def keystore_inputs(seeds: Seeds):
    # Past the MAC with the EC file only: opening a damaged RSA key is slow and adds nothing.
    remac = Remac(seeds.pkcs12[0], PASSWORD)
    everything = seeds.pkcs12 + seeds.jks

    def generate(rng: random.Random) -> bytes:
        choice = rng.random()
        if choice < 0.25:
            return mutate(rng.choice(seeds.pkcs12), rng, everything)
        if choice < 0.35:
            return remac.mutated(rng)
        jks = rng.choice(seeds.jks)
        if choice < 0.6:
            return mutate(jks, rng, everything)
        return jks_resigned(mutate(jks[:-20], rng, everything), PASSWORD)

    return generate


def flow_inputs(seeds: Seeds):
    def generate(rng: random.Random) -> bytes:
        if rng.random() < 0.4:
            return mutate(rng.choice(seeds.flows), rng, seeds.flows)
        return rezipped(seeds.flow_members, rng)

    return generate


# -- the parsers, 10,000 inputs each ------------------------------------------------------------


def test_fuzz_the_certificate_parser(seeds, figures, tmp_path):
    report = fuzz(
        crypto.load_certificates,
        certificate_inputs(seeds),
        crypto.CryptoError,
        fuzz_inputs(),
        tmp_path / "certificate.bin",
    )
    record(figures, "certificates (load_certificates)", report)


def test_fuzz_the_keystore_parsers(seeds, figures, tmp_path):
    def load(data: bytes):
        # The keystore page passes the file's password; now and then a wrong one.
        return crypto.load_keystore(data, PASSWORD if data[-1:] != b"\x00" else "wrong")

    report = fuzz(
        load, keystore_inputs(seeds), crypto.CryptoError, fuzz_inputs(), tmp_path / "keystore.bin"
    )
    record(figures, "keystores (load_keystore: PKCS#12 and JKS)", report)


def test_fuzz_the_flow_parser(seeds, figures, tmp_path):
    known = ["sap_signing", "sap_cloudintegrationcertificate"]
    report = fuzz(
        lambda data: parser.parse_flow_zip(data, known_aliases=known),
        flow_inputs(seeds),
        parser.FlowParseError,
        fuzz_inputs(),
        tmp_path / "flow.zip",
    )
    record(figures, "integration flows (parse_flow_zip)", report)


def test_the_fuzzers_reach_past_the_checksums(seeds):
    """The re-signed JKS and re-MACed PKCS#12 inputs pass the integrity check and fail (or
    succeed) in the parser behind it, not at the password check."""
    rng = random.Random(fuzz_seed())
    messages = Counter()
    remac = Remac(seeds.pkcs12[0], PASSWORD)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(200):
            for data in (
                remac.mutated(rng),
                jks_resigned(flip(bytearray(seeds.jks[0][:-20]), rng), PASSWORD),
            ):
                try:
                    crypto.load_keystore(bytes(data), PASSWORD)
                except crypto.CryptoError as error:
                    messages[str(error)] += 1
    wrong_password = sum(n for m, n in messages.items() if "Wrong password" in m)
    assert wrong_password < sum(messages.values()) / 2, messages


# -- a sample through the admin pages ------------------------------------------------------------


ERROR_MARKERS = (b'class="errornote"', b'class="errorlist', b'class="messagelist"')


def assert_clean_answer(response, what: str) -> None:
    assert response.status_code in (200, 302), (what, response.status_code)
    if response.status_code == 200:
        body = response.content
        assert any(marker in body for marker in ERROR_MARKERS), what
        assert b"Traceback" not in body and b"unexpected error" not in body, what


@pytest.fixture
def administrator(users):
    return client_for(users["Administrator"])


def entry_url(name: str) -> str:
    return reverse(f"admin:keystore_keystoreentry_{name}")


def test_a_sample_of_hostile_uploads_through_the_admin_pages(seeds, administrator, tenant, figures):
    rng = random.Random(fuzz_seed() + 1)
    pages = [
        ("add_certificate", certificate_inputs(seeds), {"alias": "fuzz_cert_{n}"}, "upload.pem"),
        (
            "add_key_pair",
            keystore_inputs(seeds),
            {"alias": "fuzz_pair_{n}", "password": PASSWORD},
            "upload.p12",
        ),
        ("add_keystore", keystore_inputs(seeds), {"password": PASSWORD}, "upload.jks"),
    ]
    sent = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, generate, fields, filename in pages:
            for n in range(ADMIN_SAMPLE):
                data = generate(rng) or b"x"
                before = KeystoreEntry.objects.count()
                post = {key: value.format(n=n) for key, value in fields.items()}
                post |= {"tenant": tenant.pk, "file": SimpleUploadedFile(filename, data)}
                response = administrator.post(entry_url(name), post)
                assert_clean_answer(response, f"{name} #{n}")
                if response.status_code == 200:
                    assert KeystoreEntry.objects.count() == before, f"{name} #{n}"
                sent += 1
        import_url = reverse("admin:whereused_integrationflow_import")
        generate = flow_inputs(seeds)
        for n in range(ADMIN_SAMPLE):
            files = [SimpleUploadedFile(f"flow{n}.zip", generate(rng)) for _ in range(2)]
            response = administrator.post(import_url, {"tenant": tenant.pk, "files": files})
            assert_clean_answer(response, f"flow import #{n}")
            sent += 1
    assert sent == 4 * ADMIN_SAMPLE
    figures["hostile uploads through the admin pages"] += sent


def test_hostile_form_fields_get_clear_answers(administrator, tenant, seeds):
    before = KeystoreEntry.objects.count()
    certificate = seeds.certificates[0]
    for alias in ("a" * 251, "bad\x00alias", "\u202etxt.exe", " padded ", "sap_forged", ""):
        response = administrator.post(
            entry_url("add_certificate"),
            {"tenant": tenant.pk, "alias": alias, "file": SimpleUploadedFile("c.cer", certificate)},
        )
        assert_clean_answer(response, repr(alias))
        assert response.status_code == 200, repr(alias)
    for forged_tenant in ("abc", "-1", "99999", "1 OR 1=1"):
        response = administrator.post(
            entry_url("add_certificate"),
            {"tenant": forged_tenant, "alias": "x", "file": SimpleUploadedFile("c", certificate)},
        )
        assert response.status_code in (200, 403), forged_tenant
    for password in (
        "\x00",
        "p" * 10_000,
        "\ud800".encode("utf-8", "surrogatepass").decode("latin-1"),
    ):
        response = administrator.post(
            entry_url("add_key_pair"),
            {
                "tenant": tenant.pk,
                "alias": "pw_test",
                "password": password,
                "file": SimpleUploadedFile("k.p12", seeds.pkcs12[0]),
            },
        )
        assert_clean_answer(response, "password")
    assert KeystoreEntry.objects.count() == before


# -- key-derivation work is priced before it is spent ----------------------------------------------
#
# Each hostile file is built here with pyasn1 and a valid MAC, so that without the caps the reader
# would go on to derive its keys; forbid_key_derivation fails the test if any key is derived.

AES_256_CBC = univ.ObjectIdentifier("2.16.840.1.101.3.4.1.42")
JCEKS_KEY_PROTECTOR = univ.ObjectIdentifier("1.3.6.1.4.1.42.2.19.1")


def _algorithm(oid: univ.ObjectIdentifier, parameters) -> rfc5280.AlgorithmIdentifier:
    algorithm = rfc5280.AlgorithmIdentifier()
    algorithm["algorithm"] = oid
    algorithm["parameters"] = der_encoder.encode(parameters)
    return algorithm


def pbes2(iterations: int = 2048, *, scrypt: tuple[int, int, int] | None = None):
    """PBES2 with AES-256-CBC and PBKDF2-HMAC-SHA256 (keytool's choice), or scrypt (N, r, p)."""
    params = rfc8018.PBES2_params()
    kdf = params["keyDerivationFunc"]
    if scrypt is None:
        kdf_params = rfc8018.PBKDF2_params()
        kdf_params["salt"]["specified"] = b"\x01" * 16
        kdf_params["iterationCount"] = iterations
        kdf_params["prf"]["algorithm"] = rfc8018.id_hmacWithSHA256
        kdf_params["prf"]["parameters"] = der_encoder.encode(univ.Null(""))
        kdf["algorithm"] = rfc8018.id_PBKDF2
    else:
        kdf_params = rfc7914.Scrypt_params()
        kdf_params["salt"] = b"\x01" * 16
        for name, value in zip(crypto.kdf.SCRYPT_PARAMETERS, scrypt, strict=True):
            kdf_params[name] = value
        kdf["algorithm"] = rfc7914.id_scrypt
    kdf["parameters"] = der_encoder.encode(kdf_params)
    params["encryptionScheme"]["algorithm"] = AES_256_CBC
    params["encryptionScheme"]["parameters"] = der_encoder.encode(univ.OctetString(b"\x02" * 16))
    return _algorithm(rfc8018.id_PBES2, params)


def encrypted_key(algorithm) -> bytes:
    """An EncryptedPrivateKeyInfo whose ciphertext is never reached."""
    info = rfc5958.EncryptedPrivateKeyInfo()
    info["encryptionAlgorithm"]["algorithm"] = algorithm["algorithm"]
    info["encryptionAlgorithm"]["parameters"] = algorithm["parameters"]
    info["encryptedData"] = bytes(range(48))
    return der_encoder.encode(info)


def bag(bag_id: univ.ObjectIdentifier, value: bytes) -> rfc7292.SafeBag:
    safe_bag = rfc7292.SafeBag()
    safe_bag["bagId"] = bag_id
    safe_bag["bagValue"] = value
    return safe_bag


def shrouded_key(algorithm) -> rfc7292.SafeBag:
    return bag(rfc7292.id_pkcs8ShroudedKeyBag, encrypted_key(algorithm))


def safe_contents(bags: list) -> bytes:
    safe = rfc7292.SafeContents()
    safe.extend(bags)
    return der_encoder.encode(safe)


def nested(bags: list) -> rfc7292.SafeBag:
    return bag(rfc7292.id_safeContentsBag, safe_contents(bags))


def plain_safe(bags: list) -> rfc5652.ContentInfo:
    info = rfc5652.ContentInfo()
    info["contentType"] = rfc5652.id_data
    info["content"] = der_encoder.encode(univ.OctetString(safe_contents(bags)))
    return info


def encrypted_safe(bags: list, iterations: int = 2048) -> rfc5652.ContentInfo:
    """Really encrypted (PBES2, AES-256-CBC) with PASSWORD, as keytool encrypts its certificates."""
    key = hashlib.pbkdf2_hmac("sha256", PASSWORD.encode(), b"\x01" * 16, iterations, 32)
    padder = sym_padding.PKCS7(128).padder()
    padded = padder.update(safe_contents(bags)) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(b"\x02" * 16)).encryptor()
    data = rfc5652.EncryptedData()
    data["version"] = 0
    content = data["encryptedContentInfo"]
    content["contentType"] = rfc5652.id_data
    algorithm = pbes2(iterations)
    content["contentEncryptionAlgorithm"]["algorithm"] = algorithm["algorithm"]
    content["contentEncryptionAlgorithm"]["parameters"] = algorithm["parameters"]
    content["encryptedContent"] = encryptor.update(padded) + encryptor.finalize()
    info = rfc5652.ContentInfo()
    info["contentType"] = rfc5652.id_encryptedData
    info["content"] = der_encoder.encode(data)
    return info


@functools.cache
def hostile_certificate() -> x509.Certificate:
    return pki_factory.make_cert("Hostile Root", pki_factory.make_key("ec"))


@functools.cache
def pfx_template() -> bytes:
    key = pki_factory.make_key("ec")
    return light_pkcs12("template", key, [pki_factory.make_cert("Template", key)])


def pkcs12_file(contents: list, mac_iterations: int = 2048) -> bytes:
    """A PFX of these ContentInfos under a valid HMAC-SHA256 MAC for PASSWORD (for a MAC too
    dear to compute here, a MAC the reader must refuse before it checks it)."""
    pfx, _ = der_decoder.decode(pfx_template(), asn1Spec=rfc7292.PFX())
    safe = rfc7292.AuthenticatedSafe()
    safe.extend(contents)
    content = der_encoder.encode(safe)
    pfx["authSafe"]["content"] = der_encoder.encode(univ.OctetString(content))
    mac = pfx["macData"]
    mac["iterations"] = mac_iterations
    if mac_iterations <= 100_000:
        key = _pkcs12_kdf(PASSWORD, bytes(mac["macSalt"]), mac_iterations, "sha256")
        mac["mac"]["digest"] = hmac.new(key, content, "sha256").digest()
    return der_encoder.encode(pfx)


def jceks_file(keys: list[tuple[str, int]]) -> bytes:
    """A JCEKS keystore written byte by byte (pyjks cannot write one): each (alias, iteration
    count) a private key protected as keytool protects JCEKS keys, PBEWithMD5AndTripleDES."""
    certificate = pki_factory.der(hostile_certificate())

    def utf(text: str) -> bytes:
        return struct.pack(">H", len(text)) + text.encode()

    body = crypto.JCEKS_MAGIC + struct.pack(">II", 2, len(keys))
    for alias, iterations in keys:
        parameters = rfc8018.PBEParameter()
        parameters["salt"] = b"\x03" * 8
        parameters["iterationCount"] = iterations
        protected = encrypted_key(_algorithm(JCEKS_KEY_PROTECTOR, parameters))
        body += struct.pack(">I", 1) + utf(alias) + struct.pack(">Q", 0)
        body += struct.pack(">I", len(protected)) + protected + struct.pack(">I", 1)
        body += utf("X.509") + struct.pack(">I", len(certificate)) + certificate
    return body + hashlib.sha1(PASSWORD.encode("utf-16-be") + b"Mighty Aphrodite" + body).digest()


def too_dear(cost: int) -> str:
    return (
        f"A key derivation in the file needs {cost:,} PBKDF2-equivalent iterations; "
        f"the limit is {crypto.MAX_KDF_ITERATIONS:,}."
    )


def too_much(total: int) -> str:
    return (
        f"The file needs more key-derivation work than allowed ({total:,} PBKDF2-equivalent "
        f"iterations in total; the limit is {crypto.MAX_KDF_WORK:,})."
    )


MAC_COST = 2048 * 3  # pkcs12_file's MAC: 2,048 SHA-256 hashes of the PKCS#12 KDF in Python

#: The files the issue measured, and three more, each with the one line that refuses it.
HOSTILE_KEYSTORES: dict[str, Callable[[], tuple[bytes, str]]] = {
    "shrouded key at 10^9, nested two deep": lambda: (
        pkcs12_file([plain_safe([nested([nested([shrouded_key(pbes2(10**9))])])])]),
        too_dear(10**9),
    ),
    "scrypt N=16384 r=8 p=300": lambda: (
        pkcs12_file([plain_safe([shrouded_key(pbes2(scrypt=(16384, 8, 300)))])]),
        too_dear(16384 * 8 * 300 * 4),
    ),
    "scrypt N=2^20 r=8 (1 GiB)": lambda: (
        pkcs12_file([plain_safe([shrouded_key(pbes2(scrypt=(2**20, 8, 1)))])]),
        "A key derivation in the file needs 1,025 MiB of memory (scrypt); the limit is 32 MiB.",
    ),
    "30 shrouded keys at 2,000,000": lambda: (
        pkcs12_file([plain_safe([shrouded_key(pbes2(2_000_000)) for _ in range(30)])]),
        too_much(30 * 2_000_000 + MAC_COST),
    ),
    "JCEKS key at 10^7": lambda: (jceks_file([("hostile", 10**7)]), too_dear(10**7 * 11)),
    "JCEKS, 11 keys at keytool's 200,000": lambda: (
        jceks_file([(f"key{n}", 200_000) for n in range(11)]),
        too_much(11 * 200_000 * 11),
    ),
    "MAC at 10^9": lambda: (
        pkcs12_file([plain_safe([])], mac_iterations=10**9),
        too_dear(10**9 * 3),
    ),
}


@pytest.mark.parametrize("name", list(HOSTILE_KEYSTORES))
def test_hostile_key_derivation_work_is_refused_before_it_is_spent(name, monkeypatch, figures):
    data, message = HOSTILE_KEYSTORES[name]()
    forbid_key_derivation(monkeypatch)
    readers = [crypto.load_keystore]
    readers.append(crypto.load_jks if data[:4] == crypto.JCEKS_MAGIC else crypto.load_pkcs12)

    slowest = 0.0
    for read in readers:
        started = time.perf_counter()
        with pytest.raises(crypto.CryptoError) as refused:
            read(data, PASSWORD)
        slowest = max(slowest, time.perf_counter() - started)
        assert str(refused.value) == message
    figure = f"hostile key derivation: {name} ({len(data):,} bytes), refused after (ms)"
    figures[figure] = max(figures[figure], round(slowest * 1000))


def test_keys_hidden_in_an_encrypted_safe_are_priced_once_it_is_open(monkeypatch):
    """Their parameters cannot be seen before the safe is decrypted: the safe's derivation is
    the only one spent, and the keys are refused before any of theirs."""
    data = pkcs12_file([encrypted_safe([shrouded_key(pbes2(2_000_000)) for _ in range(30)])])
    real_pbkdf2 = crypto.kdf.PBKDF2HMAC
    safes = []

    def safe_only(*args, iterations, **kwargs):
        assert iterations == 2048, "a key was derived"
        safes.append(iterations)
        return real_pbkdf2(*args, iterations=iterations, **kwargs)

    real_kdf = crypto.kdf.pkcs12_kdf
    forbid_key_derivation(monkeypatch)
    monkeypatch.setattr(crypto.kdf, "pkcs12_kdf", real_kdf)  # the MAC, 2048 iterations
    monkeypatch.setattr(crypto.kdf, "PBKDF2HMAC", safe_only)

    with pytest.raises(crypto.CryptoError, match=r"\(60,008,192 PBKDF2-equivalent iterations"):
        crypto.load_keystore(data, PASSWORD)
    assert safes == [2048]


def test_2000_key_pairs_at_keytools_defaults_are_within_the_caps(monkeypatch, figures):
    """keytool's PKCS12 defaults: each key under PBES2 with PBKDF2-SHA256 at 10,000 iterations,
    the certificates in one safe encrypted alike, an HMAC-SHA256 MAC at 10,000. The keys here
    are placeholders (real ones would not fit in 1 MiB with their certificates), so cryptography
    is told to fail each one; what counts is that every key gets its one attempt."""
    data = pkcs12_file(
        [
            encrypted_safe([], 10_000),
            plain_safe([shrouded_key(pbes2(10_000)) for _ in range(2000)]),
        ],
        mac_iterations=10_000,
    )
    attempts = []

    def cannot_open(der, password, **kwargs):
        attempts.append(password)
        raise ValueError("pretend the key does not open")

    monkeypatch.setattr(serialization, "load_der_private_key", cannot_open)

    items = crypto.load_keystore(data, PASSWORD)

    assert len(data) < crypto.MAX_KEYSTORE_BYTES
    assert len(items) == 2000 == len(attempts)
    assert all("password does not open it" in item.problem for item in items)
    figures["2,000 keytool-default key pairs: PBKDF2-equivalent iterations"] = (
        2000 * 10_000 + 10_000 + 10_000 * 3
    )


def test_every_reader_refuses_a_hostile_keystore_and_changes_nothing(
    monkeypatch, tenant, sap_entry, administrator
):
    data, message = HOSTILE_KEYSTORES["shrouded key at 10^9, nested two deep"]()
    forbid_key_derivation(monkeypatch)
    entries, events = KeystoreEntry.objects.count(), AuditEvent.objects.count()

    with pytest.raises(services.KeystoreError, match=re.escape(message)):
        merging.import_keystore(tenant, data, PASSWORD)
    with pytest.raises(services.KeystoreError, match=re.escape(message)):
        services.import_key_pair(tenant, "hostile", data, PASSWORD)
    with pytest.raises(RenewalError, match=re.escape(message)):
        import_sap_key(tenant, sap_entry.alias, data, PASSWORD)
    for page, fields in (
        ("add_keystore", {}),
        ("add_key_pair", {"alias": "hostile"}),
    ):
        response = administrator.post(
            entry_url(page),
            {
                "tenant": tenant.pk,
                "password": PASSWORD,
                "file": SimpleUploadedFile("hostile.p12", data),
                **fields,
            },
        )
        assert response.status_code == 200, page
        assert message in response.content.decode(), page
    assert (KeystoreEntry.objects.count(), AuditEvent.objects.count()) == (entries, events)


# -- private keys cost little to check ------------------------------------------------------------


def test_an_rsa_key_of_16384_bits_is_refused_by_every_reader_before_it_is_used(
    monkeypatch, tenant, sap_entry, figures
):
    """Its validation on loading would take minutes for real primes, a signature with it about
    a second: it is refused by its size, without either. Its numbers are random (generating a
    real one takes minutes); nothing but the size check reads them."""
    key = crafted_rsa_key(16384)
    issuer_key = pki_factory.make_key("ec")
    issuer = pki_factory.make_cert("Hostile CA", issuer_key, ca=True)
    chain = [pki_factory.make_cert("Hostile", key, issuer, issuer_key), issuer]
    files = {
        "PKCS#12": pki_factory.make_pkcs12_single(sap_entry.alias, key, chain, PASSWORD),
        "JKS": pki_factory.make_jks([(sap_entry.alias, key, chain)], PASSWORD),
    }
    only_unvalidated_loads(monkeypatch)
    monkeypatch.setattr(crypto.keys, "prove_key", must_not_be_called)
    message = (
        f"The key '{sap_entry.alias}' is an RSA key of 16384 bits; "
        "keys above 4096 bits are not supported."
    )
    entries, events = KeystoreEntry.objects.count(), AuditEvent.objects.count()

    slowest = 0.0
    for kind, data in files.items():
        started = time.perf_counter()
        summary = merging.import_keystore(tenant, data, PASSWORD, overwrite=True)
        slowest = max(slowest, time.perf_counter() - started)
        [outcome] = [outcome for outcome in summary.outcomes if outcome.alias == sap_entry.alias]
        assert (outcome.result, outcome.reason) == ("rejected", message), kind
    with pytest.raises(services.KeystoreError, match=re.escape(message)):
        services.import_key_pair(tenant, "hostile", files["PKCS#12"], PASSWORD)
    with pytest.raises(RenewalError, match=re.escape(message)):
        import_sap_key(tenant, sap_entry.alias, files["PKCS#12"], PASSWORD)
    assert (KeystoreEntry.objects.count(), AuditEvent.objects.count()) == (entries, events)
    figures["hostile RSA-16384 key, refused after (ms)"] = round(slowest * 1000)


def test_keys_are_matched_to_their_certificates_in_linear_time(figures):
    """Key pairs without localKeyIds or names, their certificates in reverse order: each key's
    certificate is found by its public key, encoded once per key and once per certificate
    (comparing every key with every certificate took 32 s for 2,224 such pairs in 1 MiB)."""
    count = 300
    keys = [pki_factory.make_key("ec", fresh=True) for _ in range(count)]
    certs = [pki_factory.make_cert(f"Pair {n}", key) for n, key in enumerate(keys)]
    key_bags = [bag(rfc7292.id_keyBag, pki_factory.pkcs8_der(key)) for key in keys]
    # cryptography writes "additional" certificates without localKeyIds or names
    cert_bags = pkcs12_export.bags_of(
        pkcs12.serialize_key_and_certificates(
            None, None, None, certs[::-1], serialization.NoEncryption()
        )
    )
    data = pkcs12_file([plain_safe(key_bags + cert_bags)])
    encoded = Counter()
    real = crypto.keys.public_key_der

    def counted(holder):
        encoded["public keys"] += 1
        return real(holder)

    started = time.perf_counter()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(crypto.keys, "public_key_der", counted)
        items = crypto.load_keystore(data, PASSWORD)
    elapsed = time.perf_counter() - started

    assert encoded["public keys"] == 2 * count
    assert [item.chain for item in items] == [[cert] for cert in certs]
    assert all(
        crypto.private_key_to_der(item.private_key) == pki_factory.pkcs8_der(key)
        for item, key in zip(items, keys, strict=True)
    )
    figures[f"{count} key pairs without localKeyIds, matched in (ms)"] = round(elapsed * 1000)


# -- signature checks are priced before they are made ---------------------------------------------
#
# A key pair's issuers are looked up by name among the file's certificates. Before the index,
# 500 EC key pairs whose issuers all share one name took 30 s: each key's chain search checked
# the signature of every namesake. Key identifiers choose among namesakes; a file without them
# is priced first and refused.

SHARED_ISSUER = "Shared Issuer"


def namesake_certificate(common_name: str, key, issuer_key, *, key_ids: bool) -> x509.Certificate:
    """A certificate issued under SHARED_ISSUER by ``issuer_key``, with or without key ids."""
    subject = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, common_name)])
    issuer = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, SHARED_ISSUER)])
    now = datetime.now(UTC).replace(microsecond=0)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=30))
    )
    if key_ids:
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        ).add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


@functools.cache
def namesake_key_pairs(count: int, *, key_ids: bool) -> tuple[bytes, list]:
    """A PKCS#12 file of ``count`` EC key pairs, each leaf issued by a CA of its own, and every
    CA self-signed under the same name; and the keys."""
    keys, certs = [], []
    for number in range(count):
        ca_key = pki_factory.make_key("ec", fresh=True)
        key = pki_factory.make_key("ec", fresh=True)
        certs.append(namesake_certificate(f"Pair {number}", key, ca_key, key_ids=key_ids))
        certs.append(namesake_certificate(SHARED_ISSUER, ca_key, ca_key, key_ids=key_ids))
        keys.append(key)
    key_bags = [bag(rfc7292.id_keyBag, pki_factory.pkcs8_der(key)) for key in keys]
    cert_bags = pkcs12_export.bags_of(
        pkcs12.serialize_key_and_certificates(None, None, None, certs, serialization.NoEncryption())
    )
    return pkcs12_file([plain_safe(key_bags + cert_bags)]), keys


def signature_checks(monkeypatch) -> Counter:
    """Count the signature checks made, by outcome (True: the link holds)."""
    outcomes: Counter = Counter()
    real = crypto.signatures.signed_by

    def signed_by(child, parent):
        verdict = real(child, parent)
        if child.issuer == parent.subject:  # otherwise answered without a check
            outcomes[verdict] += 1
        return verdict

    monkeypatch.setattr(crypto.signatures, "signed_by", signed_by)
    return outcomes


def too_many_checks(price: int) -> str:
    return (
        f"Putting the certificates in chains needs {price:,} signature checks (weighted by key "
        f"size); the limit is {crypto.MAX_SIGNATURE_WORK:,}. Too many of them share an issuer's "
        "name."
    )


def test_500_key_pairs_under_namesake_issuers_are_refused_before_any_signature_check(
    monkeypatch, tenant, figures
):
    data, _ = namesake_key_pairs(500, key_ids=False)
    # each of 1,000 certificates: 500 namesake candidates with P-256 keys (2 each)
    message = too_many_checks(1000 * 500 * 2)
    checks = signature_checks(monkeypatch)
    entries, events = KeystoreEntry.objects.count(), AuditEvent.objects.count()

    slowest = 0.0
    for read in (crypto.load_keystore, crypto.load_pkcs12):
        started = time.perf_counter()
        with pytest.raises(crypto.CryptoError) as refused:
            read(data, PASSWORD)
        slowest = max(slowest, time.perf_counter() - started)
        assert str(refused.value) == message
    with pytest.raises(services.KeystoreError, match=re.escape(message)):
        merging.import_keystore(tenant, data, PASSWORD)

    assert sum(checks.values()) == 0
    assert (KeystoreEntry.objects.count(), AuditEvent.objects.count()) == (entries, events)
    figures[f"500 key pairs under namesake issuers ({len(data):,} bytes), refused after (ms)"] = (
        round(slowest * 1000)
    )


def test_key_identifiers_let_namesake_issuers_import_without_a_trial_check(monkeypatch, figures):
    data, keys = namesake_key_pairs(500, key_ids=True)
    checks = signature_checks(monkeypatch)

    started = time.perf_counter()
    items = crypto.load_keystore(data, PASSWORD)
    elapsed = time.perf_counter() - started

    assert [len(item.chain) for item in items] == [2] * 500
    assert [crypto.private_key_to_der(item.private_key) for item in items] == [
        pki_factory.pkcs8_der(key) for key in keys
    ]
    assert checks[False] == 0  # each issuer found by its key identifier, none tried in vain
    assert checks[True] <= 1000  # each leaf's link and each CA's self-signature
    figures["500 key pairs under namesake issuers with key identifiers, read in (ms)"] = round(
        elapsed * 1000
    )


def test_a_java_keystore_chain_of_namesakes_is_refused_before_it_is_ordered(monkeypatch):
    """A Java keystore stores each key's chain as given; the site orders it after reading, so
    the reader prices that ordering first."""
    key, ca_key = pki_factory.make_key("ec"), pki_factory.make_key("ec", fresh=True)
    leaf = namesake_certificate("Leaf", key, ca_key, key_ids=False)
    namesakes = [
        namesake_certificate(SHARED_ISSUER, pki_factory.make_key("ec"), ca_key, key_ids=False)
        for _ in range(299)
    ]
    data = pki_factory.make_jks([("hostile", key, [leaf, *namesakes])], PASSWORD)
    checks = signature_checks(monkeypatch)

    for read in (crypto.load_keystore, crypto.load_jks):
        with pytest.raises(crypto.CryptoError) as refused:
            read(data, PASSWORD)
        # each of 300 certificates: the 299 namesakes (a namesake's own self-signature among
        # them) with P-256 keys, 2 each
        assert str(refused.value) == too_many_checks(300 * 299 * 2)

    assert sum(checks.values()) == 0


# -- size caps apply before parsing --------------------------------------------------------------


def must_not_be_called(*args, **kwargs):
    raise AssertionError("the parser was called for an oversized input")


@pytest.fixture
def parsers_forbidden(monkeypatch):
    for module, name in (
        (certfiles, "_load_certificates"),
        (pkcs12_import, "_load_pkcs12"),
        (jks_import, "_load_jks"),
    ):
        monkeypatch.setattr(module, name, must_not_be_called)
    monkeypatch.setattr(parser.zipfile, "ZipFile", must_not_be_called)
    monkeypatch.setattr(parser, "_declared_entry_count", must_not_be_called)


def test_size_caps_apply_before_parsing(parsers_forbidden, tmp_path):
    certificate = b"0" * (crypto.MAX_CERTIFICATE_BYTES + 1)
    keystore = b"\xfe\xed\xfe\xed" + b"0" * crypto.MAX_KEYSTORE_BYTES
    with pytest.raises(crypto.CryptoError, match="larger than 64 KiB"):
        crypto.load_certificates(certificate)
    for load in (crypto.load_keystore, crypto.load_pkcs12, crypto.load_jks):
        with pytest.raises(crypto.CryptoError, match="larger than 1 MiB"):
            load(keystore, PASSWORD)
    flow = b"PK\x03\x04" + b"\x00" * parser.MAX_ZIP_BYTES
    big_file = tmp_path / "big.zip"
    big_file.write_bytes(flow)
    for source in (flow, io.BytesIO(flow), str(big_file)):
        with pytest.raises(parser.FlowParseError, match="too large"):
            parser.parse_flow_zip(source)


def test_size_caps_apply_before_parsing_in_the_services(parsers_forbidden, tenant, sap_entry):
    keystore = b"\xfe\xed\xfe\xed" + b"0" * crypto.MAX_KEYSTORE_BYTES
    with pytest.raises(services.KeystoreError, match="larger than 1 MiB"):
        merging.import_keystore(tenant, keystore, PASSWORD)
    with pytest.raises(services.KeystoreError, match="larger than 1 MiB"):
        services.import_key_pair(tenant, "big", keystore, PASSWORD)
    with pytest.raises(services.KeystoreError, match="larger than 64 KiB"):
        services.import_certificate(tenant, "big", b"0" * (crypto.MAX_CERTIFICATE_BYTES + 1))
    with pytest.raises(RenewalError, match="larger than 1 MiB"):
        import_sap_key(tenant, sap_entry.alias, keystore, PASSWORD)


def test_size_caps_apply_before_reading_in_the_admin_pages(
    parsers_forbidden, administrator, tenant, monkeypatch
):
    monkeypatch.setattr(keystore_admin, "read_upload", must_not_be_called)
    before = KeystoreEntry.objects.count()
    uploads = [
        ("add_certificate", crypto.MAX_CERTIFICATE_BYTES, {"alias": "big"}),
        ("add_key_pair", crypto.MAX_KEYSTORE_BYTES, {"alias": "big", "password": PASSWORD}),
        ("add_keystore", crypto.MAX_KEYSTORE_BYTES, {"password": PASSWORD}),
    ]
    for name, limit, fields in uploads:
        data = b"0" * (limit + 1)
        response = administrator.post(
            entry_url(name),
            {"tenant": tenant.pk, "file": SimpleUploadedFile("big", data), **fields},
        )
        assert response.status_code == 200, name
        assert b"The file is larger than" in response.content, name
    assert KeystoreEntry.objects.count() == before


def test_an_oversized_flow_export_is_refused_unparsed(parsers_forbidden, administrator, tenant):
    data = b"PK\x03\x04" + b"\x00" * parser.MAX_ZIP_BYTES
    response = administrator.post(
        reverse("admin:whereused_integrationflow_import"),
        {"tenant": tenant.pk, "files": [SimpleUploadedFile("big.zip", data)]},
    )
    assert response.status_code == 200
    assert b"too large" in response.content
    assert not IntegrationFlow.objects.exists()
    results = whereused_importing.import_flow_exports(tenant, [("big.zip", io.BytesIO(data))])
    assert [(r.ok, "too large" in r.message) for r in results] == [(False, True)]


def test_an_oversized_form_body_is_refused_with_400(administrator, tenant):
    response = administrator.post(
        entry_url("add_certificate"), {"tenant": tenant.pk, "alias": "x" * (6 * 1024 * 1024)}
    )
    assert response.status_code == 400


# -- hand-made hostile archives -------------------------------------------------------------------


def flow_archive(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    manifest = {"META-INF/MANIFEST.MF": flows.manifest("com.example.hostile", "Hostile")}
    return flows.zip_bytes({**members, **manifest}, compression=compression)


def test_hostile_flow_archives_are_refused_with_a_reason(seeds):
    xml = seeds.flow_members[flows.FLOW_DIR + "Fuzz.iflw"]
    body = xml.split(b"?>", 1)[1]
    cases = {
        "expands too far": flow_archive(
            {flows.FLOW_DIR + "Bomb.iflw": b" " * (parser.MAX_MEMBER_BYTES + 1)}
        ),
        "too many entries": flow_archive(
            {f"f{i}": b"" for i in range(parser.MAX_ZIP_ENTRIES + 1)}, zipfile.ZIP_STORED
        ),
        "entity declarations": flow_archive(
            {
                flows.FLOW_DIR + "Laughs.iflw": b'<?xml version="1.0"?><!DOCTYPE l ['
                b'<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>' + body
            }
        ),
        "DTD": flow_archive(
            {
                flows.FLOW_DIR + "External.iflw": b'<?xml version="1.0"?><!DOCTYPE l ['
                b'<!ENTITY x SYSTEM "file:///etc/passwd">]>' + body.replace(b"To ERP", b"&x;")
            }
        ),
    }
    for reason, data in cases.items():
        with pytest.raises(parser.FlowParseError, match=reason):
            parser.parse_flow_zip(data)
    # A member named like a path out of the archive is read in memory, never written anywhere.
    export = parser.parse_flow_zip(
        flow_archive(
            {
                **seeds.flow_members,
                "../../outside/x.iflw": xml,
                "/etc/x": b"",
            }
        )
    )
    assert export.bundle_id == "com.example.hostile"


def empty_member_name() -> bytes:
    """A ZIP whose central directory names a member "" (the local header says "E")."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("META-INF/MANIFEST.MF", flows.manifest("com.example.x", "X"))
        archive.writestr("E", b"nameless")
        archive.filelist[-1].filename = ""
    return buf.getvalue()


def unknown_xml_encoding(seeds) -> bytes:
    xml = seeds.flow_members[flows.FLOW_DIR + "Fuzz.iflw"]
    declared = b'<?xml version="1.0" encoding="no-such-codec"?>' + xml.split(b"?>", 1)[1]
    return flow_archive({flows.FLOW_DIR + "X.iflw": declared})


# Found by this fuzzer with other seeds (each about once in 50,000 flow inputs): both now come
# out as FlowParseError.
@pytest.mark.parametrize("make", ["empty member name", "unknown XML encoding"])
def test_known_flow_parser_defects(make, seeds):
    data = empty_member_name() if make == "empty member name" else unknown_xml_encoding(seeds)
    with pytest.raises(parser.FlowParseError):
        parser.parse_flow_zip(data)


def test_the_flow_import_page_survives_the_known_parser_defects(administrator, tenant, seeds):
    """Until the parser is fixed, the import service's safety net keeps them off the 500 page."""
    files = [
        SimpleUploadedFile("empty-name.zip", empty_member_name()),
        SimpleUploadedFile("encoding.zip", unknown_xml_encoding(seeds)),
    ]
    response = administrator.post(
        reverse("admin:whereused_integrationflow_import"), {"tenant": tenant.pk, "files": files}
    )
    assert response.status_code == 200
    assert b"0 of 2 files imported" in response.content
    assert not IntegrationFlow.objects.exists()
