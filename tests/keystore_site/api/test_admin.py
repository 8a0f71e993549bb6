"""API clients in the admin: administrators create them (the secret on the answering page only,
never cached, never again) and revoke them; other roles are refused and change nothing."""

from __future__ import annotations

from django.urls import reverse

from keystore_site.api.models import ApiClient
from tests.conftest import client_for
from tests.keystore_site.api.conftest import basic

CREATE = reverse("admin:api_apiclient_create")


def test_an_administrator_creates_and_revokes(users, tenant):
    admin = client_for(users["Administrator"])
    page = admin.post(CREATE, {"tenant": tenant.pk, "name": "monitoring", "role": "ReadOnly"})
    assert page.status_code == 200
    assert "no-store" in page["Cache-Control"]
    client = ApiClient.objects.get(name="monitoring")
    text = page.content.decode()
    secret = text.split('id="client-secret">')[1].split("<")[0]
    assert client.client_id in text and len(secret) > 30
    # The secret works, and is never shown again.
    listed = admin.get(reverse("admin:api_apiclient_change", args=[client.pk])).content.decode()
    assert secret not in listed and secret not in admin.get(CREATE).content.decode()
    api = admin.get("/api/v1/KeystoreEntries", HTTP_AUTHORIZATION=basic(client.client_id, secret))
    assert api.status_code == 200
    assert client.user.username == f"api:{tenant.slug}:monitoring"

    revoke = reverse("admin:api_apiclient_revoke", args=[client.pk])
    assert "Yes, revoke" in admin.get(revoke).content.decode()
    admin.post(revoke)
    assert ApiClient.objects.get().revoked_at is not None
    again = admin.post(revoke, follow=True)  # a double click
    assert "revoked already" in again.content.decode()
    api = admin.get("/api/v1/KeystoreEntries", HTTP_AUTHORIZATION=basic(client.client_id, secret))
    assert api.status_code == 401


def test_other_roles_are_refused(users, tenant, other_tenant):
    for role in ("ReadOnly", "IntegrationDeveloper"):
        browser = client_for(users[role])
        assert browser.get(CREATE).status_code == 403
        answer = browser.post(CREATE, {"tenant": tenant.pk, "name": "x", "role": "Administrator"})
        assert answer.status_code == 403
        assert browser.get(reverse("admin:api_apiclient_changelist")).status_code == 403
    # An administrator of tenant A cannot make a client of tenant B.
    admin = client_for(users["Administrator"])
    forged = admin.post(CREATE, {"tenant": other_tenant.pk, "name": "x", "role": "Administrator"})
    assert forged.status_code == 403
    assert not ApiClient.objects.exists()


def test_a_bad_name_or_a_taken_one_says_so(users, tenant):
    admin = client_for(users["Administrator"])
    bad = admin.post(CREATE, {"tenant": tenant.pk, "name": "../x", "role": "ReadOnly"})
    assert "The name must be" in bad.content.decode()
    admin.post(CREATE, {"tenant": tenant.pk, "name": "twice", "role": "ReadOnly"})
    taken = admin.post(CREATE, {"tenant": tenant.pk, "name": "twice", "role": "ReadOnly"})
    assert "named &#x27;twice&#x27; already" in taken.content.decode()
    assert ApiClient.objects.count() == 1
