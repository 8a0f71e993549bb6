"""The access matrix of the whole site, generated from the URL configuration: every URL pattern
(the admin's own and every custom one) x anonymous and the five roles x GET and POST.

Nobody has to remember to add a new page here: the routes are found by walking the resolver.
Django's own admin URLs are judged by their kind (changelist, add, change, history, delete) and
the permission their ModelAdmin declares; every custom URL must have a line in CUSTOM_URLS
saying which permission it needs, and a URL without one fails `test_every_custom_url_is_known`.

The rules:
* anonymous users are sent to the login page, for GET and POST alike;
* a role without the permission gets 403 when it sees the object's tenant, and 404 when it does
  not (like a missing object, so sequential ids reveal nothing); never a page with tenant data
  and never a 500; a role with it gets the page;
* no GET changes anything (changing views show a confirmation page); views that only show
  refuse POST with 405, POST-only views refuse GET with 405;
* a POST without a CSRF token gets 403, for every URL that accepts POST, and changes nothing;
* the Cloud Integration API (/api/v1, /oauth/token) takes no session: every role and anonymous
  users get 401 there (405 for a method a URL does not offer); API clients per role are the
  matrix of tests/keystore_site/api.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.contrib import admin
from django.contrib.contenttypes.models import ContentType
from django.test import Client
from django.urls import reverse

from keystore import permissions
from keystore.adminmixins import TenantScopedAdmin
from keystore.models import KeystoreEntry, Tenant
from keystore_site.api.models import ApiClient
from renewals.channels.models import Channel
from renewals.connectivity.models import ConnectivityTestRun
from renewals.plans.models import BackendContact, PlanBackend, RenewalPlan, TenantPlanSettings
from renewals.whereused.models import IntegrationFlow
from tests.conftest import client_for
from tests.hardening.conftest import SAP_ALIAS, Route, leaked, renewal_state, site_routes

READ, DEPLOY = permissions.READ, permissions.DEPLOY
READ_SECURITY, READ_CREDENTIALS = permissions.READ_SECURITY, permissions.READ_CREDENTIALS
ALL = frozenset(permissions.ALL_PERMISSIONS)
ROLES = ("none", "ReadOnly", "IntegrationDeveloper", "Administrator", "other_admin")
# What each role holds on tenant A, and anywhere (other_admin administers tenant B).
ON_TENANT_A = {
    "none": frozenset(),
    "ReadOnly": frozenset({READ}),
    "IntegrationDeveloper": frozenset({READ, READ_CREDENTIALS}),
    "Administrator": ALL,
    "other_admin": frozenset(),
}
ANYWHERE = {**ON_TENANT_A, "other_admin": ALL}


@dataclass(frozen=True)
class Needs:
    """What a custom URL needs: permissions on the tenant of its object (`where="tenant"`) or in
    some tenant (`where="anywhere"`, pages that start something: uploads, the test form)."""

    perms: tuple[str, ...]
    where: str = "tenant"
    ok: int = 200  # the answer to a GET by a role that may
    changes: bool = False  # its POST changes data
    post_only: bool = False


CUSTOM_URLS: dict[str, Needs] = {
    "admin:keystore_keystoreentry_download": Needs((READ,)),
    "admin:keystore_keystoreentry_add_certificate": Needs((DEPLOY,), "anywhere", changes=True),
    "admin:keystore_keystoreentry_add_key_pair": Needs((DEPLOY,), "anywhere", changes=True),
    "admin:keystore_keystoreentry_add_keystore": Needs((DEPLOY,), "anywhere", changes=True),
    "admin:keystore_keystoreentry_import_summary": Needs((DEPLOY,), "anywhere", ok=302),
    "admin:keystore_keystoreentry_rename": Needs((DEPLOY,), changes=True),
    "admin:keystore_keystoreentry_delete_entry": Needs((DEPLOY,), changes=True),
    "admin:keystore_keystoreentry_export": Needs((READ_SECURITY,), changes=True),
    "admin:keystore_keystoreentry_create_key_pair": Needs((DEPLOY,), "anywhere", changes=True),
    "admin:keystore_keystoreentry_signing_request": Needs((DEPLOY,)),
    "admin:keystore_keystoreentry_signing_response": Needs((DEPLOY,), changes=True),
    "admin:keystore_keystoreentry_backup": Needs((READ_SECURITY,), "anywhere", changes=True),
    "admin:keystore_keystoreentry_public_content": Needs((READ,)),
    "admin:renewals_pendingsapkey_activate": Needs((DEPLOY,), changes=True),
    "admin:renewals_pendingsapkey_download": Needs((READ,)),
    "admin:renewals_sapkeybackup_revert": Needs((DEPLOY,), changes=True),
    "admin:renewals_sapkeybackup_download": Needs((READ,)),
    "admin:whereused_integrationflow_import": Needs((DEPLOY,), "anywhere", changes=True),
    "admin:whereused_integrationflow_where_used": Needs((READ,)),
    "admin:whereused_integrationflow_renewal_pack": Needs((READ,)),
    "admin:connectivity_connectivitytestrun_run": Needs(
        (READ_CREDENTIALS,), "anywhere", changes=True
    ),
    "admin:connectivity_connectivitytestrun_result": Needs((READ_CREDENTIALS,)),
    "admin:connectivity_connectivitytestrun_server_cert": Needs((READ_CREDENTIALS,)),
    "admin:connectivity_connectivitytestrun_add_root": Needs(
        (READ_CREDENTIALS, DEPLOY), changes=True, post_only=True
    ),
    "admin:plans_renewalplan_for_alias": Needs((READ,), ok=302),
    "admin:plans_renewalplan_rebuild": Needs((DEPLOY,), changes=True, post_only=True),
    "admin:plans_renewalplan_backend": Needs((DEPLOY,), changes=True, post_only=True),
    "admin:plans_renewalplan_contact": Needs((DEPLOY,), changes=True, post_only=True),
    "admin:plans_renewalplan_inform": Needs((DEPLOY,), changes=True, post_only=True),
    "admin:plans_renewalplan_probe": Needs((READ_CREDENTIALS,), changes=True, post_only=True),
    "admin:keystore_keystoreentry_server_backup": Needs((DEPLOY,), changes=True, post_only=True),
    "admin:keystore_keystoreentry_server_restore": Needs((DEPLOY,), changes=True, ok=302),
    "admin:plans_renewalplan_window": Needs((DEPLOY,), changes=True, post_only=True),
    "admin:plans_renewalplan_gate": Needs((DEPLOY,), changes=True, post_only=True),
    "admin:plans_renewalplan_evidence": Needs((READ,)),
    "admin:plans_renewalplan_evidence_json": Needs((READ,)),
    "admin:api_apiclient_create": Needs((DEPLOY,), "anywhere", changes=True),
    "admin:api_apiclient_revoke": Needs((DEPLOY,), changes=True),
    "admin:channels_channel_create": Needs((DEPLOY,), "anywhere", changes=True),
    "admin:channels_channel_edit": Needs((DEPLOY,), changes=True),
    "admin:channels_channel_test": Needs((DEPLOY,), changes=True, post_only=True),
    "admin:channels_channel_remove": Needs((DEPLOY,), changes=True),
}

MODEL_VIEWS = ("changelist", "add", "change", "history", "delete")
# The admin site's own pages (staff only, no tenant data): the answer to a logged-in GET.
SITE_VIEWS = {
    "admin:index": {200},
    "admin:login": {200, 302},  # a logged-in user is sent on
    "admin:logout": {405},  # POST only since Django 5
    "admin:password_change": {200},
    "admin:password_change_done": {200},
    "admin:autocomplete": {403},  # without a model and field it refuses
    "admin:jsi18n": {200},
    "admin:app_list": {200, 404},  # 404 when the user sees no model of the app
    "admin:view_on_site": {404},  # no model here has a public URL
    "dashboard": {200},  # the admin index with the dashboard: each role sees its tenants
    "metrics": {200},  # Prometheus: a staff session sees the tenants it may read
}
# Pages that do not send anonymous users to the login page.
ANONYMOUS = {
    "admin:login": {200},
    "admin:logout": {302},  # Django sends it to the index (and the index to the login)
    "metrics": {401},  # a scraper without token or session
}
# The backend administrators' pages (renewal plans) take no login: a signed link is the only
# key. The matrix's token is none, so everyone, anonymous users too, gets the refusal page.
PUBLIC_URLS = {
    "plans_backend_page": {403},
    "plans_backend_pack": {403},
    "plans_backend_confirm": {405},  # POST only
}
PUBLIC_POSTS = {"plans_backend_confirm": {403}}


def kind_of(route: Route) -> str:
    """ "site", "custom", one of MODEL_VIEWS, "redirect" (admin's <id>/ -> <id>/change/),
    "other" (the site root), "api" or "unknown"."""
    if route.name == "site_root":
        return "other"
    if route.name and (route.name.startswith("api_") or route.name == "oauth_token"):
        return "api"
    if route.name in SITE_VIEWS:
        return "site"
    if route.name in PUBLIC_URLS:
        return "public"
    if route.name in CUSTOM_URLS:
        return "custom"
    if route.model and route.name:
        suffix = route.name.rsplit("_", 1)[-1]
        if suffix in MODEL_VIEWS:
            return suffix
    if route.model and route.name is None:
        return "redirect"
    if route.name is None:
        return "other"
    return "unknown"  # a custom URL without a line in CUSTOM_URLS


def url_of(route: Route, world) -> str | None:
    """A concrete URL for the route, its parameters filled with rows of tenant A."""
    if route.name is None:
        if route.model is None:
            return route.pattern if "<" not in route.pattern and "(" not in route.pattern else None
        obj = world.object_for(route.model)
        return reverse(f"admin:{route.model.replace('.', '_')}_change", args=[pk_of(obj)])[
            : -len("change/")
        ]
    values = {}
    for argument in route.arguments:
        if argument in ("pk", "object_id", "id"):
            values[argument] = pk_of(world.object_for(route.model)) if route.model else 1
        elif argument == "kind":
            values[argument] = "cer"
        elif argument == "index":
            values[argument] = 0
        elif argument == "tenant_id":
            values[argument] = world.tenant.pk
        elif argument == "alias":
            values[argument] = SAP_ALIAS
        elif argument == "app_label":
            values[argument] = "keystore"
        elif argument == "content_type_id":
            values[argument] = ContentType.objects.get_for_model(KeystoreEntry).pk
        else:
            values[argument] = "1"  # unknown: a 404 is acceptable, a 500 is not
    return reverse(route.name, kwargs=values)


def pk_of(obj) -> int:
    return getattr(obj, "pk", obj) if obj is not None else 999_999


def may(role: str, needs: Needs) -> bool:
    held = ON_TENANT_A[role] if needs.where == "tenant" else ANYWHERE[role]
    return set(needs.perms) <= held


def refused(role: str, where: str = "tenant") -> set[int]:
    """The refusal a role gets: 404 for an object of a tenant it does not see at all. A user
    with no permission in any tenant may get 403 first, whatever the id, which reveals nothing."""
    if where == "tenant" and READ not in ON_TENANT_A[role]:
        return {404} if ANYWHERE[role] else {403, 404}
    return {403}


def expected_get(route: Route, role: str) -> set[int]:
    """The acceptable answers to a logged-in GET."""
    kind = kind_of(route)
    if kind == "api":
        return api_answer(route, "GET")
    if kind == "site":
        return SITE_VIEWS[route.name]
    if kind == "public":
        return PUBLIC_URLS[route.name]
    if kind == "custom":
        needs = CUSTOM_URLS[route.name]
        if needs.post_only:
            return {405}
        return {needs.ok} if may(role, needs) else refused(role, needs.where)
    if kind == "redirect":
        return {302}  # to the change page, which checks
    if kind == "other":
        return {302}  # the site root sends everyone to the admin index
    model_admin = next(
        ma for model, ma in admin.site._registry.items() if model._meta.label_lower == route.model
    )
    if kind in ("add", "delete"):
        return {403}  # nobody adds or deletes through the admin's own forms
    if isinstance(model_admin, TenantScopedAdmin) or route.model == "keystore.tenant":
        perm = getattr(model_admin, "view_permission", READ)
        if kind == "changelist":
            return {200} if perm in ANYWHERE[role] else {403}
        if route.name == "admin:connectivity_connectivitytestrun_history":
            return {404}  # records have no change history
        allowed = perm in ON_TENANT_A[role]
        if route.name == "admin:connectivity_connectivitytestrun_change":
            return {302} if allowed else refused(role)  # a record's page is its result page
        return {200} if allowed else refused(role)
    # Users, groups, the task queue and scan runs: superusers only. A missing row may answer
    # with a redirect to the index (Django's history view checks existence first).
    return {403, 302} if kind == "history" else {403}


def api_answer(route: Route, method: str) -> set[int]:
    """A session (or nothing) at the API: 401, or 405 where the URL does not take the method
    (the token endpoint takes POST only; views that only show refuse POST first)."""
    if route.name == "oauth_token":
        return {405} if method == "GET" else {400, 401}
    return {401, 405}


SITE_POSTS = ("admin:login", "admin:logout", "admin:password_change")


def accepts_post(route: Route) -> bool:
    kind = kind_of(route)
    if route.name in SITE_POSTS:
        return True
    if kind == "public":
        return route.name in PUBLIC_POSTS
    if kind == "custom":
        needs = CUSTOM_URLS[route.name]
        return needs.changes or needs.post_only
    return kind in ("add", "change", "delete", "changelist")


def world_state(world) -> tuple:
    """Everything a POST could change."""
    return (
        renewal_state(),
        sorted(IntegrationFlow.objects.values_list("pk", "bundle_id", "restart_required")),
        ConnectivityTestRun.objects.count(),
        sorted(Tenant.objects.values_list("pk", "slug", "name")),
        sorted(ApiClient.objects.values_list("pk", "name", "revoked_at")),
        sorted(PlanBackend.objects.values_list("pk", "status", "link_nonce", "confirmed_at")),
        sorted(BackendContact.objects.values_list("pk", "name", "email")),
        sorted(
            (pk, name, events, bytes(sealed or b""), removed)
            for pk, name, events, sealed, removed in Channel.objects.values_list(
                "pk", "name", "events", "sealed_url", "removed_at"
            )
        ),
        sorted(
            RenewalPlan.objects.values_list(
                "pk",
                "planned_activation",
                "override_reason",
                "approval_requested_at",
                "approved_at",
            )
        ),
        sorted(TenantPlanSettings.objects.values_list("pk", "gate", "four_eyes")),
        sorted(
            type(world.superuser).objects.values_list("pk", "username", "password", "is_superuser")
        ),
    )


def body_of(response) -> bytes:
    return b"".join(response) if response.streaming else response.content


# A channel's URL holds its token: no page may show it (tests/renewals/channels has the rest).
CHANNEL_SECRET = "matrix-channel-token-5d1f"


@pytest.fixture
def channel_world(admin_world):
    """The world with a channel of tenant A. Its URL points at the discard port of 127.0.0.1,
    allowed only while it is saved: no request of the matrix ever delivers to it."""
    from django.test import override_settings

    from renewals.channels.services import add_channel

    with override_settings(CONNECTIVITY_ALLOWED_NETWORKS=["127.0.0.1/32"]):
        channel = add_channel(
            admin_world.tenant, "matrix-hook", f"json://127.0.0.1:9/{CHANNEL_SECRET}", "all"
        )
    admin_world.objects["channels.channel"] = channel
    return admin_world


@pytest.fixture
def routes(channel_world):
    admin_world = channel_world
    found = [(route, url_of(route, admin_world)) for route in site_routes()]
    return [(route, url) for route, url in found if url is not None]


@pytest.fixture
def clients(admin_world):
    made = {role: client_for(user) for role, user in admin_world.users.items()}
    made["anonymous"] = Client()
    return made


# -- the tests ----------------------------------------------------------------------------------


def test_every_custom_url_is_known(routes):
    """A new custom URL must say here which permission it needs."""
    unknown = [(route.name, route.pattern) for route, _url in routes if kind_of(route) == "unknown"]
    assert unknown == [], "add these URLs to CUSTOM_URLS with the permission they need"
    gone = set(CUSTOM_URLS) - {route.name for route, _url in routes}
    assert gone == set(), "CUSTOM_URLS names URLs that no longer exist"


def test_get_matrix(admin_world, routes, clients, figures):
    """Every URL for every role and anonymous; every page a role gets is also scanned for the
    private keys in the database (the superuser's pages: the next test)."""
    before = world_state(admin_world)
    wrong = []
    requests = scanned = 0
    for route, url in routes:
        if kind_of(route) == "unknown":
            continue  # test_every_custom_url_is_known names it
        for role in ROLES:
            response = clients[role].get(url)
            requests += 1
            expected = expected_get(route, role)
            if response.status_code not in expected:
                wrong.append((url, role, response.status_code, sorted(expected)))
            if response.status_code == 200:
                body = body_of(response)
                assert leaked(body, admin_world.keys) == [], (url, role)
                assert CHANNEL_SECRET.encode() not in body, (url, role)
                scanned += 1
                if role in ("none", "other_admin"):
                    # Nothing of tenant A reaches a role without rights there.
                    assert b"tenant-a" not in body, (url, role)
        if kind_of(route) == "other":
            continue
        response = clients["anonymous"].get(url)
        requests += 1
        if kind_of(route) == "api":
            if response.status_code not in api_answer(route, "GET"):
                wrong.append((url, "anonymous", response.status_code, api_answer(route, "GET")))
        elif kind_of(route) == "public":
            if response.status_code not in PUBLIC_URLS[route.name]:
                wrong.append((url, "anonymous", response.status_code, PUBLIC_URLS[route.name]))
        elif route.name in ANONYMOUS:
            if response.status_code not in ANONYMOUS[route.name]:
                wrong.append((url, "anonymous", response.status_code, ANONYMOUS[route.name]))
        elif response.status_code != 302 or "/admin/login/" not in response["Location"]:
            wrong.append((url, "anonymous", response.status_code, [302]))
    assert wrong == [], "\n".join(map(str, wrong))
    assert world_state(admin_world) == before, "a GET changed something"
    assert scanned > 100
    figures["access matrix: GET requests"] += requests
    figures["access matrix: URL patterns"] += len(routes)
    figures["pages scanned for private keys"] += scanned


def test_post_matrix(admin_world, routes, clients, figures):
    """Roles without the permission (and anonymous users) POST to every URL that accepts POST:
    refused, nothing changed. Views that only show refuse POST for everyone."""
    before = world_state(admin_world)
    wrong = []
    requests = 0
    for route, url in routes:
        kind = kind_of(route)
        if kind in ("site", "other", "redirect", "unknown"):
            continue
        for role in (*ROLES, "anonymous"):
            if kind == "api":
                expected = api_answer(route, "POST")
            elif kind == "public":
                expected = PUBLIC_POSTS.get(route.name, {405})
            elif role == "anonymous":
                expected = {302}
            elif kind == "history":
                expected = expected_get(route, role)  # Django's read-only page, any method
            elif not accepts_post(route):
                expected = {405}
            elif kind == "custom":
                needs = CUSTOM_URLS[route.name]
                if may(role, needs):
                    continue  # allowed POSTs are tested with their views
                expected = refused(role, needs.where)
                if route.name == "admin:keystore_keystoreentry_delete_entry" and 404 in expected:
                    # "deleted already", exactly as for a missing entry
                    expected = (expected - {404}) | {302}
            elif kind == "changelist":
                if 200 in expected_get(route, role):
                    continue  # an action POST by a reader: the action tests cover it
                expected = {403}
            elif route.name == "admin:connectivity_connectivitytestrun_change" and 302 in (
                expected_get(route, role)
            ):
                expected = {302}  # a record's page is its result page, whatever the method
            elif kind == "change" and not {200, 302} & expected_get(route, role):
                expected = expected_get(route, role)  # refused as the GET is
            else:
                expected = {403}
            response = clients[role].post(url, {"post": "yes", "alias": "forged", "tenant": "1"})
            requests += 1
            if response.status_code not in expected:
                wrong.append((url, role, response.status_code, sorted(expected)))
    assert wrong == [], "\n".join(map(str, wrong))
    assert world_state(admin_world) == before, "a refused POST changed something"
    figures["access matrix: refused POST requests"] += requests


def test_no_post_without_a_csrf_token(admin_world, routes, figures):
    """Administrator and superuser, with CSRF checks on: every POST without the token is refused
    before the view runs."""
    before = world_state(admin_world)
    posted = 0
    for user in (admin_world.users["Administrator"], admin_world.superuser):
        client = Client(enforce_csrf_checks=True)
        client.force_login(user)
        for route, url in routes:
            if not accepts_post(route):
                continue
            response = client.post(url, {"post": "yes", "password": "x", "tenant": "1"})
            assert response.status_code == 403, (url, user.username, response.status_code)
            assert b"CSRF" in response.content, url
            posted += 1
    assert world_state(admin_world) == before
    figures["access matrix: POST requests without CSRF token"] += posted


def test_no_private_key_in_any_page_of_a_superuser(admin_world, routes, figures):
    """A superuser opens every page there is; none shows a private key (PEM headers, the
    private value raw, hex or Base64, PKCS#8 or traditional DER lines)."""
    client = client_for(admin_world.superuser)
    scanned = 0
    for _route, url in routes:
        response = client.get(url)
        assert response.status_code != 500, url
        if response.status_code == 200:
            assert leaked(body_of(response), admin_world.keys) == [], url
            assert CHANNEL_SECRET.encode() not in body_of(response), url
            scanned += 1
    assert scanned > 50
    figures["pages scanned for private keys"] += scanned


def test_the_key_scan_would_find_a_key_in_a_page(admin_world):
    from cryptography.hazmat.primitives import serialization

    key = admin_world.keys[1]
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    page = b"<html><pre>" + pem + b"</pre></html>"
    assert leaked(page, admin_world.keys)
    traditional = (
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        .replace(b"-----BEGIN RSA PRIVATE KEY-----", b"")
        .replace(b"-----END RSA PRIVATE KEY-----", b"")
    )
    assert leaked(traditional, admin_world.keys)
