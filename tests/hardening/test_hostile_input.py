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

import hashlib
import hmac
import io
import random
import time
import warnings
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from pyasn1.codec.der import decoder as der_decoder
from pyasn1_modules import rfc7292

from keystore import admin as keystore_admin
from keystore import crypto, services
from keystore.models import KeystoreEntry
from renewals.activation import RenewalError, import_sap_key
from renewals.whereused import parser
from renewals.whereused import services as whereused_services
from renewals.whereused.models import IntegrationFlow
from tests import pki as pki_factory
from tests.conftest import client_for
from tests.hardening.conftest import fuzz_inputs, fuzz_seed
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


# -- size caps apply before parsing --------------------------------------------------------------


def must_not_be_called(*args, **kwargs):
    raise AssertionError("the parser was called for an oversized input")


@pytest.fixture
def parsers_forbidden(monkeypatch):
    for name in ("_load_certificates", "_load_pkcs12", "_load_jks"):
        monkeypatch.setattr(crypto, name, must_not_be_called)
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
        services.import_keystore(tenant, keystore, PASSWORD)
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
    results = whereused_services.import_flow_exports(tenant, [("big.zip", io.BytesIO(data))])
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
