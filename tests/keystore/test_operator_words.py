"""Words of the domain, not of Django (issue 15, item 6): a weak key is refused by its alias, flow
imports have their own audit action, field names carry no "label" suffix, every page writes a
moment the same way, and the index shows no empty "Recent actions" box."""

from __future__ import annotations

import io
import re

import pytest
from django.urls import reverse

from keystore import services
from keystore.models import AuditAction, AuditEvent, KeystoreEntry
from keystore.services import KeystoreError
from renewals.whereused.importing import import_flow_exports
from tests import pki as pki_factory
from tests.conftest import client_for
from tests.renewals import flowfactory


def test_a_weak_key_is_refused_by_its_alias(tenant, pki):
    small = pki_factory.make_key("rsa", 1024)
    leaf = pki_factory.make_cert("Small Key", small, pki.inter, pki.inter_key)
    with pytest.raises(KeystoreError) as refused:
        services.import_certificate(
            tenant, "partner_signing", pki_factory.pem(leaf, pki.inter, pki.root)
        )
    assert str(refused.value).startswith("'partner_signing' has a 1024-bit RSA key")
    assert "Small Key" not in str(refused.value)
    assert not KeystoreEntry.objects.exists()


def test_flow_imports_removals_and_restarts_have_their_own_actions(tenant):
    xml = flowfactory.iflw(
        flowfactory.channel("MessageFlow_1", "To ERP", "SOAP", props={"privateKeyAlias": "k"})
    )
    data = flowfactory.flow_zip("com.example.words", xml)
    [result] = import_flow_exports(tenant, [("words.zip", io.BytesIO(data))])
    assert result.ok, result.message
    [event] = AuditEvent.objects.filter(tenant=tenant)
    assert event.action == AuditAction.FLOW_IMPORT
    assert event.get_action_display() == "Flow imported"


def test_pages_write_moments_one_way_and_name_fields_without_label(users, tenant, pki):
    entry = services.import_certificate(tenant, "partner_root", pki_factory.der(pki.root))
    client = client_for(users["Administrator"])
    page = client.get(reverse("admin:keystore_keystoreentry_change", args=[entry.pk]))
    text = page.content.decode()
    assert page.status_code == 200
    assert "label" not in re.sub(r"<[^>]+>", " ", text).lower().replace("aria-label", "")
    assert not re.search(r"\b(a\.m\.|p\.m\.|noon|midnight)", text)
    assert entry.valid_until.strftime("%Y-%m-%d") in text
    audit = client.get(reverse("admin:keystore_auditevent_changelist"))
    assert "Actor label" not in audit.content.decode()


def test_the_index_has_no_recent_actions_box(users):
    page = client_for(users["Administrator"]).get(reverse("admin:index"))
    assert page.status_code == 200
    assert "Recent actions" not in page.content.decode()
