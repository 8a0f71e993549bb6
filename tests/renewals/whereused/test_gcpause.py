"""The cyclic collector pause of the flow import: off while one group is read and written, back
on afterwards whatever happened, shared correctly between threads, and never switched on when
someone else switched it off."""

from __future__ import annotations

import gc
import threading
from contextlib import contextmanager

import pytest
from django.db import DatabaseError

from renewals.whereused import importing
from renewals.whereused.errors import WhereUsedError
from renewals.whereused.gcpause import collector_paused
from renewals.whereused.importing import import_flow_exports
from renewals.whereused.models import IntegrationFlow, KeyUsageRecord
from tests.renewals.whereused.flows import signer_only_flow


@pytest.fixture(autouse=True)
def collector_on():
    """Each test starts with the collector on, and a failing test cannot leave it off."""
    gc.enable()
    yield
    gc.enable()


def test_the_collector_is_off_in_the_block_and_on_after_it():
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_an_error_in_the_block_still_switches_the_collector_back_on():
    with pytest.raises(ValueError), collector_paused():
        raise ValueError("boom")
    assert gc.isenabled()


def test_a_collector_switched_off_elsewhere_stays_off():
    gc.disable()
    with collector_paused():
        assert not gc.isenabled()
    assert not gc.isenabled()


def test_the_last_of_overlapping_pauses_switches_it_back_on():
    """Two threads' pauses overlap: the first to end must not switch the collector on under the
    second one."""
    second_paused, first_ended, results = threading.Event(), threading.Event(), []

    def second():
        with collector_paused():
            second_paused.set()
            first_ended.wait(5)
            results.append(gc.isenabled())  # the first pause has ended: still off
        results.append(gc.isenabled())  # the last pause has ended: on again

    with collector_paused():
        thread = threading.Thread(target=second)
        thread.start()
        assert second_paused.wait(5)
    first_ended.set()
    thread.join(5)
    assert results == [False, True]


def _spy_on_reading(monkeypatch) -> list[bool]:
    seen: list[bool] = []
    real = importing._read_one

    def spy(*args, **kwargs):
        seen.append(gc.isenabled())
        return real(*args, **kwargs)

    monkeypatch.setattr(importing, "_read_one", spy)
    return seen


def test_an_import_pauses_the_collector_once_per_group(tenant, monkeypatch):
    seen = _spy_on_reading(monkeypatch)
    pauses = []

    @contextmanager
    def counted():
        pauses.append(True)
        with collector_paused():
            yield

    monkeypatch.setattr(importing, "collector_paused", counted)
    monkeypatch.setattr(importing, "STORE_GROUP", 2)
    results = import_flow_exports(
        tenant, [(f"{n}.zip", signer_only_flow(f"com.example.f{n}")) for n in range(5)]
    )
    assert [result.ok for result in results] == [True] * 5
    assert seen == [False] * 5
    assert len(pauses) == 3  # groups of 2, 2 and 1: the garbage of one group waits for no other
    assert gc.isenabled()
    assert IntegrationFlow.objects.filter(tenant=tenant).count() == 5


def test_a_failing_write_leaves_the_collector_on(tenant, monkeypatch):
    def bulk_create(records, **kwargs):
        raise DatabaseError("disk full")

    monkeypatch.setattr(KeyUsageRecord.objects, "bulk_create", bulk_create)
    results = import_flow_exports(tenant, [("a.zip", signer_only_flow())])
    assert [result.ok for result in results] == [False]
    assert gc.isenabled()
    assert not IntegrationFlow.objects.exists()


def test_a_failing_source_leaves_the_collector_on(tenant):
    def sources():
        yield "a.zip", signer_only_flow()
        raise OSError("the share went away")

    with pytest.raises(OSError, match="share went away"):
        import_flow_exports(tenant, sources())
    assert gc.isenabled()


def test_a_refused_import_never_pauses_the_collector(tenant, users, monkeypatch):
    seen = _spy_on_reading(monkeypatch)
    with pytest.raises(WhereUsedError, match="not allowed"):
        import_flow_exports(tenant, [("a.zip", signer_only_flow())], actor=users["ReadOnly"])
    assert seen == []
    assert gc.isenabled()
