"""API clients and their credentials: created once with a secret stored as a hash, tokens by
client credentials (HTTP Basic, form body or query string, as SAP's token service), bearer or
Basic on every call, revocation ending both at once, tenants kept apart, sessions refused."""

from __future__ import annotations

import base64
import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from oauth2_provider.models import AccessToken, Application

from keystore import services
from keystore.crypto import to_der
from keystore.models import AuditAction, AuditEvent
from keystore_site.api import clients
from keystore_site.api.models import ApiClient
from tests.conftest import client_for
from tests.keystore_site.api.conftest import Caller, basic


def create(tenant, name="script", role="ReadOnly") -> dict:
    out = io.StringIO()
    call_command("create_api_client", name, tenant=tenant.slug, role=role, json=True, stdout=out)
    return json.loads(out.getvalue())


def token(http: Client, how: str, client_id: str, secret: str):
    form = {"grant_type": "client_credentials"}
    if how == "basic":
        return http.post("/oauth/token", form, HTTP_AUTHORIZATION=basic(client_id, secret))
    if how == "body":
        return http.post("/oauth/token", {**form, "client_id": client_id, "client_secret": secret})
    query = f"grant_type=client_credentials&client_id={client_id}&client_secret={secret}"
    return http.post(f"/oauth/token?{query}")


def test_create_prints_the_secret_once_and_stores_a_hash(tenant):
    made = create(tenant, role="Administrator")
    assert set(made) >= {"client_id", "client_secret", "token_url", "api_url"}
    assert made["token_url"].endswith("/oauth/token") and made["api_url"].endswith("/api/v1")
    client = ApiClient.objects.get(client_id=made["client_id"])
    stored = Application.objects.get(client_id=made["client_id"]).client_secret
    assert made["client_secret"] not in stored and stored.startswith("sha256_client_secret$")
    # Its user holds the role, cannot log in to the site and is named in the audit log.
    assert not client.user.is_staff and not client.user.has_usable_password()
    login = Client().post(
        "/admin/login/", {"username": client.user.username, "password": made["client_secret"]}
    )
    assert login.status_code == 200 and "_auth_user_id" not in login.client.session
    event = AuditEvent.objects.get(action=AuditAction.API_CLIENT)
    assert "script created (Administrator)" in event.detail
    listed = io.StringIO()
    call_command("list_api_clients", tenant=tenant.slug, json=True, stdout=listed)
    assert made["client_secret"] not in listed.getvalue()
    assert json.loads(listed.getvalue())[0]["client_id"] == made["client_id"]


def test_a_name_is_taken_once_per_tenant_and_roles_are_checked(tenant, users):
    create(tenant)
    with pytest.raises(CommandError, match="named 'script' already"):
        create(tenant)
    with pytest.raises(CommandError, match="invalid choice"):
        create(tenant, "other", role="Owner")
    with pytest.raises(clients.ApiClientError, match="not allowed"):
        clients.create_api_client(tenant, "by-reader", "ReadOnly", actor=users["ReadOnly"])
    assert ApiClient.objects.count() == 1


@pytest.mark.parametrize("how", ["basic", "body", "query"])
def test_client_credentials_give_a_bearer_token(tenant, pki, how):
    services.import_certificate(tenant, "partner_root", to_der(pki.root))
    made = create(tenant)
    http = Client()
    answer = token(http, how, made["client_id"], made["client_secret"])
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    listed = http.get(
        "/api/v1/KeystoreEntries", HTTP_AUTHORIZATION=f"Bearer {body['access_token']}"
    )
    assert listed.status_code == 200
    assert [row["Alias"] for row in listed.json()["d"]["results"]] == ["partner_root"]


def test_wrong_credentials_get_nothing(tenant):
    made = create(tenant)
    http = Client()
    assert token(http, "basic", made["client_id"], "wrong").status_code == 401
    assert token(http, "body", "unknown-id", made["client_secret"]).status_code == 401
    assert not AccessToken.objects.exists()
    for authorization in (
        basic(made["client_id"], "wrong"),
        "Bearer not-a-token",
        "Basic %%%",
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Bearer " + "x" * 5000,
    ):
        answer = http.get("/api/v1/KeystoreEntries", HTTP_AUTHORIZATION=authorization)
        assert answer.status_code == 401
        assert answer.json()["error"]["code"] == "Unauthorized"


def test_revocation_ends_tokens_and_secret_at_once(tenant):
    made = create(tenant, role="Administrator")
    http = Client()
    bearer = token(http, "basic", made["client_id"], made["client_secret"]).json()["access_token"]
    assert http.get("/api/v1/", HTTP_AUTHORIZATION=f"Bearer {bearer}").status_code == 200
    call_command("revoke_api_client", made["client_id"], stdout=io.StringIO())
    assert http.get("/api/v1/", HTTP_AUTHORIZATION=f"Bearer {bearer}").status_code == 401
    by_secret = basic(made["client_id"], made["client_secret"])
    assert http.get("/api/v1/", HTTP_AUTHORIZATION=by_secret).status_code == 401
    assert token(http, "basic", made["client_id"], made["client_secret"]).status_code == 401
    assert not AccessToken.objects.exists()
    with pytest.raises(CommandError, match="revoked already"):
        call_command("revoke_api_client", made["client_id"], stdout=io.StringIO())
    assert ApiClient.objects.get().revoked_at is not None


def test_tenants_are_kept_apart(tenant, other_tenant, pki, api_caller):
    services.import_certificate(tenant, "a_root", to_der(pki.root))
    services.import_certificate(other_tenant, "b_root", to_der(pki.root))
    caller_b = api_caller("Administrator", of_tenant=other_tenant)
    rows = caller_b.get("/api/v1/KeystoreEntries").json()["d"]["results"]
    assert [row["Alias"] for row in rows] == ["b_root"]
    hex_a = b"a_root".hex().upper()
    assert caller_b.get(f"/api/v1/KeystoreEntries('{hex_a}')").status_code == 404


def test_a_browser_session_is_not_an_api_credential(tenant, users):
    session = client_for(users["Administrator"])
    answer = session.get("/api/v1/KeystoreEntries")
    assert answer.status_code == 401
    # The site root still leads people to the admin.
    assert session.get("/").status_code == 302


def test_csrf_tokens_come_from_the_api_and_the_site_root(tenant, api_caller):
    caller: Caller = api_caller("ReadOnly")
    from_api = caller.get("/api/v1/", **{"X-CSRF-Token": "Fetch"})["X-CSRF-Token"]
    from_root = caller.get("/", **{"X-CSRF-Token": "Fetch"})
    assert from_root.status_code == 200 and from_root["X-CSRF-Token"]
    assert from_api and from_api != "Required"
    # Without credentials the root is the admin's front door, and gives no token.
    anonymous = Client().get("/", headers={"X-CSRF-Token": "Fetch"})
    assert anonymous.status_code == 302 and "X-CSRF-Token" not in anonymous
