"""Races on PostgreSQL between real processes and between threads: several `activate_sap_key`
commands and `auto_activate` scans at once, several reverts at once.

To make the race real rather than lucky, the test holds the keystore entry's row lock from
its own connection while the processes start, waits until PostgreSQL reports every one of them
blocked on that lock, and then lets go: they all run into the activation in the same instant.
Exactly one wins; every other one ends with the one-line "already done" answer (exit status 1
for a command, "skipped" for a scan), no traceback, and the history holds exactly one backup.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from django.conf import settings
from django.db import connection

from keystore.models import AuditAction, AuditEvent, KeystoreEntry
from renewals.activation import AlreadyWaiting, activate_pending_key, add_back_to_pending
from renewals.models import NotificationKind, PendingSapKey, SapKeyBackup, SentNotification
from tests.hardening.conftest import SAP_ALIAS

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="row-lock races need PostgreSQL"),
    pytest.mark.django_db(transaction=True),
]

MANAGE = Path(settings.BASE_DIR) / "manage.py"
ALREADY = "it may have been activated already"


def process_database_url() -> str:
    """The URL of the test database, for the processes (pytest-django renamed the database)."""
    db = connection.settings_dict
    credentials = quote(db["USER"] or "", safe="")
    if db["PASSWORD"]:
        credentials += ":" + quote(db["PASSWORD"], safe="")
    return f"postgres://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def psycopg_dsn() -> str:
    return process_database_url().replace("postgres://", "postgresql://", 1)


def blocked_backends(monitor, database: str) -> int:
    # A separate autocommit connection: inside a transaction PostgreSQL would answer from the
    # statistics snapshot it took first, and never see the processes arrive.
    return monitor.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'",
        [database],
    ).fetchone()[0]


def race(commands: list[list[str]], entry_id: int) -> list[subprocess.CompletedProcess]:
    """Start the management commands together behind the entry's row lock; release it when
    all of them wait for it; return their results in order."""
    env = {
        **os.environ,
        "DATABASE_URL": process_database_url(),
        "DJANGO_SETTINGS_MODULE": "keystore_site.settings",
    }
    env.pop("TEST_DATABASE_NAME", None)
    database = connection.settings_dict["NAME"]
    processes: list[subprocess.Popen] = []
    try:
        with (
            psycopg.connect(psycopg_dsn()) as holder,
            psycopg.connect(psycopg_dsn(), autocommit=True) as monitor,
        ):
            holder.execute(
                "SELECT id FROM keystore_keystoreentry WHERE id = %s FOR UPDATE", [entry_id]
            )
            for command in commands:
                processes.append(
                    subprocess.Popen(
                        [sys.executable, str(MANAGE), *command],
                        env=env,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE,
                        text=True,
                    )
                )
            deadline = time.monotonic() + 60
            while blocked_backends(monitor, database) < len(commands):
                ended = [p for p in processes if p.poll() is not None]
                assert not ended, [p.communicate() for p in ended]
                assert time.monotonic() < deadline, "the processes never reached the lock"
                time.sleep(0.05)
            holder.commit()  # every process is queued on the row: let them all go
        results = []
        for process, command in zip(processes, commands, strict=True):
            stdout, stderr = process.communicate(timeout=120)
            results.append(subprocess.CompletedProcess(command, process.returncode, stdout, stderr))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    for result in results:
        assert "Traceback" not in result.stderr, result.stderr
    return results


def assert_activated_once(sap_entry, pending) -> None:
    [backup] = SapKeyBackup.objects.all()
    assert backup.fingerprint_sha256 == sap_entry.fingerprint_sha256
    entry = KeystoreEntry.objects.get(pk=sap_entry.pk)
    assert (entry.fingerprint_sha256, entry.version) == (
        pending.fingerprint_sha256,
        sap_entry.version + 1,
    )
    assert not PendingSapKey.objects.exists()
    assert AuditEvent.objects.filter(action=AuditAction.ACTIVATE).count() == 1
    assert SentNotification.objects.filter(kind=NotificationKind.ACTIVATED).count() == 1


def activate_command(tenant) -> list[str]:
    return ["activate_sap_key", SAP_ALIAS, "--tenant", tenant.slug]


def test_four_activate_commands_at_once(sap_entry, pending, users, figures):
    results = race([activate_command(sap_entry.tenant)] * 4, sap_entry.pk)
    winners = [r for r in results if r.returncode == 0]
    losers = [r for r in results if r.returncode != 0]
    assert len(winners) == 1, results
    assert f"Activated the new SAP key for {SAP_ALIAS}" in winners[0].stdout
    for loser in losers:
        assert loser.returncode == 1
        [line] = loser.stderr.strip().splitlines()
        assert ALREADY in line, loser.stderr
    assert_activated_once(sap_entry, pending)
    figures["races: processes started"] += len(results)


def test_activate_commands_and_scans_at_once(sap_entry, pending, expiry, users, figures):
    now = (expiry - timedelta(hours=12)).isoformat()
    scan = ["auto_activate", "--now", now]
    activate = activate_command(sap_entry.tenant)
    results = race([activate, scan, activate, scan], sap_entry.pk)
    commands, scans = results[0::2], results[1::2]
    activated_by_scans = [
        line for r in scans for line in r.stdout.splitlines() if line.startswith("activated ")
    ]
    won_by_commands = [r for r in commands if r.returncode == 0]
    assert len(activated_by_scans) + len(won_by_commands) == 1, results
    for result in scans:
        assert result.returncode == 0, result.stderr  # a scan that finds it done skips it
    for result in commands:
        if result.returncode != 0:
            assert ALREADY in result.stderr, result.stderr
    assert_activated_once(sap_entry, pending)
    figures["races: processes started"] += len(results)


def test_three_reverts_at_once_in_threads(sap_entry, pending, users, figures):
    """Threads in one process: three administrators add the same backup back together."""
    admin = users["Administrator"]
    activate_pending_key(sap_entry.tenant, SAP_ALIAS, actor=admin)
    backup = SapKeyBackup.objects.get()
    barrier = threading.Barrier(3)
    outcomes: list = [None] * 3

    def revert(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            outcomes[index] = ("ok", add_back_to_pending(backup, actor=admin))
        except Exception as error:
            outcomes[index] = ("error", error)
        finally:
            connection.close()

    threads = [threading.Thread(target=revert, args=(index,)) for index in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(kind for kind, _ in outcomes) == ["error", "error", "ok"], outcomes
    for kind, value in outcomes:
        if kind == "error":
            assert isinstance(value, AlreadyWaiting), value
    [waiting] = PendingSapKey.objects.all()
    assert waiting.fingerprint_sha256 == backup.fingerprint_sha256
    assert AuditEvent.objects.filter(action=AuditAction.REVERT).count() == 1
    assert SentNotification.objects.filter(kind=NotificationKind.REVERTED).count() == 1
    assert SapKeyBackup.objects.count() == 1
    figures["races: threads started"] += len(threads)
