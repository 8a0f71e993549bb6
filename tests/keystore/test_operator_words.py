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


def test_lists_are_titled_by_their_screen_and_count_in_words(users, tenant, sap_pki):
    from renewals.activation import activate_pending_key, provision_sap_key
    from tests import pki as pki_factory

    services.create_sap_entry(
        tenant, "sap_cloudintegrationcertificate", sap_pki.leaf_key, sap_pki.chain
    )
    for _ in range(2):
        provision_sap_key(
            tenant,
            "sap_cloudintegrationcertificate",
            valid_days=400,
            private_key=pki_factory.make_key(),
            ca=(sap_pki.inter_key, [sap_pki.inter, sap_pki.root]),
            replace=True,
        )
        activate_pending_key(tenant, "sap_cloudintegrationcertificate")
    client = client_for(users["Administrator"])
    pages = {
        "keystore_keystoreentry": "Keystore",
        "renewals_pendingsapkey": "New SAP Keys",
        "renewals_sapkeybackup": "SAP Key History",
        "keystore_auditevent": "Audit log",
    }
    for name, title in pages.items():
        text = client.get(reverse(f"admin:{name}_changelist")).content.decode()
        assert f"<title>{title} |" in text, name
        assert "to view" not in text, name
    history = client.get(reverse("admin:renewals_sapkeybackup_changelist")).content.decode()
    assert "2 SAP key backups" in re.sub(r"\s+", " ", history)
    waiting = client.get(reverse("admin:renewals_pendingsapkey_changelist")).content.decode()
    assert "0 new SAP keys" in re.sub(r"\s+", " ", waiting)
