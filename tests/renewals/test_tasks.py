"""django-q2: the schedule is upserted by name, the task function is the scan, and it runs
through the task queue (synchronously under pytest)."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

from django.conf import settings
from django.core.management import call_command
from django_q.models import Schedule
from django_q.tasks import async_task, result

from renewals import tasks
from renewals.models import PendingSapKey, SapKeyBackup


def test_ensure_schedules_is_idempotent(db, settings):
    tasks.ensure_schedules()
    tasks.ensure_schedules()
    settings.RENEWALS_SCAN_MINUTES = 5
    call_command("ensure_schedules", stdout=StringIO())
    [schedule] = Schedule.objects.filter(name=tasks.AUTO_ACTIVATION_SCHEDULE)
    assert schedule.func == "renewals.tasks.run_auto_activation_scan"
    assert schedule.schedule_type == Schedule.MINUTES
    assert schedule.minutes == 5
    assert schedule.repeats == -1


def test_migrate_created_the_schedule(db):
    # post_migrate of the test database ran ensure_schedules; AppConfig.ready writes nothing.
    schedule = Schedule.objects.get(name=tasks.AUTO_ACTIVATION_SCHEDULE)
    assert schedule.minutes == 15


def test_cluster_settings_make_replays_harmless():
    cluster = settings.Q_CLUSTER
    assert cluster["timeout"] < cluster["retry"]
    assert cluster["catch_up"] is False
    assert 1 <= cluster["max_attempts"] <= 5


def test_the_task_function_activates_due_keys(pending, expiry):
    summary = tasks.run_auto_activation_scan((expiry - timedelta(hours=12)).isoformat())
    assert [row["alias"] for row in summary["activated"]] == [pending.alias]
    assert SapKeyBackup.objects.get().activated_by_label == "automatic"
    assert not PendingSapKey.objects.exists()


def test_the_task_runs_through_the_queue(pending, expiry):
    task_id = async_task(
        "renewals.tasks.run_auto_activation_scan", (expiry - timedelta(hours=1)).isoformat()
    )
    summary = result(task_id)
    assert summary["failed"] == []
    assert [row["alias"] for row in summary["activated"]] == [pending.alias]
    assert SapKeyBackup.objects.count() == 1
    # A replayed task finds the work done.
    again = result(async_task("renewals.tasks.run_auto_activation_scan"))
    assert again["activated"] == [] and SapKeyBackup.objects.count() == 1
