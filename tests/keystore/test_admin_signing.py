"""The admin's key pair creation, signing request download and signed certificate upload, for
each role, with direct POSTs, double submits and wrong files (services: test_signing_requests)."""

from __future__ import annotations

from cryptography import x509
from django.core.files.uploadedfile import SimpleUploadedFile

from keystore import crypto, services
from keystore.models import AuditAction, AuditEvent, KeystoreEntry
from tests import pki as pki_factory
from tests.conftest import client_for
from tests.keystore.test_admin import form_errors, messages_of, state, url
from tests.keystore.test_signing_requests import SUBJECT, sign_request

CREATE = url("keystoreentry_create_key_pair")


def create_form(tenant, **changes) -> dict:
    return {
        "tenant": tenant.pk,
        "alias": "orders_client",
        "subject": SUBJECT,
        "key_type": "ec-256",
        "valid_days": 90,
        **changes,
    }


def test_an_administrator_creates_a_key_pair_and_gets_it_signed(users, tenant, pki):
    client = client_for(users["Administrator"])
    listing = client.get(url("keystoreentry_changelist"))
    assert CREATE.encode() in listing.content
    assert client.get(CREATE).status_code == 200

    created = client.post(CREATE, create_form(tenant))
    entry = KeystoreEntry.objects.get(tenant=tenant, alias="orders_client")
    assert created.status_code == 302
    assert created["Location"] == url("keystoreentry_change", entry.pk)
    assert "download its signing request" in messages_of(created)[0]
    assert (entry.key_type, entry.key_size) == ("EC", 256)

    page = client.get(url("keystoreentry_change", entry.pk))
    csr_url = url("keystoreentry_signing_request", entry.pk)
    response_url = url("keystoreentry_signing_response", entry.pk)
    assert csr_url.encode() in page.content and response_url.encode() in page.content

    download = client.get(csr_url)
    assert download.status_code == 200
    assert download["Content-Type"] == "application/pkcs10"
    assert 'filename="orders_client.csr"' in download["Content-Disposition"]
    csr_pem = b"".join(download.streaming_content) if download.streaming else download.content
    assert x509.load_pem_x509_csr(csr_pem).is_signature_valid

    assert client.get(response_url).status_code == 200
    signed = sign_request(csr_pem, pki.inter, pki.inter_key)
    upload = SimpleUploadedFile("signed.pem", pki_factory.pem(signed, pki.inter, pki.root))
    done = client.post(response_url, {"file": upload})
    assert done.status_code == 302, form_errors(done)
    assert "The signed certificate of 'orders_client' is in place" in messages_of(done)[0]
    entry.refresh_from_db()
    assert entry.certificate_chain() == [signed, pki.inter, pki.root]
    assert crypto.private_key_matches(entry.open_private_key(), signed)


def test_create_refusals_and_a_double_submit_change_nothing(users, tenant):
    client = client_for(users["Administrator"])
    for changes, phrase in [
        ({"alias": "sap_x"}, "reserved for SAP"),
        ({"subject": "O=Example AG"}, "names no common name"),
        ({"subject": ""}, "This field is required"),
        ({"key_type": "dsa-1024"}, "Select a valid choice"),
        ({"valid_days": 0}, "greater than or equal to 1"),
        ({"valid_days": 5000}, "less than or equal to 3650"),
    ]:
        before = state()
        response = client.post(CREATE, create_form(tenant, **changes))
        assert response.status_code == 200, changes
        assert phrase in form_errors(response), changes
        assert state() == before
    assert client.post(CREATE, create_form(tenant)).status_code == 302
    before = state()
    again = client.post(CREATE, create_form(tenant, subject="CN=second"))
    assert again.status_code == 200
    assert "exists already" in form_errors(again)
    assert state() == before


def test_roles_without_deploy_cannot_create_request_or_upload(users, tenant, pki):
    entry = services.create_key_pair(tenant, "orders_client", SUBJECT)
    csr_pem = services.signing_request(entry).content
    response_file = pki_factory.pem(sign_request(csr_pem, pki.inter, pki.inter_key))
    before = state()
    for role in ("none", "ReadOnly", "IntegrationDeveloper", "other_admin"):
        client = client_for(users[role])
        assert client.post(CREATE, create_form(tenant, alias=f"x_{role}")).status_code == 403
        assert client.get(url("keystoreentry_signing_request", entry.pk)).status_code in (
            403,
            404,
        ), role
        posted = client.post(
            url("keystoreentry_signing_response", entry.pk),
            {"file": SimpleUploadedFile("signed.pem", response_file)},
        )
        assert posted.status_code in (403, 404), role
        if role in ("ReadOnly", "IntegrationDeveloper"):
            page = client.get(url("keystoreentry_change", entry.pk))
            assert b"Signing request (CSR)" not in page.content
            assert (
                url("keystoreentry_create_key_pair").encode()
                not in client.get(url("keystoreentry_changelist")).content
            )
    assert state() == before


def test_a_wrong_signed_certificate_is_refused_on_the_form(users, tenant, pki):
    client = client_for(users["Administrator"])
    entry = services.create_key_pair(tenant, "orders_client", SUBJECT)
    response_url = url("keystoreentry_signing_response", entry.pk)
    for data, phrase in [
        (pki_factory.pem(pki.leaf, pki.inter), "belongs to the private key"),
        (b"garbage", "Not a certificate"),
    ]:
        before = state()
        response = client.post(response_url, {"file": SimpleUploadedFile("x.pem", data)})
        assert response.status_code == 200
        assert phrase in form_errors(response)
        assert state() == before
    assert not AuditEvent.objects.filter(action=AuditAction.OVERWRITE).exists()


def test_no_signing_buttons_or_pages_for_sap_keys_and_certificates(users, sap_entry, cert_entry):
    client = client_for(users["Administrator"])
    for entry in (sap_entry, cert_entry):
        page = client.get(url("keystoreentry_change", entry.pk))
        assert b"Signing request (CSR)" not in page.content
        before = state()
        for name in ("keystoreentry_signing_request", "keystoreentry_signing_response"):
            response = client.get(url(name, entry.pk))
            assert response.status_code == 302
            assert response["Location"] == url("keystoreentry_change", entry.pk)
        assert state() == before
