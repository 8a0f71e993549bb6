"""The delete confirmation names the flows and backends that where-used knows use the alias
(issue 15, item 7), and says so when it knows none."""

from __future__ import annotations

import io

from django.urls import reverse

from keystore import services
from keystore.models import KeystoreEntry
from renewals.whereused.importing import import_flow_exports
from tests import pki as pki_factory
from tests.conftest import client_for
from tests.renewals import flowfactory


def confirmation(user, entry: KeystoreEntry) -> str:
    url = reverse("admin:keystore_keystoreentry_delete_entry", args=[entry.pk])
    response = client_for(user).get(url)
    assert response.status_code == 200
    return response.content.decode()


def test_the_flows_and_backends_using_the_alias_are_named(users, tenant, pki):
    p12 = pki_factory.make_pkcs12_single("client", pki.leaf_key, pki.chain, "secret-pw")
    entry = services.import_key_pair(tenant, "erp_client", p12, "secret-pw")
    admin = users["Administrator"]
    assert "Where-used knows no flow that uses erp_client" in confirmation(admin, entry)

    xml = flowfactory.iflw(
        flowfactory.channel(
            "MessageFlow_1",
            "To ERP",
            "SOAP",
            props={"authentication": "Client Certificate", "privateKeyAlias": "erp_client"},
            receiver="ERP_PROD",
        )
    )
    zipped = flowfactory.flow_zip("com.example.orders", xml, bundle_name="Orders to ERP")
    [result] = import_flow_exports(tenant, [("orders.zip", io.BytesIO(zipped))])
    assert result.ok, result.message

    page = confirmation(admin, entry)
    assert "Where-used knows 1 flow that uses erp_client: Orders to ERP, towards ERP_PROD" in page
    assert KeystoreEntry.objects.filter(pk=entry.pk).exists()  # a GET deletes nothing
