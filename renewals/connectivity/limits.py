"""How many connectivity tests may run: per user and minute, and at once per user and per site.

A test holds a web worker for up to its timeout, so without limits a few users (or one script)
could occupy every worker or turn the page into a port scanner. The limits live in the database,
the one store every worker shares and that keeps working when the cache does not (it may be a
per-process LocMemCache, or Redis that is down):

* at once: a running test holds a RunningConnectivityTest row, claimed by an insert that unique
  slot numbers let only one worker win, and deleted when the test ends. A worker killed mid-test
  cannot delete its row, so rows older than STALE_AFTER no longer count.
* per minute: the user's recorded runs that started in the last minute, plus the tests the user
  has running (they are recorded only when they end).

Tests from the command line (no actor) are not limited: they occupy no web worker, and whoever
runs them has the server's shell.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.db import IntegrityError, transaction
from django.utils import timezone

from renewals.connectivity import conf
from renewals.connectivity.models import ConnectivityTestRun, RunningConnectivityTest
from renewals.connectivity.probe import MAX_TIMEOUT

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from keystore.audit import Actor

# Longer than any test may run (MAX_TIMEOUT, 20 s) and than gunicorn lets a worker spend on one
# request (30 s by default) before killing it: only a claim whose test is surely over expires.
STALE_AFTER = timedelta(seconds=max(60, 3 * MAX_TIMEOUT))
RATE_WINDOW = timedelta(minutes=1)


class LimitReached(Exception):
    """A limit refuses the test; the message is for the operator."""


def expire_stale_claims(now: datetime) -> int:
    deleted, _ = RunningConnectivityTest.objects.filter(claimed_at__lt=now - STALE_AFTER).delete()
    return deleted


def _busy(actor: User) -> str | None:
    """Why no slot is free for `actor` right now, or None if one seems to be."""
    per_user = conf.max_concurrent_per_user()
    mine = RunningConnectivityTest.objects.filter(user=actor).count()
    if mine >= per_user:
        tests = "test" if per_user == 1 else "tests"
        return (
            f"You have {mine} connectivity {'test' if mine == 1 else 'tests'} running already "
            f"(at most {per_user} {tests} at a time per user); wait until it has finished and "
            "try again."
        )
    site = conf.max_concurrent()
    if RunningConnectivityTest.objects.count() >= site:
        return (
            f"{site} connectivity tests are running on this site already, the most it runs at "
            "once; try again in a few seconds."
        )
    return None


def _claim(actor: User, now: datetime) -> RunningConnectivityTest:
    expire_stale_claims(now)
    reason = _busy(actor)
    if reason:
        raise LimitReached(reason)
    # The count above may be stale by now; the unique slots decide. At most a handful of inserts.
    for user_slot in range(conf.max_concurrent_per_user()):
        for site_slot in range(conf.max_concurrent()):
            try:
                with transaction.atomic():
                    return RunningConnectivityTest.objects.create(
                        site_slot=site_slot, user=actor, user_slot=user_slot, claimed_at=now
                    )
            except IntegrityError:
                continue
    # Every free slot went to other workers since the count.
    raise LimitReached(_busy(actor) or "Too many connectivity tests are starting; try again.")


def _check_rate(actor: User, claim: RunningConnectivityTest, now: datetime) -> None:
    limit = conf.tests_per_minute()
    recent = ConnectivityTestRun.objects.filter(actor=actor, started_at__gte=now - RATE_WINDOW)
    running = RunningConnectivityTest.objects.filter(user=actor).exclude(pk=claim.pk)
    if recent.count() + running.count() >= limit:
        raise LimitReached(
            f"You started {limit} connectivity tests within a minute, the most allowed; wait a "
            "minute and try again."
        )


@contextmanager
def claim_slot(actor: Actor, now: datetime | None = None) -> Iterator[None]:
    """Hold a slot for one test of `actor` while the block runs; LimitReached if none is free.

    Claims must be seen by the other workers at once, so call this outside a transaction (the
    admin view and the command do).
    """
    if actor is None:
        yield
        return
    now = now or timezone.now()
    claim = _claim(actor, now)
    try:
        _check_rate(actor, claim, now)
        yield
    finally:
        RunningConnectivityTest.objects.filter(pk=claim.pk).delete()
