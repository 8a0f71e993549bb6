"""Login lockouts (django-axes): per user name and client address, in the database, audited,
with the client address taken from X-Forwarded-For only behind trusted proxies."""

from __future__ import annotations

import pytest
from axes.models import AccessAttempt
from django.core.cache import cache
from django.core.management import call_command
from django.test import Client, RequestFactory

from keystore.models import AuditAction, AuditEvent
from keystore_site.clientaddress import client_address
from tests.conftest import make_user

ATTACKER = "203.0.113.5"
USER_ELSEWHERE = "198.51.100.7"


@pytest.fixture
def behind_one_proxy(settings):
    settings.TRUSTED_PROXY_COUNT = 1
    settings.AXES_FAILURE_LIMIT = 3


def login(client: Client, username: str, password: str, address: str = ""):
    headers = {"HTTP_X_FORWARDED_FOR": address} if address else {}
    return client.post(
        "/admin/login/?next=/admin/",
        {"username": username, "password": password, "next": "/admin/"},
        **headers,
    )


def test_failures_lock_the_user_name_from_that_address_only(db, tenant, behind_one_proxy):
    make_user("victim", tenant=tenant, role="Administrator")
    make_user("colleague", tenant=tenant, role="ReadOnly")
    attacker = Client()
    for _ in range(3):
        response = login(attacker, "victim", "wrong", ATTACKER)
        assert response.status_code in (200, 429)
    # Even the right password is refused from the attacker's address...
    response = login(attacker, "victim", "pw-victim-123!", ATTACKER)
    assert response.status_code == 429
    page = " ".join(response.content.decode().split())
    assert "Too many failed logins for this user name from your address" in page
    assert "Try again in 15 minutes" in page and "Keystore Monitor" in page
    assert "_auth_user_id" not in attacker.session
    # ...but the victim logs in from their own address,
    victim = Client()
    assert login(victim, "victim", "pw-victim-123!", USER_ELSEWHERE).status_code == 302
    # and another user behind the attacker's address (same proxy, same NAT) is not locked.
    assert login(Client(), "colleague", "pw-colleague-123!", ATTACKER).status_code == 302


def test_a_lockout_is_audited_once_as_a_site_event(db, tenant, behind_one_proxy):
    make_user("victim", tenant=tenant, role="Administrator")
    client = Client()
    for _ in range(5):
        login(client, "victim", "wrong", ATTACKER)
    [event] = AuditEvent.objects.filter(action=AuditAction.LOCKOUT)
    assert event.tenant is None and event.actor_label == "victim"
    assert ATTACKER in event.detail and "wrong" not in event.detail


def test_lockouts_live_in_the_database_not_the_cache(db, tenant, behind_one_proxy):
    make_user("victim", tenant=tenant, role="ReadOnly")
    for _ in range(3):
        login(Client(), "victim", "wrong", ATTACKER)
    attempt = AccessAttempt.objects.get(username="victim")
    assert attempt.ip_address == ATTACKER and attempt.failures_since_start == 3
    cache.clear()  # a restart, another worker, or no Redis at all
    assert login(Client(), "victim", "pw-victim-123!", ATTACKER).status_code == 429


def test_a_superuser_unlocks_with_axes_reset_username(db, tenant, behind_one_proxy):
    make_user("victim", tenant=tenant, role="ReadOnly")
    for _ in range(3):
        login(Client(), "victim", "wrong", ATTACKER)
    assert login(Client(), "victim", "pw-victim-123!", ATTACKER).status_code == 429
    call_command("axes_reset_username", "victim")
    assert login(Client(), "victim", "pw-victim-123!", ATTACKER).status_code == 302


def test_a_good_login_resets_the_count(db, tenant, behind_one_proxy):
    make_user("someone", tenant=tenant, role="ReadOnly")
    client = Client()
    login(client, "someone", "wrong", ATTACKER)
    login(client, "someone", "wrong", ATTACKER)
    assert login(client, "someone", "pw-someone-123!", ATTACKER).status_code == 302
    client.logout()
    login(client, "someone", "wrong", ATTACKER)
    login(client, "someone", "wrong", ATTACKER)
    assert login(client, "someone", "pw-someone-123!", ATTACKER).status_code == 302


def test_without_trusted_proxies_the_header_is_ignored(db, tenant, settings):
    # Nobody can spread their failures over made-up addresses: they all count against the
    # address the connection came from.
    settings.TRUSTED_PROXY_COUNT = 0
    settings.AXES_FAILURE_LIMIT = 3
    make_user("victim", tenant=tenant, role="ReadOnly")
    for number in range(3):
        login(Client(), "victim", "wrong", f"192.0.2.{number + 1}")
    response = login(Client(), "victim", "pw-victim-123!", "192.0.2.99")
    assert response.status_code == 429


@pytest.mark.parametrize(
    ("trusted", "header", "expected"),
    [
        (0, "203.0.113.5", "127.0.0.1"),
        (1, "203.0.113.5", "203.0.113.5"),
        (1, "6.6.6.6, 203.0.113.5", "203.0.113.5"),  # the client wrote the left part
        (2, "6.6.6.6, 203.0.113.5, 10.0.0.2", "203.0.113.5"),
        (2, "203.0.113.5", "127.0.0.1"),  # fewer hops than trusted proxies: not believed
        (1, "not-an-address", "127.0.0.1"),
        (1, "2001:db8::1", "2001:db8::1"),
        (1, "", "127.0.0.1"),
    ],
)
def test_client_address_trusts_only_the_configured_proxies(settings, trusted, header, expected):
    settings.TRUSTED_PROXY_COUNT = trusted
    request = RequestFactory().get("/", HTTP_X_FORWARDED_FOR=header, REMOTE_ADDR="127.0.0.1")
    assert client_address(request) == expected


def test_a_request_without_an_address_has_none(settings):
    # force_login and commands send no REMOTE_ADDR; PostgreSQL's inet column refuses text.
    request = RequestFactory().get("/")
    del request.META["REMOTE_ADDR"]
    assert client_address(request) is None
