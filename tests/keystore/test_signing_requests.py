"""Key pairs made in the keystore: create (self-signed), the certificate signing request, and the
certificate authority's signed response; with real keys, a Python CA and openssl as the CA."""

from __future__ import annotations

import io
import subprocess
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from django.core.management import call_command
from django.core.management.base import CommandError

from keystore import crypto, services
from keystore.models import AuditAction, AuditEvent, EntryType, KeystoreEntry, Owner
from tests import pki as pki_factory

SUBJECT = "CN=orders.example.com, OU=Integration, O=Example AG, C=DE"
needs_openssl = pytest.mark.skipif(pki_factory.OPENSSL is None, reason="openssl is not installed")


def sign_request(
    csr_pem: bytes,
    issuer: x509.Certificate,
    issuer_key,
    *,
    not_after: datetime | None = None,
    not_before: datetime | None = None,
) -> x509.Certificate:
    """What a certificate authority does with the request: a certificate for its key."""
    request = x509.load_pem_x509_csr(csr_pem)
    assert request.is_signature_valid
    start = not_before or datetime.now(UTC) - timedelta(hours=1)
    return (
        x509.CertificateBuilder()
        .subject_name(request.subject)
        .issuer_name(issuer.subject)
        .public_key(request.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(not_after or start + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(issuer_key, hashes.SHA256())
    )


@pytest.fixture
def created(tenant):
    return services.create_key_pair(tenant, "orders_client", SUBJECT, valid_days=30)


def csr_of(entry: KeystoreEntry) -> bytes:
    return services.signing_request(entry).content


def state(entry: KeystoreEntry) -> tuple:
    entry.refresh_from_db()
    return (entry.fingerprint_sha256, entry.version, entry.chain_pem, entry.sealed_private_key)


# --- create ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key_type", "key_class", "facts"),
    [
        ("rsa-2048", rsa.RSAPrivateKey, ("RSA", 2048)),
        ("ec-256", ec.EllipticCurvePrivateKey, ("EC", 256)),
    ],
)
def test_create_key_pair_makes_a_self_signed_key_pair(tenant, users, key_type, key_class, facts):
    admin = users["Administrator"]
    entry = services.create_key_pair(
        tenant, "orders_client", SUBJECT, key_type=key_type, valid_days=30, actor=admin
    )
    entry = KeystoreEntry.objects.get(pk=entry.pk)
    assert (entry.entry_type, entry.owner) == (EntryType.KEY_PAIR, Owner.TENANT)
    [cert] = entry.certificate_chain()
    assert cert.subject.rfc4514_string() == (
        "CN=orders.example.com,OU=Integration,O=Example AG,C=DE"
    )
    assert cert.issuer == cert.subject
    cert.verify_directly_issued_by(cert)
    key = entry.open_private_key()
    assert isinstance(key, key_class)
    assert crypto.private_key_matches(key, cert)
    assert (entry.key_type, entry.key_size) == facts
    lifetime = cert.not_valid_after_utc - datetime.now(UTC)
    assert timedelta(days=29) < lifetime <= timedelta(days=30)
    audit = AuditEvent.objects.get(alias="orders_client")
    assert audit.action == AuditAction.ADD and audit.actor == admin
    assert audit.detail.startswith(f"key pair created ({key_type}, self-signed, 30 days)")


@pytest.mark.parametrize(
    ("alias", "subject", "options", "message"),
    [
        ("sap_mine", SUBJECT, {}, "reserved for SAP"),
        ("ok", "O=Example AG, C=DE", {}, "names no common name"),
        ("ok", "CN=a, C=Germany", {}, "two-letter code"),
        ("ok", "CN", {}, "not a distinguished name"),
        ("ok", SUBJECT, {"key_type": "dsa-1024"}, "Choose a key type"),
        ("ok", SUBJECT, {"valid_days": 0}, "1 to 3650 days"),
        ("ok", SUBJECT, {"valid_days": 3651}, "1 to 3650 days"),
    ],
)
def test_create_key_pair_refuses_bad_input_and_stores_nothing(
    tenant, alias, subject, options, message
):
    with pytest.raises(services.KeystoreError, match=message):
        services.create_key_pair(tenant, alias, subject, **options)
    assert not KeystoreEntry.objects.exists()
    assert not AuditEvent.objects.exists()


def test_create_key_pair_twice_keeps_the_first(tenant, created):
    before = state(created)
    with pytest.raises(services.KeystoreError, match="exists already"):
        services.create_key_pair(tenant, "orders_client", "CN=other")
    assert state(created) == before


def test_only_deploy_holders_create_download_requests_and_apply_responses(
    tenant, users, created, pki
):
    before = state(created)
    for role in ("none", "ReadOnly", "IntegrationDeveloper", "other_admin"):
        actor = users[role]
        with pytest.raises(services.KeystoreError, match="not allowed"):
            services.create_key_pair(tenant, f"x_{role}", SUBJECT, actor=actor)
        with pytest.raises(services.KeystoreError, match="not allowed"):
            services.signing_request(created, actor=actor)
        signed = sign_request(csr_of(created), pki.inter, pki.inter_key)
        with pytest.raises(services.KeystoreError, match="not allowed"):
            services.apply_signing_response(created, pki_factory.pem(signed), actor=actor)
    assert KeystoreEntry.objects.count() == 1
    assert state(created) == before


# --- signing request ------------------------------------------------------------------------


def test_signing_request_carries_the_subject_names_and_public_key(tenant, pki):
    # An imported key pair with alternative names: the request asks for the same.
    data = pki_factory.make_pkcs12_single("client", pki.leaf_key, pki.chain, "pw-123456")
    entry = services.import_key_pair(tenant, "client_key", data, "pw-123456")
    download = services.signing_request(entry)
    assert (download.filename, download.content_type) == ("client_key.csr", "application/pkcs10")
    request = x509.load_pem_x509_csr(download.content)
    assert request.is_signature_valid
    assert request.subject == pki.leaf.subject
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    assert request.public_key().public_bytes(der, spki) == pki.leaf.public_key().public_bytes(
        der, spki
    )
    names = request.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["test.example.com"]


@needs_openssl
def test_openssl_verifies_the_signing_request(created, tmp_path):
    path = tmp_path / "orders.csr"
    path.write_bytes(csr_of(created))
    result = subprocess.run(
        [pki_factory.OPENSSL, "req", "-in", str(path), "-verify", "-noout", "-subject"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "verify OK" in result.stdout + result.stderr
    assert "CN=orders.example.com" in result.stdout.replace(" = ", "=")


def test_no_signing_request_for_certificates_or_sap_keys(cert_entry, sap_entry):
    with pytest.raises(services.KeystoreError, match="certificate entry"):
        services.signing_request(cert_entry)
    with pytest.raises(services.KeystoreError, match="owned by SAP"):
        services.signing_request(sap_entry)
    with pytest.raises(services.KeystoreError, match="owned by SAP"):
        services.apply_signing_response(
            sap_entry, pki_factory.pem(sap_entry.certificate_chain()[0])
        )


# --- signed response ------------------------------------------------------------------------


def test_the_signed_response_with_its_chain_replaces_the_certificate(created, pki, users):
    admin = users["Administrator"]
    old_key = created.open_private_key()
    old_fingerprint, old_version = created.fingerprint_sha256, created.version
    signed = sign_request(csr_of(created), pki.inter, pki.inter_key)
    response = pki_factory.pem(signed, pki.inter, pki.root)
    entry, warnings = services.apply_signing_response(created, response, actor=admin)
    assert warnings == []
    entry = KeystoreEntry.objects.get(pk=created.pk)
    assert entry.certificate_chain() == [signed, pki.inter, pki.root]
    crypto.verify_chain(entry.certificate_chain())
    assert entry.version == old_version + 1
    assert entry.issuer == pki.inter.subject.rfc4514_string()
    # The same private key, sealed again for the new version.
    key = entry.open_private_key()
    assert crypto.private_key_to_der(key) == crypto.private_key_to_der(old_key)
    assert crypto.private_key_matches(key, signed)
    audit = AuditEvent.objects.get(alias="orders_client", action=AuditAction.OVERWRITE)
    assert (audit.old_fingerprint, audit.new_fingerprint) == (
        old_fingerprint,
        entry.fingerprint_sha256,
    )
    assert audit.actor == admin and "signed certificate applied" in audit.detail
    # The public downloads now carry the CA-signed chain (a PKCS#7 SET is sorted, not ordered).
    p7b = services.public_download(entry, "p7b").content
    assert set(pkcs7.load_der_pkcs7_certificates(p7b)) == {signed, pki.inter, pki.root}
    assert services.public_download(entry, "cer").content == pki_factory.der(signed)


def test_a_response_without_its_chain_is_completed_from_the_keystore(tenant, created, pki):
    services.import_certificate(tenant, "test_root", pki_factory.der(pki.root))
    services.import_certificate(tenant, "test_inter", pki_factory.der(pki.inter))
    signed = sign_request(csr_of(created), pki.inter, pki.inter_key)
    entry, warnings = services.apply_signing_response(created, pki_factory.der(signed))
    assert entry.certificate_chain() == [signed, pki.inter, pki.root]
    assert warnings == []


def test_a_chain_that_stops_short_is_applied_with_a_warning(created, pki):
    signed = sign_request(csr_of(created), pki.inter, pki.inter_key)
    entry, warnings = services.apply_signing_response(created, pki_factory.pem(signed))
    assert entry.certificate_chain() == [signed]
    assert len(warnings) == 1 and "Test Intermediate CA" in warnings[0]


@pytest.mark.parametrize(
    ("make_response", "message"),
    [
        # The answer to another request: a certificate for another key.
        (lambda pki, csr: pki_factory.pem(pki.leaf, pki.inter), "belongs to the private key"),
        # The CA's certificates alone.
        (lambda pki, csr: pki_factory.pem(pki.inter, pki.root), "belongs to the private key"),
        # Expired before it arrives.
        (
            lambda pki, csr: pki_factory.pem(
                sign_request(
                    csr,
                    pki.inter,
                    pki.inter_key,
                    not_before=datetime.now(UTC) - timedelta(days=30),
                    not_after=datetime.now(UTC) - timedelta(days=1),
                )
            ),
            "expired",
        ),
        # Claims the intermediate as issuer, signed by another key.
        (
            lambda pki, csr: pki_factory.pem(sign_request(csr, pki.inter, pki.root_key), pki.inter),
            "do not form one chain",
        ),
        (lambda pki, csr: b"not a certificate at all", "Not a certificate"),
        (lambda pki, csr: b"", "empty"),
        (lambda pki, csr: csr, "CERTIFICATE"),  # the request itself sent back
    ],
)
def test_a_wrong_response_is_refused_and_changes_nothing(created, pki, make_response, message):
    before = state(created)
    response = make_response(pki, csr_of(created))
    with pytest.raises(services.KeystoreError, match=message):
        services.apply_signing_response(created, response)
    assert state(created) == before
    assert not AuditEvent.objects.filter(action=AuditAction.OVERWRITE).exists()


def test_applying_the_same_response_twice_changes_nothing_the_second_time(created, pki):
    response = pki_factory.pem(sign_request(csr_of(created), pki.inter, pki.inter_key))
    services.apply_signing_response(created, response)
    after_first = state(created)
    with pytest.raises(services.KeystoreError, match="already; nothing changed"):
        services.apply_signing_response(created, response)
    assert state(created) == after_first
    assert AuditEvent.objects.filter(action=AuditAction.OVERWRITE).count() == 1


def write_ca(folder, pki) -> None:
    """The intermediate CA as openssl takes it: ca.pem and ca.key (PKCS#8, unencrypted)."""
    (folder / "ca.pem").write_bytes(pki_factory.pem(pki.inter))
    (folder / "ca.key").write_bytes(
        pki.inter_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


@needs_openssl
def test_openssl_as_the_certificate_authority_with_a_pkcs7_answer(created, pki, tmp_path):
    """The request goes to `openssl x509 -req`; the answer comes back as a PEM PKCS#7 bundle."""
    (tmp_path / "req.csr").write_bytes(csr_of(created))
    write_ca(tmp_path, pki)
    (tmp_path / "root.pem").write_bytes(pki_factory.pem(pki.root))
    run = [pki_factory.OPENSSL]
    subprocess.run(
        [*run, "x509", "-req", "-in", "req.csr", "-CA", "ca.pem", "-CAkey", "ca.key"]
        + ["-CAcreateserial", "-days", "90", "-sha256", "-out", "signed.pem"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [*run, "crl2pkcs7", "-nocrl", "-certfile", "signed.pem", "-certfile", "ca.pem"]
        + ["-certfile", "root.pem", "-out", "answer.p7b"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    entry, warnings = services.apply_signing_response(
        created, (tmp_path / "answer.p7b").read_bytes()
    )
    chain = entry.certificate_chain()
    assert chain[1:] == [pki.inter, pki.root] and warnings == []
    assert chain[0] == x509.load_pem_x509_certificate((tmp_path / "signed.pem").read_bytes())
    assert crypto.private_key_matches(entry.open_private_key(), chain[0])


# --- commands -------------------------------------------------------------------------------


def run(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@needs_openssl
def test_the_commands_create_request_and_import_with_openssl_as_the_ca(tenant, pki, tmp_path):
    out, _ = run(
        "create_key_pair", "partner_signer", "--tenant", tenant.slug, "--subject", SUBJECT,
        "--key-type", "rsa-3072", "--valid-days", "10",
    )  # fmt: skip
    assert out.startswith("partner_signer: RSA 3072, CN=orders.example.com")
    assert "self-signed" in out
    csr, _ = run("signing_request", "partner_signer", "--tenant", tenant.slug)
    assert x509.load_pem_x509_csr(csr.encode()).is_signature_valid
    out, _ = run(
        "signing_request",
        "partner_signer",
        "--tenant",
        tenant.slug,
        "-o",
        str(tmp_path / "req.csr"),
    )
    assert out.startswith(f"Wrote {tmp_path / 'req.csr'}")
    assert (tmp_path / "req.csr").read_text() == csr
    write_ca(tmp_path, pki)
    subprocess.run(
        [pki_factory.OPENSSL, "x509", "-req", "-in", "req.csr", "-CA", "ca.pem"]
        + ["-CAkey", "ca.key", "-CAcreateserial", "-days", "30", "-out", "signed.pem"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    out, err = run(
        "import_signing_response", str(tmp_path / "signed.pem"), "--tenant", tenant.slug,
        "--alias", "partner_signer",
    )  # fmt: skip
    assert "issued by CN=Test Intermediate CA" in out and "chain of 1" in out
    assert err.startswith("warning: The chain ends without a root")
    assert "'CN=Test Intermediate CA,O=SAP SE'" in err
    entry = KeystoreEntry.objects.get(alias="partner_signer")
    assert entry.issuer == pki.inter.subject.rfc4514_string()
    # The same answer again, and a bad file: exit status 1, one clear line, nothing changed.
    before = state(entry)
    with pytest.raises(CommandError, match="already; nothing changed"):
        run(
            "import_signing_response", str(tmp_path / "signed.pem"), "--tenant", tenant.slug,
            "--alias", "partner_signer",
        )  # fmt: skip
    with pytest.raises(CommandError, match="PEM block 1 is a private key"):
        run(
            "import_signing_response", str(tmp_path / "ca.key"), "--tenant", tenant.slug,
            "--alias", "partner_signer",
        )  # fmt: skip
    assert state(entry) == before


def test_command_refusals_are_one_line(tenant, cert_entry):
    with pytest.raises(CommandError, match="names no common name"):
        run("create_key_pair", "x", "--tenant", tenant.slug, "--subject", "O=Example AG")
    with pytest.raises(CommandError, match="certificate entry"):
        run("signing_request", cert_entry.alias, "--tenant", tenant.slug)
    with pytest.raises(CommandError, match="Unknown tenant"):
        run("signing_request", "x", "--tenant", "nope")
    assert KeystoreEntry.objects.count() == 1
