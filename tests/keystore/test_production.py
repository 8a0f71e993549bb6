"""Production readiness: deploy checks, proxy TLS, static files and login throttling."""

import base64
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.cache import cache
from django.urls import reverse

from tests.conftest import make_user

ROOT = Path(__file__).resolve().parents[2]


def production_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(60),
        DJANGO_ALLOWED_HOSTS="keystore.example.com",
        KEYSTORE_KEK=base64.urlsafe_b64encode(os.urandom(32)).decode(),
        REDIS_URL="redis://127.0.0.1:6379/15",
        EMAIL_HOST="smtp.example.com",
        DJANGO_SETTINGS_MODULE="keystore_site.settings",
    )
    return env


def test_check_deploy_passes_with_production_environment():
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=production_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_settings_trust_the_proxy_and_use_redis():
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.SECURE_PROXY_SSL_HEADER, s.SESSION_COOKIE_SECURE, s.Q_CLUSTER.get('redis'), "
        "s.CACHES['default']['BACKEND'], s.EMAIL_BACKEND, s.DEBUG)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=production_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "('HTTP_X_FORWARDED_PROTO', 'https') True redis://127.0.0.1:6379/15" in out
    assert "RedisCache" in out and "smtp.EmailBackend" in out and out.strip().endswith("False")


@pytest.fixture
def clean_cache():
    cache.clear()
    yield
    cache.clear()


def _login(client, username, password):
    return client.post(
        reverse("admin:login"), {"username": username, "password": password, "next": "/admin/"}
    )


def test_failed_logins_are_throttled_even_for_the_right_password(
    db, client, clean_cache, settings, tenant
):
    settings.KEYSTORE_LOGIN_FAILURE_LIMIT = 3
    make_user("victim", tenant=tenant, role="ReadOnly")
    for _ in range(3):
        response = _login(client, "victim", "wrong")
        assert response.status_code == 200
        assert "correct username and password" in response.content.decode()
    response = _login(client, "victim", "pw-victim-123!")
    assert response.status_code == 200
    assert "Too many failed logins" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_a_good_login_resets_the_count(db, client, clean_cache, settings, tenant):
    settings.KEYSTORE_LOGIN_FAILURE_LIMIT = 3
    make_user("someone", tenant=tenant, role="ReadOnly")
    _login(client, "someone", "wrong")
    _login(client, "someone", "wrong")
    response = _login(client, "someone", "pw-someone-123!")
    assert response.status_code == 302
    client.logout()
    _login(client, "someone", "wrong")
    _login(client, "someone", "wrong")
    assert _login(client, "someone", "pw-someone-123!").status_code == 302


def test_static_files_are_served_by_the_site(client, db, settings):
    settings.DEBUG = False
    response = client.get("/static/admin/css/base.css")
    assert response.status_code == 200
    assert b"".join(response.streaming_content if response.streaming else [response.content])
