"""The real scheduler path: a `manage.py qcluster` process takes the automatic-activation task
from the broker (the ORM broker by default, Redis when REDIS_URL is set) and activates the demo's
due SAP key through the same function as the admin.

Everything runs in child processes against a throwaway SQLite file, as a deployment would.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ALIAS = "sap_cloudintegrationcertificate"


def _redis_available() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


def _manage(env: dict, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def _history_rows(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as connection:
        return connection.execute(
            "SELECT b.alias, b.activated_by_label FROM renewals_sapkeybackup b "
            "JOIN keystore_tenant t ON t.id = b.tenant_id WHERE t.slug = 'demo'"
        ).fetchall()


def _sap_key_expiry(db: Path) -> datetime:
    with sqlite3.connect(db) as connection:
        (value,) = connection.execute(
            "SELECT e.valid_until FROM keystore_keystoreentry e "
            "JOIN keystore_tenant t ON t.id = e.tenant_id WHERE t.slug = 'demo' AND e.alias = ?",
            (ALIAS,),
        ).fetchone()
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


def _env(db: Path) -> dict:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "REDIS_URL", "TEST_DATABASE_NAME"}
    }
    env.update(DATABASE_URL=f"sqlite:///{db}", DJANGO_SETTINGS_MODULE="keystore_site.settings")
    return env


@pytest.fixture(scope="module")
def seeded_site(tmp_path_factory) -> Path:
    """A migrated and seeded site database, made once and copied for each broker."""
    db = tmp_path_factory.mktemp("site") / "seeded.sqlite3"
    env = _env(db)
    _manage(env, "migrate", "-v0")
    _manage(env, "seed_demo")
    return db


@pytest.mark.parametrize("broker", ["orm", "redis"])
def test_qcluster_runs_the_scan_and_activates_the_due_key(broker, seeded_site, tmp_path):
    if broker == "redis" and not _redis_available():
        pytest.skip("Redis is not running on 127.0.0.1:6379")
    db = tmp_path / "site.sqlite3"
    shutil.copyfile(seeded_site, db)
    env = _env(db)
    if broker == "redis":
        # A database of its own and a flushed queue: other runs on this Redis stay untouched.
        env["REDIS_URL"] = "redis://127.0.0.1:6379/13"
        import redis

        redis.Redis.from_url(env["REDIS_URL"]).flushdb()
    assert _history_rows(db) == []
    due = _sap_key_expiry(db) - timedelta(hours=12)
    enqueue = (
        "from django_q.tasks import async_task; from django_q.brokers import get_broker; "
        f"print(type(get_broker()).__name__); "
        f"async_task('renewals.tasks.run_auto_activation_scan', '{due.isoformat()}')"
    )
    out = _manage(env, "shell", "-c", enqueue).stdout
    assert ("Redis" if broker == "redis" else "ORM") in out

    cluster = subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not _history_rows(db):
            time.sleep(0.5)
    finally:
        os.killpg(cluster.pid, signal.SIGTERM)
        try:
            cluster.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(cluster.pid, signal.SIGKILL)
    assert _history_rows(db) == [(ALIAS, "automatic")]
    with sqlite3.connect(db) as connection:
        pending = connection.execute("SELECT COUNT(*) FROM renewals_pendingsapkey").fetchone()
    assert pending == (0,)
