"""Limits on connectivity tests: running at once per user and per site, and started per minute.

Both live in the database so every web worker sees them and a cache outage changes nothing.
Targets are private addresses from a stubbed resolver whose connect() is refused by a stub:
nothing is ever contacted.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, transaction
from django.utils import timezone

from renewals.connectivity import conf, limits
from renewals.connectivity import probe as tlsprobe
from renewals.connectivity.models import ConnectivityTestRun, RunningConnectivityTest
from renewals.connectivity.probe import Outcome
from renewals.connectivity.services import ConnectivityError, run_connectivity_test
from tests.conftest import make_user

BACKEND = "backend.internal"


@pytest.fixture(autouse=True)
def stubbed_backend(fake_dns, socket_guard, settings):
    fake_dns({BACKEND: ["10.20.30.40"]})
    settings.CONNECTIVITY_MAX_CONCURRENT_PER_USER = 1
    settings.CONNECTIVITY_MAX_CONCURRENT = 2
    settings.CONNECTIVITY_TESTS_PER_MINUTE = 20
    return socket_guard


@pytest.fixture
def developer(users):
    return users["IntegrationDeveloper"]


@pytest.fixture
def runners(tenant):
    """Three more users who may run tests in tenant A."""
    return [make_user(f"runner{n}", tenant=tenant, role="IntegrationDeveloper") for n in range(3)]


def start(tenant, actor) -> ConnectivityTestRun:
    return run_connectivity_test(tenant, BACKEND, 443, timeout=2, actor=actor)


def test_defaults():
    assert conf.DEFAULT_MAX_CONCURRENT_PER_USER == 1
    assert conf.DEFAULT_MAX_CONCURRENT == 2
    assert conf.DEFAULT_TESTS_PER_MINUTE == 20


def test_a_test_holds_a_slot_only_while_it_runs(tenant, developer, monkeypatch):
    seen = []
    real_probe = tlsprobe.probe

    def probe(*args, **kwargs):
        seen.append(list(RunningConnectivityTest.objects.values_list("user", "site_slot")))
        return real_probe(*args, **kwargs)

    monkeypatch.setattr(tlsprobe, "probe", probe)
    run = start(tenant, developer)
    assert run.outcome == Outcome.CONNECTION_REFUSED
    assert seen == [[(developer.pk, 0)]]
    assert not RunningConnectivityTest.objects.exists()


def test_the_slot_is_released_when_the_test_breaks(tenant, developer, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("worker trouble")

    monkeypatch.setattr(tlsprobe, "probe", broken)
    with pytest.raises(RuntimeError):
        start(tenant, developer)
    assert not RunningConnectivityTest.objects.exists()


def test_one_running_test_per_user(tenant, developer, users, stubbed_backend):
    with limits.claim_slot(developer):  # the developer's first test, still running
        with pytest.raises(ConnectivityError) as refused:
            start(tenant, developer)
        assert str(refused.value) == (
            "You have 1 connectivity test running already (at most 1 test at a time per user); "
            "wait until it has finished and try again."
        )
        assert not ConnectivityTestRun.objects.exists()
        assert stubbed_backend.connects == []
        # Another user still gets the site's second slot.
        assert start(tenant, users["Administrator"]).outcome == Outcome.CONNECTION_REFUSED
    assert start(tenant, developer).outcome == Outcome.CONNECTION_REFUSED


def test_per_user_limit_is_a_setting(tenant, developer, settings):
    settings.CONNECTIVITY_MAX_CONCURRENT_PER_USER = 2
    settings.CONNECTIVITY_MAX_CONCURRENT = 4
    with (
        limits.claim_slot(developer),
        limits.claim_slot(developer),
        pytest.raises(ConnectivityError, match=r"You have 2 connectivity tests running"),
    ):
        start(tenant, developer)
    assert RunningConnectivityTest.objects.count() == 0


def test_site_wide_limit_across_users(tenant, developer, runners, stubbed_backend):
    with limits.claim_slot(runners[0]), limits.claim_slot(runners[1]):
        with pytest.raises(ConnectivityError) as refused:
            start(tenant, developer)
        assert str(refused.value) == (
            "2 connectivity tests are running on this site already, the most it runs at once; "
            "try again in a few seconds."
        )
        assert not ConnectivityTestRun.objects.exists()
        assert stubbed_backend.opened == []
    assert start(tenant, developer).outcome == Outcome.CONNECTION_REFUSED


def test_stale_claims_expire(tenant, developer, runners):
    """A worker killed mid-test leaves its claim behind; it stops counting after STALE_AFTER."""
    now = timezone.now()
    stale = now - limits.STALE_AFTER - timedelta(seconds=1)
    RunningConnectivityTest.objects.create(
        site_slot=0, user=developer, user_slot=0, claimed_at=stale
    )
    RunningConnectivityTest.objects.create(
        site_slot=1, user=runners[0], user_slot=0, claimed_at=stale
    )
    assert start(tenant, developer).outcome == Outcome.CONNECTION_REFUSED
    assert not RunningConnectivityTest.objects.exists()

    # A claim younger than STALE_AFTER still counts.
    RunningConnectivityTest.objects.create(
        site_slot=0, user=developer, user_slot=0, claimed_at=now - limits.STALE_AFTER / 2
    )
    with pytest.raises(ConnectivityError, match="running already"):
        start(tenant, developer)


def test_stale_expiry_outlasts_any_test_and_a_worker_timeout():
    assert timedelta(seconds=tlsprobe.MAX_TIMEOUT) < limits.STALE_AFTER
    assert timedelta(seconds=30) < limits.STALE_AFTER  # gunicorn's default worker timeout


def test_a_slot_cannot_be_taken_twice(db):
    """The unique slots make the claim atomic: two workers cannot both insert one."""
    user = make_user("slot_owner")
    now = timezone.now()
    RunningConnectivityTest.objects.create(site_slot=0, user=user, user_slot=0, claimed_at=now)
    other = make_user("slot_rival")
    with pytest.raises(IntegrityError), transaction.atomic():
        RunningConnectivityTest.objects.create(site_slot=0, user=other, user_slot=0, claimed_at=now)
    with pytest.raises(IntegrityError), transaction.atomic():
        RunningConnectivityTest.objects.create(site_slot=1, user=user, user_slot=0, claimed_at=now)


def test_claims_lost_to_other_workers_are_refused(tenant, developer, runners, monkeypatch):
    """Another worker claims the last slots between our count and our insert: the inserts fail
    on the unique slots and the test is refused, never run beyond the limit."""
    with limits.claim_slot(runners[0]), limits.claim_slot(runners[1]):
        monkeypatch.setattr(limits, "_busy", lambda actor: None)  # the stale count said "free"
        with pytest.raises(ConnectivityError, match="Too many connectivity tests are starting"):
            start(tenant, developer)
    assert not ConnectivityTestRun.objects.exists()


def test_command_line_tests_hold_no_slot(tenant, runners):
    with limits.claim_slot(runners[0]), limits.claim_slot(runners[1]):
        assert start(tenant, None).outcome == Outcome.CONNECTION_REFUSED


@pytest.mark.parametrize(
    "name",
    [
        "CONNECTIVITY_MAX_CONCURRENT",
        "CONNECTIVITY_MAX_CONCURRENT_PER_USER",
        "CONNECTIVITY_TESTS_PER_MINUTE",
    ],
)
@pytest.mark.parametrize("value", [0, -1, "3", 2.5, True])
def test_limit_settings_are_checked(settings, name, value):
    setattr(settings, name, value)
    read = {
        "CONNECTIVITY_MAX_CONCURRENT": conf.max_concurrent,
        "CONNECTIVITY_MAX_CONCURRENT_PER_USER": conf.max_concurrent_per_user,
        "CONNECTIVITY_TESTS_PER_MINUTE": conf.tests_per_minute,
    }[name]
    with pytest.raises(ImproperlyConfigured, match=f"{name} must be a whole number of at least 1"):
        read()
    assert [error.id for error in conf.check_settings()] == ["connectivity.E001"]


# -- per minute ----------------------------------------------------------------------------


@pytest.fixture
def broken_cache(monkeypatch):
    """The cache as it is with Redis down: every call raises."""
    cache = caches["default"]

    def down(*args, **kwargs):
        raise ConnectionError("Error 111 connecting to redis:6379. Connection refused.")

    for method in ("get", "set", "add", "incr", "decr", "delete", "get_many", "set_many", "touch"):
        monkeypatch.setattr(cache, method, down)


@pytest.mark.parametrize("cache_state", ["up", "down"])
def test_per_minute_limit_counts_recorded_runs(
    request, tenant, developer, users, settings, cache_state
):
    if cache_state == "down":
        request.getfixturevalue("broken_cache")
    settings.CONNECTIVITY_TESTS_PER_MINUTE = 3
    for _ in range(3):
        start(tenant, developer)
    with pytest.raises(ConnectivityError) as refused:
        start(tenant, developer)
    assert str(refused.value) == (
        "You started 3 connectivity tests within a minute, the most allowed; wait a minute and "
        "try again."
    )
    assert ConnectivityTestRun.objects.count() == 3
    assert not RunningConnectivityTest.objects.exists()
    # Per user: someone else may still test.
    start(tenant, users["Administrator"])
    # Runs older than a minute no longer count.
    ConnectivityTestRun.objects.filter(actor=developer).update(
        started_at=timezone.now() - timedelta(seconds=61)
    )
    start(tenant, developer)


def test_running_tests_count_towards_the_minute(tenant, developer, settings):
    settings.CONNECTIVITY_TESTS_PER_MINUTE = 2
    settings.CONNECTIVITY_MAX_CONCURRENT_PER_USER = 2
    start(tenant, developer)
    # A test still running is not recorded yet, but it has started.
    with limits.claim_slot(developer), pytest.raises(ConnectivityError, match="wait a minute"):
        start(tenant, developer)
    assert ConnectivityTestRun.objects.count() == 1
