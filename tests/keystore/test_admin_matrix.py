"""The permission matrix of every keystore admin page and URL.

Roles (tests/conftest.py `users`): no role, ReadOnly, IntegrationDeveloper and Administrator of
tenant A, and Administrator of tenant B ("other_admin"). Each page is requested by each role with
the expected status; each POST is made directly (no page visited first) and the rows are checked
to have changed only where the role may change them.

Each test walks all five roles over one set of rows and compares the whole row of the matrix at
once, so a failure shows every role's status side by side. Roles that may not change anything go
first; the Administrator, whose POST changes rows, goes last.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from cryptography.hazmat.primitives.serialization import pkcs12
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from keystore import services
from keystore.models import AuditAction, AuditEvent, KeystoreEntry, Tenant
from tests import pki as pki_factory
from tests.conftest import ROLE_NAMES, client_for

READERS = ("ReadOnly", "IntegrationDeveloper", "Administrator")
A_ALIASES = {"client_key", "partner_root", "sap_cloudintegrationcertificate"}
B_ALIASES = {"b_root"}


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # The users fixture creates five users per test; the default hasher would dominate the run.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@dataclass
class World:
    users: dict
    tenant: Tenant
    other_tenant: Tenant
    key_pair: KeystoreEntry
    certificate: KeystoreEntry
    sap: KeystoreEntry
    b_entry: KeystoreEntry
    pki: pki_factory.Pki
    clients: dict = field(default_factory=dict)

    def client(self, role: str):
        """One logged-in test client per role (building a client loads all middleware)."""
        if role not in self.clients:
            self.clients[role] = client_for(self.users[role])
        return self.clients[role]


@pytest.fixture
def world(users, tenant, other_tenant, key_pair_entry, cert_entry, sap_entry, pki):
    b_entry = services.import_certificate(other_tenant, "b_root", pki_factory.der(pki.root))
    return World(users, tenant, other_tenant, key_pair_entry, cert_entry, sap_entry, b_entry, pki)


def url(name: str, *args) -> str:
    return reverse(f"admin:keystore_{name}", args=args)


def snapshot() -> set[tuple]:
    """Every entry as (tenant, alias, fingerprint, version): any change shows up here."""
    return set(
        KeystoreEntry.objects.values_list("tenant__slug", "alias", "fingerprint_sha256", "version")
    )


# Roles that may not change tenant A go first, so "nothing changed" is checked before the
# Administrator's request changes rows.
ROLE_ORDER = ("none", "ReadOnly", "IntegrationDeveloper", "other_admin", "Administrator")
assert set(ROLE_ORDER) == set(ROLE_NAMES)


def matrix(allowed, yes: int = 200, no: int = 403) -> dict[str, int]:
    return {role: yes if role in allowed else no for role in ROLE_ORDER}


SEES = {"a": set(READERS), "b": {"other_admin"}}


def object_matrix(
    allowed, tenant: str = "a", yes: int = 200, gated: bool = False
) -> dict[str, int]:
    """The answers for an object of tenant A (or B): 403 for a role of that tenant without the
    permission, 404 (exactly like a missing object) for users who do not see the tenant at all.
    `gated`: the view first asks "may this user deploy anywhere", so a user without any role
    gets 403 whatever the id."""
    result = {
        role: yes if role in allowed else 403 if role in SEES[tenant] else 404
        for role in ROLE_ORDER
    }
    if gated and "none" not in allowed:
        result["none"] = 403
    return result


def statuses(world, path: str, data: dict | None = None) -> dict[str, int]:
    """role -> status of a GET (or, with data, a POST) of `path`, for each role in ROLE_ORDER."""
    result = {}
    for role in ROLE_ORDER:
        client = world.client(role)
        response = client.get(path) if data is None else client.post(path, data)
        result[role] = response.status_code
    return result


# -- pages (GET) -----------------------------------------------------------------------------


def test_entry_changelist_rows(world):
    rows = {}
    for role in ROLE_ORDER:
        response = world.client(role).get(url("keystoreentry_changelist"))
        rows[role] = (
            {entry.alias for entry in response.context["cl"].result_list}
            if response.status_code == 200
            else response.status_code
        )
    assert rows == {
        "none": 403,
        "ReadOnly": A_ALIASES,
        "IntegrationDeveloper": A_ALIASES,
        "other_admin": B_ALIASES,
        "Administrator": A_ALIASES,
    }


def test_entry_change_and_history_pages(world):
    for entry in (world.key_pair, world.certificate, world.sap):
        change = url("keystoreentry_change", entry.pk)
        assert statuses(world, change) == object_matrix(READERS), entry.alias
    history = url("keystoreentry_history", world.key_pair.pk)
    assert statuses(world, history) == object_matrix(READERS)
    other = url("keystoreentry_change", world.b_entry.pk)
    assert statuses(world, other) == object_matrix({"other_admin"}, "b")
    missing = url("keystoreentry_change", world.b_entry.pk + 1000)
    assert statuses(world, missing) == matrix((), no=404) | {"none": 404}


def test_downloads(world):
    for kind in services.PUBLIC_FORMATS:
        own = url("keystoreentry_download", world.key_pair.pk, kind)
        assert statuses(world, own) == object_matrix(READERS), kind
        sap = url("keystoreentry_download", world.sap.pk, kind)
        assert statuses(world, sap) == object_matrix(READERS), kind
        other = url("keystoreentry_download", world.b_entry.pk, kind)
        expected = object_matrix({"other_admin"}, "b")
        if kind == "ssh":
            # Tenant B's entry is a certificate: its reader is sent back with the reason.
            expected = {**expected, "other_admin": 302}
        assert statuses(world, other) == expected


def test_upload_pages(world):
    for name in (
        "keystoreentry_add_certificate",
        "keystoreentry_add_key_pair",
        "keystoreentry_add_keystore",
    ):
        offered = {}
        for role in ROLE_ORDER:
            response = world.client(role).get(url(name))
            offered[role] = (
                {tenant.slug for tenant in response.context["form"].fields["tenant"].queryset}
                if response.status_code == 200
                else response.status_code
            )
        # Administrators of either tenant may upload, each into their own tenant only.
        assert offered == {
            "none": 403,
            "ReadOnly": 403,
            "IntegrationDeveloper": 403,
            "other_admin": {"tenant-b"},
            "Administrator": {"tenant-a"},
        }, name


def test_import_summary_page(world):
    summary = url("keystoreentry_import_summary")
    # Without an import in the session, uploaders are sent back to the list.
    assert statuses(world, summary) == matrix({"Administrator", "other_admin"}, yes=302)


def test_change_form_pages(world):
    before = snapshot()
    for name, allowed, gated in (
        ("keystoreentry_rename", {"Administrator"}, True),
        ("keystoreentry_delete_entry", {"Administrator"}, True),
        ("keystoreentry_export", {"Administrator"}, False),
    ):
        page = url(name, world.key_pair.pk)
        assert statuses(world, page) == object_matrix(allowed, gated=gated), name
    assert snapshot() == before


def test_builtin_add_change_delete_are_off_for_everyone(world):
    before = snapshot()
    add = url("keystoreentry_add")
    delete = url("keystoreentry_delete", world.key_pair.pk)
    change = url("keystoreentry_change", world.key_pair.pk)
    everyone_403 = matrix(())
    assert statuses(world, add) == everyone_403
    assert statuses(world, delete) == everyone_403
    assert statuses(world, delete, {"post": "yes"}) == everyone_403
    assert statuses(world, change, {"alias": "changed"}) == object_matrix(())
    assert snapshot() == before


def test_audit_pages(world):
    rows = {}
    for role in ROLE_ORDER:
        response = world.client(role).get(url("auditevent_changelist"))
        rows[role] = (
            {event.tenant.slug for event in response.context["cl"].result_list}
            if response.status_code == 200
            else response.status_code
        )
    assert rows == {
        "none": 403,
        "ReadOnly": {"tenant-a"},
        "IntegrationDeveloper": {"tenant-a"},
        "other_admin": {"tenant-b"},
        "Administrator": {"tenant-a"},
    }
    a_event = AuditEvent.objects.filter(tenant=world.tenant).first()
    b_event = AuditEvent.objects.filter(tenant=world.other_tenant).first()
    a_change = url("auditevent_change", a_event.pk)
    b_change = url("auditevent_change", b_event.pk)
    assert statuses(world, a_change) == object_matrix(READERS)
    assert statuses(world, b_change) == object_matrix({"other_admin"}, "b")
    count = AuditEvent.objects.count()
    everyone_403 = matrix(())
    add = url("auditevent_add")
    delete = url("auditevent_delete", a_event.pk)
    assert statuses(world, add) == everyone_403
    assert statuses(world, add, {"alias": "x"}) == everyone_403
    assert statuses(world, a_change, {"alias": "x"}) == object_matrix(())
    assert statuses(world, delete, {"post": "yes"}) == everyone_403
    assert AuditEvent.objects.count() == count
    assert AuditEvent.objects.get(pk=a_event.pk).alias == a_event.alias


def test_tenant_pages(world):
    rows = {}
    for role in ROLE_ORDER:
        response = world.client(role).get(url("tenant_changelist"))
        rows[role] = (
            {tenant.slug for tenant in response.context["cl"].result_list}
            if response.status_code == 200
            else response.status_code
        )
    assert rows == {
        "none": 403,
        "ReadOnly": {"tenant-a"},
        "IntegrationDeveloper": {"tenant-a"},
        "other_admin": {"tenant-b"},
        "Administrator": {"tenant-a"},
    }
    change = url("tenant_change", world.tenant.pk)
    assert statuses(world, change) == object_matrix(READERS)
    everyone_403 = matrix(())
    add = url("tenant_add")
    assert statuses(world, add) == everyone_403
    assert statuses(world, change, {"name": "x", "slug": "x"}) == object_matrix(())
    assert Tenant.objects.get(pk=world.tenant.pk).slug == "tenant-a"


# -- actions (POST made directly) ------------------------------------------------------------


def upload_cases(world) -> dict[str, tuple[str, dict, str]]:
    """name -> (url name, POST data for tenant A, alias that a successful upload creates)."""
    chain = world.pki.chain
    p12 = pki_factory.make_pkcs12_single("up", world.pki.leaf_key, chain, "pw-123456")
    jks = pki_factory.make_jks([("jks_pair", world.pki.leaf_key, chain)], "store-pw")
    tenant = world.tenant.pk
    return {
        "certificate": (
            "keystoreentry_add_certificate",
            {"tenant": tenant, "alias": "new_cert", "file": ("c.pem", pki_factory.pem(*chain))},
            "new_cert",
        ),
        "key_pair": (
            "keystoreentry_add_key_pair",
            {
                "tenant": tenant,
                "alias": "new_pair",
                "password": "pw-123456",
                "file": ("k.p12", p12),
            },
            "new_pair",
        ),
        "keystore": (
            "keystoreentry_add_keystore",
            {"tenant": tenant, "password": "store-pw", "file": ("s.jks", jks)},
            "jks_pair",
        ),
    }


def with_file(data: dict) -> dict:
    """A fresh upload object per request (a file is consumed by the request that sends it)."""
    name, content = data["file"]
    return {**data, "file": SimpleUploadedFile(name, content)}


@pytest.mark.parametrize("case", ["certificate", "key_pair", "keystore"])
def test_upload_posts_into_tenant_a(world, case):
    name, data, alias = upload_cases(world)[case]
    results = {}
    for role in ROLE_ORDER:
        before = snapshot()
        response = world.client(role).post(url(name), with_file(data))
        added = snapshot() - before
        results[role] = (response.status_code, {row[:2] for row in added}, before <= snapshot())
    # other_admin may upload, but not into tenant A: the posted tenant is refused.
    refused = (403, set(), True)
    assert results == {
        "none": refused,
        "ReadOnly": refused,
        "IntegrationDeveloper": refused,
        "other_admin": refused,
        "Administrator": (302, {("tenant-a", alias)}, True),
    }


def test_rename_post(world):
    rename = url("keystoreentry_rename", world.key_pair.pk)
    results = {}
    for role in ROLE_ORDER:
        before = snapshot()
        response = world.client(role).post(rename, {"new_alias": "renamed"})
        results[role] = (response.status_code, snapshot() == before)
    assert results == {
        "none": (403, True),
        "ReadOnly": (403, True),
        "IntegrationDeveloper": (403, True),
        "other_admin": (404, True),  # another tenant's entry: like a missing one
        "Administrator": (302, False),
    }
    assert KeystoreEntry.objects.get(pk=world.key_pair.pk).alias == "renamed"


def test_delete_post(world):
    delete = url("keystoreentry_delete_entry", world.key_pair.pk)
    results = {}
    for role in ROLE_ORDER:
        before = snapshot()
        response = world.client(role).post(delete)
        results[role] = (response.status_code, snapshot() == before)
    assert results == {
        "none": (403, True),
        "ReadOnly": (403, True),
        "IntegrationDeveloper": (403, True),
        # Another tenant's entry is answered like a missing one: "deleted already".
        "other_admin": (302, True),
        "Administrator": (302, False),
    }
    assert not KeystoreEntry.objects.filter(pk=world.key_pair.pk).exists()


def test_export_post(world):
    export = url("keystoreentry_export", world.key_pair.pk)
    passwords = {"password1": "export-pw-1", "password2": "export-pw-1"}
    results = {}
    for role in ROLE_ORDER:
        before = AuditEvent.objects.filter(action=AuditAction.EXPORT).count()
        response = world.client(role).post(export, passwords)
        exported = AuditEvent.objects.filter(action=AuditAction.EXPORT).count() - before
        results[role] = (response.status_code, exported)
        if response.status_code == 200:
            key, cert, _ = pkcs12.load_key_and_certificates(response.content, b"export-pw-1")
            assert cert == world.pki.leaf
        else:
            assert b"export-pw-1" not in response.content
    assert results == {
        "none": (404, 0),
        "ReadOnly": (403, 0),
        "IntegrationDeveloper": (403, 0),
        "other_admin": (404, 0),
        "Administrator": (200, 1),
    }


def test_bulk_delete_action_post(world):
    """The bulk action deletes only tenant-owned entries of tenants the user may change."""
    selected = [world.key_pair.pk, world.sap.pk, world.b_entry.pk]
    changelist = url("keystoreentry_changelist")
    results = {}
    for role in ("none", "ReadOnly", "IntegrationDeveloper", "Administrator", "other_admin"):
        before = set(KeystoreEntry.objects.values_list("alias", flat=True))
        response = world.client(role).post(
            changelist,
            {"action": "delete_selected_entries", "post": "yes", ACTION_CHECKBOX_NAME: selected},
        )
        gone = before - set(KeystoreEntry.objects.values_list("alias", flat=True))
        results[role] = (response.status_code, gone)
    # Readers have no delete action: the changelist just renders again.
    assert results == {
        "none": (403, set()),
        "ReadOnly": (200, set()),
        "IntegrationDeveloper": (200, set()),
        "Administrator": (302, {"client_key"}),
        "other_admin": (302, {"b_root"}),
    }
    assert KeystoreEntry.objects.filter(pk=world.sap.pk).exists()
