"""Redis (the cache) unreachable: logins, pages and the connectivity form keep working, and the
outage shows in the log and on /metrics. Found under load: every login POST was a 500 while the
old throttle read the cache first."""

from __future__ import annotations

import logging
import socket

import pytest
from django.core.cache import cache
from django.test import Client, override_settings

from tests.conftest import make_user


@pytest.fixture
def redis_down():
    """The cache is Redis on a port nothing listens on (restored before the suite's cache
    fixture clears the cache again)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    caches = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{port}/0",
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
    with override_settings(CACHES=caches):
        with pytest.raises(Exception, match="(?i)connect"):
            cache.get("probe")
        yield port


def test_logins_and_pages_work_without_the_cache(db, tenant, sap_entry, redis_down):
    make_user("someone", tenant=tenant, role="Administrator")
    client = Client()
    assert client.get("/admin/login/").status_code == 200
    response = client.post(
        "/admin/login/?next=/admin/",
        {"username": "someone", "password": "pw-someone-123!", "next": "/admin/"},
    )
    assert response.status_code == 302
    for path in (
        "/admin/",
        "/admin/keystore/keystoreentry/",
        f"/admin/keystore/keystoreentry/{sap_entry.pk}/change/",
        "/admin/renewals/pendingsapkey/",
        "/admin/connectivity/connectivitytestrun/run/",
        "/admin/keystore/auditevent/",
    ):
        assert client.get(path).status_code == 200, path


def test_failed_logins_are_still_counted_without_the_cache(db, tenant, redis_down, settings):
    settings.AXES_FAILURE_LIMIT = 2
    make_user("victim", tenant=tenant, role="ReadOnly")
    client = Client()
    for _ in range(2):
        client.post("/admin/login/", {"username": "victim", "password": "wrong"})
    response = client.post("/admin/login/", {"username": "victim", "password": "pw-victim-123!"})
    assert response.status_code == 429


def test_the_outage_shows_on_metrics_and_in_the_log(db, admin_user, redis_down, caplog):
    client = Client()
    client.force_login(admin_user)
    with caplog.at_level(logging.WARNING, logger="keystore_site.metrics"):
        body = client.get("/metrics").content.decode()
    assert "keystore_cache_up 0" in body
    assert any("cache does not answer" in record.getMessage() for record in caplog.records)


def test_metrics_say_the_cache_is_up_when_it_is(db, admin_user):
    client = Client()
    client.force_login(admin_user)
    assert "keystore_cache_up 1" in client.get("/metrics").content.decode()
