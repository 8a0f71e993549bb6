"""The keystore admin end to end: the changelist and detail page, uploads with their summary and
their refusals, rename, delete, PKCS#12 export, the bulk delete action, the audit log and tenants.

Real certificates and keystore files come from tests/pki.py; every refused input is checked to
leave the keystore and the audit log as they were. Who may reach which page is in
test_admin_matrix.py.
"""

from __future__ import annotations

import base64
import html
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.messages import get_messages
from django.contrib.staticfiles import finders
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import NoReverseMatch, reverse

from keystore import crypto, services
from keystore.models import AuditAction, AuditEvent, KeystoreEntry, Tenant, TenantRole
from tests import pki as pki_factory
from tests.conftest import ROLE_NAMES, client_for, import_expired_certificate, make_user


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # The users fixture creates five users per test; the default hasher would dominate the run.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def url(name: str, *args) -> str:
    return reverse(f"admin:keystore_{name}", args=args)


def messages_of(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def form_errors(response) -> str:
    """All errors of the page's form as one unescaped string."""
    form = response.context["form"]
    return " ".join(str(error) for errors in form.errors.values() for error in errors)


def state() -> tuple[set, int]:
    """The keystore rows and the number of audit events: a refused request changes neither."""
    rows = set(
        KeystoreEntry.objects.values_list("tenant__slug", "alias", "fingerprint_sha256", "version")
    )
    return rows, AuditEvent.objects.count()


def row_html(content: bytes, alias: str) -> str:
    """The <tr> of the changelist row whose alias link reads `alias`."""
    text = content.decode()
    for row in re.findall(r"<tr>.*?</tr>", text, flags=re.S):
        if re.search(r'field-alias_with_owner"><a href="[^"]*">' + re.escape(alias) + r"[ <]", row):
            return row
    raise AssertionError(f"no changelist row for {alias!r}")


def secret_markers(*keys) -> list[bytes]:
    """Byte strings that appear wherever one of the private keys is written out.

    The start of a PKCS#8 RSA key holds the public modulus (which the certificate holds too), so
    the markers come from the private half: the private exponent in hex and the PEM lines of the
    second half of the DER.
    """
    markers = [b"PRIVATE KEY"]
    for key in keys:
        b64 = base64.b64encode(pki_factory.pkcs8_der(key))
        lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
        markers.append(key.private_numbers().d.to_bytes(256, "big")[:32].hex().encode())
        markers.extend(lines[len(lines) // 2 : -1])
    return markers


@pytest.fixture
def admin_client(users):
    return client_for(users["Administrator"])


@pytest.fixture
def expired_entry(tenant):
    return import_expired_certificate(tenant, expired_for=timedelta(days=10))


@pytest.fixture
def entries(key_pair_entry, cert_entry, sap_entry, other_tenant, pki):
    b_entry = services.import_certificate(other_tenant, "b_root", pki_factory.der(pki.root))
    return {
        "client_key": key_pair_entry,
        "partner_root": cert_entry,
        "sap": sap_entry,
        "b_root": b_entry,
    }


# -- changelist ------------------------------------------------------------------------------


def test_changelist_marks_sap_entries_and_colours_validity(admin_client, entries, expired_entry):
    response = admin_client.get(url("keystoreentry_changelist"))
    assert response.status_code == 200
    sap_row = row_html(response.content, "sap_cloudintegrationcertificate")
    pair_row = row_html(response.content, "client_key")
    expired_row = row_html(response.content, "old_partner")
    assert "sap-badge" in sap_row and ">SAP</span>" in sap_row
    assert "sap-badge" not in pair_row
    # The SAP test key is valid for 20 more days, the key pair for a year, old_partner expired.
    assert 'class="expiry expiry-soon"' in sap_row
    assert 'class="expiry expiry-valid"' in pair_row
    assert 'class="expiry expiry-expired"' in expired_row
    # The colours live in the site's stylesheet (the Content-Security-Policy forbids inline).
    css = finders.find("keystore/monitor.css")
    rules = Path(css).read_text(encoding="utf-8")
    for state, colour in (("soon", "#b26a00"), ("valid", "#2e7d32"), ("expired", "#ba2121")):
        assert f".expiry-{state} {{ color: {colour}; }}" in rules
    assert "Test Leaf" in pair_row and "Test Intermediate CA" in pair_row
    assert "RSA 2048" in pair_row
    assert "system" in pair_row  # last modified by


def test_changelist_buttons_follow_the_role(users, entries):
    reader = client_for(users["ReadOnly"]).get(url("keystoreentry_changelist"))
    admin = client_for(users["Administrator"]).get(url("keystoreentry_changelist"))
    pair, cert, sap = entries["client_key"], entries["partner_root"], entries["sap"]

    reader_row = row_html(reader.content, "client_key")
    for kind in services.PUBLIC_FORMATS:
        assert url("keystoreentry_download", pair.pk, kind) in reader_row
    for name in ("keystoreentry_rename", "keystoreentry_delete_entry", "keystoreentry_export"):
        assert url(name, pair.pk) not in reader.content.decode()
    assert url("keystoreentry_add_certificate") not in reader.content.decode()
    assert reader.context["action_form"] is None  # no bulk action for readers

    pair_row = row_html(admin.content, "client_key")
    cert_row = row_html(admin.content, "partner_root")
    sap_row = row_html(admin.content, "sap_cloudintegrationcertificate")
    assert url("keystoreentry_rename", pair.pk) in pair_row
    assert url("keystoreentry_delete_entry", pair.pk) in pair_row
    assert url("keystoreentry_export", pair.pk) in pair_row
    assert url("keystoreentry_rename", cert.pk) in cert_row
    assert url("keystoreentry_export", cert.pk) not in cert_row  # no key to export
    assert url("keystoreentry_rename", sap.pk) not in sap_row  # SAP-owned
    assert url("keystoreentry_delete_entry", sap.pk) not in sap_row
    assert url("keystoreentry_download", sap.pk, "cer") in sap_row
    for name in ("add_certificate", "add_key_pair", "add_keystore"):
        assert url(f"keystoreentry_{name}") in admin.content.decode()
    actions = dict(admin.context["action_form"].fields["action"].choices)
    assert "delete_selected_entries" in actions
    assert "delete_selected" not in actions


def test_changelist_sorts_by_validity(admin_client, entries, expired_entry):
    response = admin_client.get(url("keystoreentry_changelist"))
    headers = {header["text"]: header for header in response.context["result_headers"]}
    assert headers["valid until"]["sortable"]
    assert not headers["actions"]["sortable"]
    column = headers["valid until"]["url_primary"]
    ordered = admin_client.get(url("keystoreentry_changelist") + column)
    aliases = [entry.alias for entry in ordered.context["cl"].result_list]
    assert aliases[0] == "old_partner"  # expired first, then the SAP key (20 days left)
    assert aliases[1] == "sap_cloudintegrationcertificate"


def rows_for(client, query: str = "") -> set[str]:
    response = client.get(url("keystoreentry_changelist") + query)
    assert response.status_code == 200
    return {entry.alias for entry in response.context["cl"].result_list}


def test_changelist_filters(users, entries, expired_entry, other_tenant):
    admin = client_for(users["Administrator"])
    response = admin.get(url("keystoreentry_changelist"))
    tenant_filter = response.context["cl"].filter_specs[0]
    assert [label for _, label in tenant_filter.lookup_choices] == ["tenant-a"]
    assert rows_for(admin, f"?tenant={other_tenant.pk}") == set()
    assert rows_for(admin, "?tenant=abc") == set()
    assert rows_for(admin, "?expiry=expired") == {"old_partner"}
    assert rows_for(admin, "?expiry=7") == set()
    assert rows_for(admin, "?expiry=30") == {"sap_cloudintegrationcertificate"}
    assert rows_for(admin, "?expiry=90") == {"sap_cloudintegrationcertificate"}
    assert rows_for(admin, "?owner__exact=sap") == {"sap_cloudintegrationcertificate"}
    assert rows_for(admin, "?entry_type__exact=certificate") == {"partner_root", "old_partner"}

    superuser = make_user("root")
    superuser.is_superuser = True
    superuser.save()
    root = client_for(superuser)
    response = root.get(url("keystoreentry_changelist"))
    labels = [label for _, label in response.context["cl"].filter_specs[0].lookup_choices]
    assert labels == ["tenant-a", "tenant-b"]
    assert rows_for(root, f"?tenant={other_tenant.pk}") == {"b_root"}


def test_changelist_search(users, entries, pki):
    reader = client_for(users["ReadOnly"])
    facts = crypto.certificate_facts(pki.leaf)
    assert rows_for(reader, "?q=" + facts.fingerprint_sha256) == {"client_key"}
    assert rows_for(reader, "?q=" + facts.fingerprint_sha256.replace(":", "")) == {"client_key"}
    assert rows_for(reader, "?q=" + facts.serial) == {"client_key"}
    assert rows_for(reader, "?q=Test Intermediate") == {"client_key"}  # the issuer
    assert rows_for(reader, "?q=client") == {"client_key"}
    # Another tenant's entry is not found, whatever the search.
    assert rows_for(reader, "?q=b_root") == set()


def clone_entries(template: KeystoreEntry, count: int, start: int) -> None:
    """Copies of a certificate entry under new aliases (fast: no crypto per row)."""
    fields = [f for f in KeystoreEntry._meta.concrete_fields if not f.primary_key]
    KeystoreEntry.objects.bulk_create(
        [
            KeystoreEntry(
                **{
                    **{f.attname: getattr(template, f.attname) for f in fields},
                    "alias": f"bulk_{number:03d}",
                    "material_id": uuid4(),
                    "owner": "sap" if number % 3 == 0 else "tenant",
                }
            )
            for number in range(start, start + count)
        ]
    )


def test_changelist_query_count_does_not_grow_with_rows(users, cert_entry):
    reader = client_for(users["ReadOnly"])
    clone_entries(cert_entry, 4, start=1)
    reader.get(url("keystoreentry_changelist"))  # warm caches (content types, session)

    with CaptureQueriesContext(connection) as five:
        response = reader.get(url("keystoreentry_changelist"))
    assert response.context["cl"].result_count == 5

    clone_entries(cert_entry, 45, start=5)
    with CaptureQueriesContext(connection) as fifty:
        response = reader.get(url("keystoreentry_changelist"))
    assert response.context["cl"].result_count == 50
    assert len(response.context["cl"].result_list) == 50

    assert len(fifty.captured_queries) == len(five.captured_queries)
    # The list never loads the chain or the sealed key.
    for query in fifty.captured_queries:
        assert "sealed_private_key" not in query["sql"]
        assert "chain_pem" not in query["sql"]


# -- detail page -----------------------------------------------------------------------------


def test_change_page_shows_the_chain_as_a_tree_root_first(admin_client, key_pair_entry, pki):
    response = admin_client.get(url("keystoreentry_change", key_pair_entry.pk))
    assert response.status_code == 200
    text = response.content.decode()
    tree = text[text.index('class="chain-tree"') :]
    positions = [
        tree.index(f"CN={name},O=SAP SE")
        for name in ("Test Root CA", "Test Intermediate CA", "Test Leaf")
    ]
    assert positions == sorted(positions)
    assert tree.count('class="chain-tree"') == 3  # one nesting level per chain member
    for cert in pki.chain:
        facts = crypto.certificate_facts(cert)
        assert facts.fingerprint_sha256 in tree
        assert facts.serial in tree
        assert facts.not_after.strftime("%Y-%m-%d %H:%M") in tree
    # The detail page offers the same buttons as the row.
    for kind in services.PUBLIC_FORMATS:
        assert url("keystoreentry_download", key_pair_entry.pk, kind) in text
    assert url("keystoreentry_rename", key_pair_entry.pk) in text
    assert url("keystoreentry_export", key_pair_entry.pk) in text


def test_change_page_has_no_editable_field_and_refuses_posts(users, key_pair_entry):
    superuser = make_user("root")
    superuser.is_superuser = True
    superuser.save()
    for user in (users["Administrator"], superuser):
        client = client_for(user)
        response = client.get(url("keystoreentry_change", key_pair_entry.pk))
        assert response.status_code == 200
        form = response.context["adminform"].form
        assert list(form.fields) == []
        assert 'name="_save"' not in response.content.decode()
        before = state()
        response = client.post(
            url("keystoreentry_change", key_pair_entry.pk),
            {"alias": "changed", "subject": "CN=forged", "_save": "Save"},
        )
        assert response.status_code == 403
        assert state() == before


def test_no_private_key_in_any_admin_page(users, entries, pki, sap_pki):
    markers = secret_markers(pki.leaf_key, sap_pki.leaf_key)
    for entry in KeystoreEntry.objects.exclude(sealed_private_key=None):
        sealed = bytes(entry.sealed_private_key)
        markers += [base64.b64encode(sealed)[40:100], sealed[40:100].hex().encode()]
    pair, sap = entries["client_key"], entries["sap"]
    pages = [
        url("keystoreentry_changelist"),
        url("keystoreentry_change", pair.pk),
        url("keystoreentry_change", sap.pk),
        url("keystoreentry_history", pair.pk),
        url("keystoreentry_add_certificate"),
        url("keystoreentry_add_key_pair"),
        url("keystoreentry_add_keystore"),
        url("keystoreentry_rename", pair.pk),
        url("keystoreentry_delete_entry", pair.pk),
        url("keystoreentry_export", pair.pk),
        url("keystoreentry_export", sap.pk),
        url("auditevent_changelist"),
        url("tenant_changelist"),
        reverse("admin:index"),
    ]
    seen_pages = 0
    for role in ROLE_NAMES:
        client = client_for(users[role])
        for page in pages:
            response = client.get(page)
            seen_pages += response.status_code == 200
            found = [marker for marker in markers if marker in response.content]
            assert not found, (role, page)
    assert seen_pages > 30  # the scan did look at real pages


# -- uploads that work -----------------------------------------------------------------------


def upload(client, name: str, **data):
    file_name, content = data.pop("file")
    return client.post(url(name), {**data, "file": SimpleUploadedFile(file_name, content)})


def test_upload_certificate_pem_chain(admin_client, users, tenant, pki):
    response = upload(
        admin_client,
        "keystoreentry_add_certificate",
        tenant=tenant.pk,
        alias="partner_chain",
        file=("chain.pem", pki_factory.pem(pki.root, pki.leaf, pki.inter)),
    )
    entry = KeystoreEntry.objects.get(tenant=tenant, alias="partner_chain")
    assert response.status_code == 302
    assert response["Location"] == url("keystoreentry_change", entry.pk)
    assert entry.entry_type == "certificate" and not entry.has_private_key
    assert entry.certificate_chain() == pki.chain  # ordered leaf first
    assert messages_of(response) == [
        "The certificate 'partner_chain' was added in tenant tenant-a."
    ]
    audit = AuditEvent.objects.get(alias="partner_chain")
    assert audit.action == AuditAction.ADD and audit.actor == users["Administrator"]


def test_upload_certificate_der_and_overwrite(admin_client, tenant, pki):
    data = {"tenant": tenant.pk, "alias": "partner", "file": ("p.cer", pki_factory.der(pki.root))}
    assert upload(admin_client, "keystoreentry_add_certificate", **dict(data)).status_code == 302
    entry = KeystoreEntry.objects.get(tenant=tenant, alias="partner")
    assert entry.certificate() == pki.root
    other = pki_factory.make_pki(prefix="Other")
    response = upload(
        admin_client,
        "keystoreentry_add_certificate",
        **{**data, "file": ("o.cer", pki_factory.der(other.root)), "overwrite": "on"},
    )
    assert response.status_code == 302
    entry.refresh_from_db()
    assert entry.certificate() == other.root and entry.version == 2
    assert (
        messages_of(response)[-1] == "The certificate 'partner' was overwritten in tenant tenant-a."
    )


def test_upload_key_pair(admin_client, tenant, pki):
    p12 = pki_factory.make_pkcs12_single("friendly", pki.leaf_key, pki.chain, "p12-secret")
    response = upload(
        admin_client,
        "keystoreentry_add_key_pair",
        tenant=tenant.pk,
        alias="my_pair",
        password="p12-secret",
        file=("pair.p12", p12),
    )
    assert response.status_code == 302
    entry = KeystoreEntry.objects.get(tenant=tenant, alias="my_pair")
    assert entry.entry_type == "key_pair" and entry.chain_length == 3
    assert crypto.private_key_matches(entry.open_private_key(), pki.leaf)


def summary_of(response) -> dict[str, dict[str, str]]:
    """result -> {alias: reason} from the summary page context."""
    context = response.context
    return {
        result: {row["alias"]: row["reason"] for row in context[result]}
        for result in ("added", "overwritten", "rejected")
    }


def test_upload_keystore_pkcs12(admin_client, tenant, pki):
    p12 = pki_factory.make_pkcs12_single("from_p12", pki.leaf_key, pki.chain, "store-pw")
    response = upload(
        admin_client,
        "keystoreentry_add_keystore",
        tenant=tenant.pk,
        password="store-pw",
        file=("store.p12", p12),
    )
    assert response.status_code == 302
    assert response["Location"] == url("keystoreentry_import_summary")
    page = admin_client.get(response["Location"])
    assert summary_of(page) == {"added": {"from_p12": ""}, "overwritten": {}, "rejected": {}}
    entry = KeystoreEntry.objects.get(tenant=tenant, alias="from_p12")
    assert entry.entry_type == "key_pair"
    assert "from_p12" in page.content.decode()


def test_upload_keystore_jks_with_summary_of_added_and_rejected(
    admin_client, tenant, key_pair_entry, pki
):
    other = pki_factory.make_pki(prefix="Partner")
    jks = pki_factory.make_jks(
        [
            ("jks_pair", other.leaf_key, other.chain),
            ("jks_root", None, [other.root]),
            ("sap_x", None, [other.inter]),
            ("client_key", other.leaf_key, other.chain),
        ],
        "jks-pass",
    )
    events = AuditEvent.objects.count()
    response = upload(
        admin_client,
        "keystoreentry_add_keystore",
        tenant=tenant.pk,
        password="jks-pass",
        file=("store.jks", jks),
    )
    assert response.status_code == 302
    assert "2 added, 0 overwritten, 2 rejected" in messages_of(response)[0]
    page = admin_client.get(response["Location"])
    summary = summary_of(page)
    assert summary["added"] == {"jks_pair": "", "jks_root": ""}
    assert summary["overwritten"] == {}
    assert set(summary["rejected"]) == {"sap_x", "client_key"}
    assert "reserved for SAP" in summary["rejected"]["sap_x"]
    assert "exists already" in summary["rejected"]["client_key"]
    assert "Choose overwrite" in summary["rejected"]["client_key"]
    text = html.unescape(page.content.decode())
    assert "reserved for SAP" in text and "exists already" in text
    # The existing entry was not touched; exactly the two added entries were audited.
    key_pair_entry.refresh_from_db()
    assert key_pair_entry.certificate() == pki.leaf
    assert AuditEvent.objects.count() == events + 2
    # Reloading the summary shows it again and imports nothing.
    again = admin_client.get(url("keystoreentry_import_summary"))
    assert summary_of(again) == summary
    assert AuditEvent.objects.count() == events + 2


def test_upload_keystore_overwrite(admin_client, tenant, key_pair_entry):
    other = pki_factory.make_pki(prefix="Renewed")
    jks = pki_factory.make_jks([("client_key", other.leaf_key, other.chain)], "jks-pass")
    response = upload(
        admin_client,
        "keystoreentry_add_keystore",
        tenant=tenant.pk,
        password="jks-pass",
        overwrite="on",
        file=("store.jks", jks),
    )
    page = admin_client.get(response["Location"])
    assert set(summary_of(page)["overwritten"]) == {"client_key"}
    key_pair_entry.refresh_from_db()
    assert key_pair_entry.certificate() == other.leaf


def test_upload_form_preselects_the_only_tenant(admin_client, tenant):
    response = admin_client.get(url("keystoreentry_add_certificate"))
    assert response.context["form"]["tenant"].value() == tenant.pk
    assert 'enctype="multipart/form-data"' in response.content.decode()


# -- uploads that are refused ----------------------------------------------------------------


def _weak_certificates(pki):
    now = datetime.now(UTC)
    expired_key = pki_factory.make_key()
    expired = pki_factory.make_cert(
        "Expired Partner",
        expired_key,
        pki.inter,
        pki.inter_key,
        not_before=now - timedelta(days=100),
        not_after=now - timedelta(days=1),
    )
    sha1_leaf = pki_factory.make_cert(
        "SHA1 Leaf", pki_factory.make_key(), pki.inter, pki.inter_key, hash_alg=hashes.SHA1()
    )
    small_key = pki_factory.make_key("rsa", 1024)
    rsa1024 = pki_factory.make_cert("Small Key", small_key, pki.inter, pki.inter_key)
    return expired, sha1_leaf, rsa1024


def refused_upload_cases(pki) -> dict[str, tuple[str, dict, str]]:
    """case -> (view, POST data without tenant, a phrase the error message must contain)."""
    expired, sha1_leaf, rsa1024 = _weak_certificates(pki)
    good_pem = pki_factory.pem(*pki.chain)
    p12 = pki_factory.make_pkcs12_single("pair", pki.leaf_key, pki.chain, "right-pw")
    stranger = pki_factory.make_pki(prefix="Stranger")
    # A key whose certificate is not in the file: cryptography will not write a mismatched
    # key and certificate, so the unrelated certificate goes in as an extra certificate.
    mismatched_p12 = pkcs12.serialize_key_and_certificates(
        b"pair",
        stranger.leaf_key,
        None,
        pki.chain,
        serialization.BestAvailableEncryption(b"right-pw"),
    )
    mismatched_jks = pki_factory.make_jks([("pair", stranger.leaf_key, pki.chain)], "right-pw")
    jks = pki_factory.make_jks([("pair", pki.leaf_key, pki.chain)], "right-pw")
    key_pem = pki.leaf_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    noise = bytes((i * 37 + 11) % 256 for i in range(700))
    big_cert = b"0" * (crypto.MAX_CERTIFICATE_BYTES + 1)
    big_store = b"0" * (crypto.MAX_KEYSTORE_BYTES + 1)

    def cert(alias: str, content: bytes, **extra) -> dict:
        return {"alias": alias, "file": ("c.pem", content), **extra}

    def pair(content: bytes, password: str = "right-pw", alias: str = "new_pair") -> dict:
        return {"alias": alias, "password": password, "file": ("k.p12", content)}

    def store(content: bytes, password: str = "right-pw") -> dict:
        return {"password": password, "file": ("s.p12", content)}

    certificate, key_pair, keystore = (
        "keystoreentry_add_certificate",
        "keystoreentry_add_key_pair",
        "keystoreentry_add_keystore",
    )
    return {
        "cert empty file": (certificate, cert("x", b""), "The file is empty."),
        "cert random bytes": (certificate, cert("x", noise), "Not a certificate"),
        "cert truncated DER": (
            certificate,
            cert("x", pki_factory.der(pki.leaf)[:300]),
            "Not a certificate",
        ),
        "cert truncated PEM": (certificate, cert("x", good_pem[:900]), "truncated"),
        "cert is a private key": (certificate, cert("x", key_pem), "private key"),
        "cert oversize": (certificate, cert("x", big_cert), "larger than 64 KiB"),
        "cert duplicate alias": (certificate, cert("partner_root", good_pem), "exists already"),
        "cert reserved prefix": (certificate, cert("sap_x", good_pem), "reserved for SAP"),
        "cert SAP alias overwrite": (
            certificate,
            cert("sap_cloudintegrationcertificate", good_pem, overwrite="on"),
            "reserved for SAP",
        ),
        "cert control character": (
            certificate,
            cert("bad\x07alias", good_pem),
            "control characters",
        ),
        "cert blank around alias": (certificate, cert(" padded ", good_pem), "white space"),
        "cert expired": (
            certificate,
            cert("x", pki_factory.pem(expired, pki.inter, pki.root)),
            "expired",
        ),
        "cert SHA-1 leaf": (
            certificate,
            cert("x", pki_factory.pem(sha1_leaf, pki.inter, pki.root)),
            "SHA-1",
        ),
        "cert RSA-1024": (
            certificate,
            cert("x", pki_factory.pem(rsa1024, pki.inter, pki.root)),
            "1024-bit RSA key",
        ),
        "pair wrong password": (key_pair, pair(p12, "wrong-pw-777"), "Wrong password"),
        "pair missing password": (key_pair, pair(p12, ""), "This field is required"),
        "pair empty file": (key_pair, pair(b""), "The file is empty."),
        "pair random bytes": (key_pair, pair(noise), "Not a PKCS#12 file"),
        "pair truncated": (key_pair, pair(p12[: len(p12) // 2]), "PKCS#12"),
        "pair key does not match": (key_pair, pair(mismatched_p12), "no matching certificate"),
        "pair is a JKS": (key_pair, pair(jks), "PKCS#12"),
        "pair oversize": (key_pair, pair(big_store), "larger than 1 MiB"),
        "pair reserved prefix": (key_pair, pair(p12, alias="sap_mine"), "reserved for SAP"),
        "pair duplicate alias": (key_pair, pair(p12, alias="client_key"), "exists already"),
        "store wrong password": (keystore, store(jks, "wrong-pw-777"), "Wrong password"),
        "store empty file": (keystore, store(b""), "The file is empty."),
        "store random bytes": (keystore, store(noise), "PKCS#12"),
        "store truncated JKS": (keystore, store(jks[: len(jks) // 2]), "Java keystore"),
        "store key does not match": (keystore, store(mismatched_jks), "does not match"),
        "store oversize": (keystore, store(big_store), "larger than 1 MiB"),
    }


def test_refused_uploads_say_why_and_store_nothing(
    admin_client, tenant, key_pair_entry, cert_entry, sap_entry, pki
):
    failures = {}
    for case, (view, data, phrase) in refused_upload_cases(pki).items():
        before = state()
        response = upload(admin_client, view, tenant=tenant.pk, **data)
        errors = form_errors(response) if response.status_code == 200 else ""
        if response.status_code != 200 or phrase not in errors or state() != before:
            failures[case] = (response.status_code, errors, state() == before)
        # Passwords never come back in the page.
        if data.get("password"):
            assert data["password"].encode() not in response.content, case
    assert failures == {}


def test_oversize_files_are_refused_before_they_are_read(admin_client, tenant, monkeypatch):
    def must_not_read(upload):
        raise AssertionError("the file was read")

    monkeypatch.setattr("keystore.admin.read_upload", must_not_read)
    response = upload(
        admin_client,
        "keystoreentry_add_keystore",
        tenant=tenant.pk,
        password="pw",
        file=("big.p12", b"\0" * (crypto.MAX_KEYSTORE_BYTES + 1)),
    )
    assert response.status_code == 200
    assert form_errors(response) == "The file is larger than 1 MiB, the limit for a keystore file."


# -- rename, delete, export ------------------------------------------------------------------


def test_rename_and_a_repeated_rename(admin_client, key_pair_entry):
    rename = url("keystoreentry_rename", key_pair_entry.pk)
    form = admin_client.get(rename, {"new_alias": "via_get"})
    assert form.status_code == 200
    assert KeystoreEntry.objects.get(pk=key_pair_entry.pk).alias == "client_key"

    response = admin_client.post(rename, {"new_alias": "client_key_v2"})
    assert response.status_code == 302
    assert response["Location"] == url("keystoreentry_change", key_pair_entry.pk)
    assert messages_of(response) == ["Renamed 'client_key' to 'client_key_v2'."]
    entry = KeystoreEntry.objects.get(pk=key_pair_entry.pk)
    assert entry.alias == "client_key_v2"
    assert entry.open_private_key() is not None  # resealed for the new alias
    # A second submit of the same form changes nothing and says why.
    before = state()
    again = admin_client.post(rename, {"new_alias": "client_key_v2"})
    assert again.status_code == 200
    assert "same as the old one" in form_errors(again)
    assert state() == before
    assert AuditEvent.objects.filter(action=AuditAction.RENAME).count() == 1


def test_rename_refusals(admin_client, key_pair_entry, cert_entry):
    rename = url("keystoreentry_rename", key_pair_entry.pk)
    for new_alias, phrase in [
        ("partner_root", "exists already"),
        ("sap_mine", "reserved for SAP"),
        ("tab\there", "control characters"),
        ("", "This field is required"),
        ("x" * 251, "at most 250 characters"),
    ]:
        before = state()
        response = admin_client.post(rename, {"new_alias": new_alias})
        assert response.status_code == 200, new_alias
        assert phrase in form_errors(response), new_alias
        assert state() == before


def test_sap_owned_entries_cannot_be_renamed_or_deleted(admin_client, sap_entry):
    before = state()
    for name in ("keystoreentry_rename", "keystoreentry_delete_entry"):
        page = url(name, sap_entry.pk)
        for response in (
            admin_client.get(page),
            admin_client.post(page, {"new_alias": "mine"}),
        ):
            assert response.status_code == 302
            assert response["Location"] == url("keystoreentry_change", sap_entry.pk)
            assert "owned by SAP" in messages_of(response)[-1]
    assert state() == before


def test_delete_confirmation_then_delete_then_repeat(admin_client, key_pair_entry):
    delete = url("keystoreentry_delete_entry", key_pair_entry.pk)
    page = admin_client.get(delete)
    text = page.content.decode()
    assert page.status_code == 200
    for fact in ("client_key", key_pair_entry.fingerprint_sha256, "Test Leaf"):
        assert fact in html.unescape(text)
    assert KeystoreEntry.objects.filter(pk=key_pair_entry.pk).exists()

    response = admin_client.post(delete)
    assert response.status_code == 302
    assert response["Location"] == url("keystoreentry_changelist")
    assert not KeystoreEntry.objects.filter(pk=key_pair_entry.pk).exists()
    audit = AuditEvent.objects.get(action=AuditAction.DELETE)
    assert audit.alias == "client_key"
    assert audit.old_fingerprint == key_pair_entry.fingerprint_sha256

    repeated = admin_client.post(delete)
    assert repeated.status_code == 302
    assert "no longer exists" in messages_of(repeated)[-1]
    assert AuditEvent.objects.filter(action=AuditAction.DELETE).count() == 1


def test_export_pkcs12(admin_client, users, key_pair_entry, pki):
    response = admin_client.post(
        url("keystoreentry_export", key_pair_entry.pk),
        {"password1": "Export-Pass-1", "password2": "Export-Pass-1"},
    )
    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-pkcs12"
    assert response["Content-Disposition"] == 'attachment; filename="client_key.p12"'
    key, cert, extra = pkcs12.load_key_and_certificates(response.content, b"Export-Pass-1")
    assert cert == pki.leaf
    assert crypto.private_key_matches(key, pki.leaf)
    assert set(extra) == {pki.inter, pki.root}
    audit = AuditEvent.objects.get(action=AuditAction.EXPORT)
    assert audit.actor == users["Administrator"] and audit.alias == "client_key"


def test_export_refusals(admin_client, key_pair_entry):
    export = url("keystoreentry_export", key_pair_entry.pk)
    for password1, password2, phrase in [
        ("Export-Pass-1", "Export-Pass-2", "The two passwords differ."),
        ("short", "short", "at least 8 characters"),
        ("", "", "This field is required"),
    ]:
        before = state()
        response = admin_client.post(export, {"password1": password1, "password2": password2})
        assert response.status_code == 200
        assert response["Content-Type"].startswith("text/html")
        assert phrase in form_errors(response)
        for secret in {password1, password2} - {""}:
            assert secret.encode() not in response.content
        assert state() == before


def test_export_of_a_certificate_entry_is_refused(admin_client, cert_entry):
    response = admin_client.post(
        url("keystoreentry_export", cert_entry.pk),
        {"password1": "Export-Pass-1", "password2": "Export-Pass-1"},
    )
    assert response.status_code == 302
    assert "Only key pairs" in messages_of(response)[-1]
    assert not AuditEvent.objects.filter(action=AuditAction.EXPORT).exists()


def test_posts_need_the_csrf_token(users, key_pair_entry):
    client = Client(enforce_csrf_checks=True)
    client.force_login(users["Administrator"])
    before = state()
    response = client.post(
        url("keystoreentry_rename", key_pair_entry.pk), {"new_alias": "no_token"}
    )
    assert response.status_code == 403
    assert client.post(url("keystoreentry_delete_entry", key_pair_entry.pk)).status_code == 403
    assert state() == before


# -- bulk delete action ----------------------------------------------------------------------


def test_bulk_delete_confirms_then_deletes_only_tenant_entries(admin_client, entries):
    selected = [entry.pk for entry in entries.values()]
    data = {"action": "delete_selected_entries", ACTION_CHECKBOX_NAME: selected}
    before = state()
    page = admin_client.post(url("keystoreentry_changelist"), {**data, "index": 0})
    assert page.status_code == 200
    assert [entry.alias for entry in page.context["deletable"]] == ["client_key", "partner_root"]
    assert [entry.alias for entry in page.context["sap_owned"]] == [
        "sap_cloudintegrationcertificate"
    ]
    assert state() == before  # the confirmation page changes nothing

    response = admin_client.post(url("keystoreentry_changelist"), {**data, "post": "yes"})
    assert response.status_code == 302
    remaining = set(KeystoreEntry.objects.values_list("alias", flat=True))
    assert remaining == {"sap_cloudintegrationcertificate", "b_root"}
    notes = messages_of(response)
    assert any("Deleted 2 entries: client_key, partner_root." in note for note in notes)
    assert any(
        "owned by SAP" in note and "sap_cloudintegrationcertificate" in note for note in notes
    )
    assert AuditEvent.objects.filter(action=AuditAction.DELETE).count() == 2


# -- audit log and tenants -------------------------------------------------------------------


def test_audit_log_is_read_only_even_for_superusers(users, entries):
    superuser = make_user("root")
    superuser.is_superuser = True
    superuser.save()
    client = client_for(superuser)
    event = AuditEvent.objects.filter(alias="client_key").first()
    count = AuditEvent.objects.count()
    response = client.get(url("auditevent_changelist"))
    assert response.status_code == 200
    assert {e.tenant.slug for e in response.context["cl"].result_list} == {"tenant-a", "tenant-b"}
    assert response.context["action_form"] is None
    assert client.get(url("auditevent_add")).status_code == 403
    assert client.get(url("auditevent_delete", event.pk)).status_code == 403
    assert client.post(url("auditevent_change", event.pk), {"alias": "x"}).status_code == 403
    page = client.get(url("auditevent_change", event.pk))
    assert list(page.context["adminform"].form.fields) == []
    assert AuditEvent.objects.count() == count

    reader = client_for(users["ReadOnly"]).get(url("auditevent_changelist") + "?q=client_key")
    rows = reader.context["cl"].result_list
    assert {e.alias for e in rows} == {"client_key"}
    assert [label for _, label in reader.context["cl"].filter_specs[0].lookup_choices] == [
        "tenant-a"
    ]
    assert event.new_fingerprint in reader.content.decode()


def test_superuser_adds_a_tenant_with_its_role_groups(users):
    superuser = make_user("root")
    superuser.is_superuser = True
    superuser.save()
    response = client_for(superuser).post(
        url("tenant_add"), {"name": "Tenant C", "slug": "tenant-c"}
    )
    assert response.status_code == 302
    tenant = Tenant.objects.get(slug="tenant-c")
    assert set(TenantRole.objects.filter(tenant=tenant).values_list("role", flat=True)) == {
        "Administrator",
        "IntegrationDeveloper",
        "ReadOnly",
    }
    # A tenant administrator cannot add tenants.
    refused = client_for(users["Administrator"]).post(
        url("tenant_add"), {"name": "Tenant D", "slug": "tenant-d"}
    )
    assert refused.status_code == 403
    assert not Tenant.objects.filter(slug="tenant-d").exists()


def test_guardian_object_permission_pages_are_not_exposed(users, tenant):
    with pytest.raises(NoReverseMatch):
        reverse("admin:keystore_tenant_permissions", args=[tenant.pk])
    response = client_for(users["Administrator"]).get(
        f"/admin/keystore/tenant/{tenant.pk}/permissions/"
    )
    assert response.status_code != 200
