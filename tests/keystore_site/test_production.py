"""Production readiness: deploy checks, proxy TLS, start-up refusals, static files under
gunicorn, sessions and headers. Login lockouts are in test_lockouts.py."""

import base64
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def production_env() -> dict:
    # Not the test run's own switches (pytest's, and the browser tests' async permission).
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PYTEST") and k != "DJANGO_ALLOW_ASYNC_UNSAFE"
    }
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


def test_static_files_are_served_by_the_site(client, db, settings):
    settings.DEBUG = False
    response = client.get("/static/admin/css/base.css")
    assert response.status_code == 200
    assert b"".join(response.streaming_content if response.streaming else [response.content])


# -- start-up refusals -------------------------------------------------------------------------


def _manage(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("KEYSTORE_KEK", "not-a-key", "KEYSTORE_KEK"),
        ("KEYSTORE_KEK", base64.urlsafe_b64encode(os.urandom(16)).decode(), "32 bytes"),
        ("KEYSTORE_KEK", "%%%%", "URL-safe base64"),
        ("DJANGO_DEBUG", "", "DJANGO_DEBUG"),
        ("DJANGO_DEBUG", "maybe", "DJANGO_DEBUG"),
        ("DJANGO_TRUSTED_PROXY_COUNT", "two", "DJANGO_TRUSTED_PROXY_COUNT"),
        ("DJANGO_SESSION_HOURS", "0", "DJANGO_SESSION_HOURS"),
        ("CONNECTIVITY_ALLOWED_NETWORKS", "10.0.0.0/33", "CONNECTIVITY_ALLOWED_NETWORKS"),
    ],
)
def test_a_wrong_setting_refuses_to_start_with_one_line(variable, value, named):
    env = production_env()
    env[variable] = value
    result = _manage(env, "check", "--deploy")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Keystore Monitor will not start:") and named in lines[0]
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_an_unknown_debug_value_never_turns_debug_on():
    # A typo must not bring up the development secret and KEK: it stops instead.
    env = {k: v for k, v in production_env().items() if k not in ("DJANGO_SECRET_KEY",)}
    env.pop("KEYSTORE_KEK")
    env["DJANGO_DEBUG"] = "Fasle"
    result = _manage(env, "check")
    assert result.returncode == 1 and "DJANGO_DEBUG" in result.stderr


# -- gunicorn with production settings ---------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _gunicorn(env: dict, port: int) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            "python:keystore_site.gunicorn",
            "keystore_site.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _fetch(port: int, path: str) -> tuple[int, bytes, dict]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        headers={"Host": "keystore.example.com", "X-Forwarded-Proto": "https"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310  127.0.0.1
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read(), dict(error.headers)


def _wait_until_serving(server: subprocess.Popen, port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert server.poll() is None, server.communicate()[1]
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("gunicorn did not start")


@pytest.mark.parametrize("collectstatic", [False, True], ids=["without", "with"])
def test_gunicorn_serves_login_page_and_stylesheet_in_production(tmp_path, collectstatic):
    env = production_env()
    env.pop("REDIS_URL")
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        DJANGO_STATIC_ROOT=str(tmp_path / "static"),
    )
    assert _manage(env, "migrate", "-v0").returncode == 0
    if collectstatic:
        result = _manage(env, "collectstatic", "--noinput", "-v0")
        assert result.returncode == 0, result.stderr
        assert (tmp_path / "static" / "staticfiles.json").exists()
    port = _free_port()
    server = _gunicorn(env, port)
    try:
        _wait_until_serving(server, port)
        status, body, headers = _fetch(port, "/admin/login/")
        assert status == 200, body[:500]
        assert b'id="id_username"' in body
        assert "default-src 'self'" in headers["Content-Security-Policy"]
        stylesheets = re.findall(rb'href="(/static/admin/css/base[^"]*\.css)"', body)
        assert len(stylesheets) == 1
        if collectstatic:
            # Hashed (cache-busting) names from the manifest.
            assert re.fullmatch(rb"/static/admin/css/base\.[0-9a-f]{12}\.css", stylesheets[0])
        else:
            assert stylesheets[0] == b"/static/admin/css/base.css"
        status, css, headers = _fetch(port, stylesheets[0].decode())
        assert status == 200 and headers["Content-Type"].startswith("text/css")
        assert b"--body-fg" in css
        status, css, _ = _fetch(port, "/static/keystore/monitor.css")
        assert status == 200 and b".new-sap-keys-banner" in css
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=30)
    if not collectstatic:
        assert stderr.count("Run manage.py collectstatic") == 1
    assert "Traceback" not in stderr


def test_gunicorn_refuses_to_start_with_one_line_on_a_bad_kek(tmp_path):
    env = production_env()
    env["KEYSTORE_KEK"] = base64.urlsafe_b64encode(b"short").decode()
    server = _gunicorn(env, _free_port())
    _, stderr = server.communicate(timeout=60)
    assert server.returncode != 0
    ours = [line for line in stderr.splitlines() if "Keystore Monitor" in line]
    assert ours == [
        "Keystore Monitor will not start: Each KEYSTORE_KEK key must be 32 bytes (URL-safe base64)."
    ]
    assert "Traceback" not in stderr and "Booting worker" not in stderr


# -- sessions, redirects and headers ----------------------------------------------------------


def test_sessions_end_with_the_browser_and_after_eight_hours(client, db, tenant):
    from django.conf import settings as django_settings

    from tests.conftest import make_user

    assert django_settings.SESSION_COOKIE_AGE == 8 * 3600
    make_user("someone", tenant=tenant, role="ReadOnly")
    response = client.post(
        "/admin/login/?next=/admin/",
        {"username": "someone", "password": "pw-someone-123!", "next": "/admin/"},
    )
    assert response.status_code == 302
    cookie = response.cookies["sessionid"]
    assert cookie["max-age"] == "" and cookie["expires"] == ""  # a browser-session cookie
    assert client.session.get_expiry_age() == 8 * 3600


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/admin/", ""])
def test_a_refused_next_lands_on_the_dashboard(client, db, tenant, target):
    from tests.conftest import make_user

    make_user("someone", tenant=tenant, role="ReadOnly")
    response = client.post(
        "/admin/login/", {"username": "someone", "password": "pw-someone-123!", "next": target}
    )
    assert response.status_code == 302
    assert response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200


def test_every_page_carries_the_content_security_policy(client, db, admin_user):
    client.force_login(admin_user)
    response = client.get("/admin/")
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "style-src 'self'" in policy
    assert "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy
    # No inline style or script on the dashboard: the policy would block them.
    assert b"<style" not in response.content and b"style=" not in response.content
