"""Scenario 5: activation under load on PostgreSQL, 8 concurrent workers.

Each worker is a thread with its own database connection calling the one activation path
(`renewals.activation.activate_pending_key`), as admin requests, commands and the scheduler do.

* distinct: every worker activates its own aliases; the figure is activations per second.
* race: every worker tries every alias of one shared set, each starting at a different place in
  the list, for two rounds (after the first, every replaced key is added back to New SAP Keys from
  SAP Key History, the revert path, and raced for again). Exactly one worker may win each alias
  per round.

Afterwards the history is audited against what the workers report: per alias, the number of SAP
Key History rows, ACTIVATE audit records and activation mails must equal the number of successful
activations, the backups must hold the keys that were active before, and the entry's version must
have moved once per activation. Anything else is a lost or duplicated history row.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from datetime import timedelta

from bench.common import SapPki, ScenarioResult, bulk_insert, refresh_statistics

NAME = "activation_load"
NEEDS_POSTGRES = True
SIZES = {
    "full": {"workers": 8, "distinct_per_worker": 40, "race_aliases": 100, "race_rounds": 2},
    "quick": {"workers": 8, "distinct_per_worker": 10, "race_aliases": 25, "race_rounds": 2},
}


def _build(tenant, count: int, prefix: str, current, renewed) -> list[str]:
    from django.utils import timezone

    from keystore.models import EntryType, KeystoreEntry, Owner
    from renewals.models import PendingSapKey, PendingSource

    now = timezone.now()
    entries = []
    for number in range(count):
        entry = KeystoreEntry(
            tenant=tenant,
            alias=f"sap_{prefix}_{number:05d}",
            owner=Owner.SAP,
            entry_type=EntryType.KEY_PAIR,
            material_id=uuid.uuid4(),
            modified_by_label="SAP",
            active_since=now - timedelta(days=300),
        )
        current.fill(
            entry,
            serial=number,
            valid_from=now - timedelta(days=300),
            valid_until=now + timedelta(days=40),
        )
        entries.append(entry)
    bulk_insert(KeystoreEntry, entries)
    pending = []
    for pk, alias in KeystoreEntry.objects.filter(
        tenant=tenant, alias__startswith=f"sap_{prefix}_"
    ).values_list("pk", "alias"):
        row = PendingSapKey(
            tenant=tenant,
            entry_id=pk,
            alias=alias,
            source=PendingSource.PROVISIONED,
            provided_by_label="SAP",
            material_id=uuid.uuid4(),
        )
        renewed.fill(
            row,
            serial=pk,
            valid_from=now - timedelta(days=1),
            valid_until=now + timedelta(days=700),
        )
        pending.append(row)
    bulk_insert(PendingSapKey, pending)
    refresh_statistics()
    return [entry.alias for entry in entries]


def _run_workers(tenant, plans: list[list[str]]) -> tuple[float, Counter, Counter, list[str]]:
    """Run one thread per plan (a list of aliases to activate) from a common start; returns
    (seconds, successes per alias, already-activated per alias, unexpected errors)."""
    from django.db import connection

    from renewals.activation import NothingToActivate, activate_pending_key

    barrier = threading.Barrier(len(plans) + 1)
    won: list[Counter] = [Counter() for _ in plans]
    lost: list[Counter] = [Counter() for _ in plans]
    errors: list[str] = []

    def worker(index: int, aliases: list[str]) -> None:
        try:
            barrier.wait(timeout=60)
            for alias in aliases:
                try:
                    activate_pending_key(tenant, alias)
                except NothingToActivate:
                    lost[index][alias] += 1
                else:
                    won[index][alias] += 1
        except Exception as error:  # reported, and fails the scenario
            errors.append(f"{type(error).__name__}: {error}")
        finally:
            connection.close()

    threads = [
        threading.Thread(target=worker, args=(index, plan)) for index, plan in enumerate(plans)
    ]
    for thread in threads:
        thread.start()
    barrier.wait(timeout=60)
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    return seconds, sum(won, Counter()), sum(lost, Counter()), errors


def _audit(tenant, expected: Counter, current_fp: str, renewed_fp: str) -> list[str]:
    """Compare the history with the successful activations; returns the discrepancies."""
    from django.db.models import Count

    from keystore.models import AuditAction, AuditEvent, KeystoreEntry
    from renewals.models import NotificationKind, PendingSapKey, SapKeyBackup, SentNotification

    problems: list[str] = []

    def per_alias(queryset) -> Counter:
        return Counter(dict(queryset.values_list("alias").annotate(n=Count("pk"))))

    backups = per_alias(SapKeyBackup.objects.filter(tenant=tenant))
    audits = per_alias(AuditEvent.objects.filter(tenant=tenant, action=AuditAction.ACTIVATE))
    mails = per_alias(
        SentNotification.objects.filter(tenant=tenant, kind=NotificationKind.ACTIVATED)
    )
    for name, found in (("history rows", backups), ("audit records", audits), ("mails", mails)):
        for alias in set(found) | set(expected):
            if found[alias] != expected[alias]:
                problems.append(f"{alias}: {found[alias]} {name} for {expected[alias]} activations")
    # Round by round the backups alternate: the original key, then the renewed one, ...
    for alias, fingerprints in _backup_fingerprints(tenant).items():
        wanted = [(current_fp, renewed_fp)[n % 2] for n in range(len(fingerprints))]
        if fingerprints != wanted:
            problems.append(f"{alias}: history holds the wrong keys")
    for alias, version, fingerprint in KeystoreEntry.objects.filter(
        tenant=tenant, alias__in=list(expected)
    ).values_list("alias", "version", "fingerprint_sha256"):
        if version != 1 + expected[alias]:
            problems.append(f"{alias}: version {version} after {expected[alias]} activations")
        if fingerprint != (renewed_fp if expected[alias] % 2 else current_fp):
            problems.append(f"{alias}: the active key is not the one last activated")
    if PendingSapKey.objects.filter(tenant=tenant, alias__in=list(expected)).exists():
        problems.append("activated aliases still have a key waiting")
    return problems


def _backup_fingerprints(tenant) -> dict[str, list[str]]:
    from renewals.models import SapKeyBackup

    found: dict[str, list[str]] = {}
    for alias, fingerprint in (
        SapKeyBackup.objects.filter(tenant=tenant)
        .order_by("alias", "active_until")
        .values_list("alias", "fingerprint_sha256")
    ):
        found.setdefault(alias, []).append(fingerprint)
    return found


def _add_back(tenant, aliases: list[str]) -> None:
    from renewals.activation import add_back_to_pending
    from renewals.models import SapKeyBackup

    for alias in aliases:
        backup = SapKeyBackup.objects.filter(tenant=tenant, alias=alias).latest("active_until")
        add_back_to_pending(backup)


def run(sizes: dict, workdir=None) -> ScenarioResult:
    from django.db import connection

    from keystore.models import Tenant

    result = ScenarioResult(NAME, dict(sizes))
    if connection.vendor != "postgresql":
        result.skipped = "needs PostgreSQL (row locks under real concurrency)"
        return result
    workers = sizes["workers"]
    pki = SapPki.make("Load")
    current = pki.key_pair("sap_cloudintegrationcertificate", days=365)
    renewed = pki.key_pair("sap_cloudintegrationcertificate", days=730)
    current_fp = current.columns["fingerprint_sha256"]
    renewed_fp = renewed.columns["fingerprint_sha256"]
    tenant = Tenant.objects.create(name="Load tenant", slug="load")

    distinct = _build(tenant, workers * sizes["distinct_per_worker"], "own", current, renewed)
    race = _build(tenant, sizes["race_aliases"], "race", current, renewed)
    connection.close()  # the workers open their own connections

    plans = [distinct[index::workers] for index in range(workers)]
    seconds, won, lost, errors = _run_workers(tenant, plans)
    expected = Counter(won)
    result.add(
        f"{workers} workers, different aliases",
        round(sum(won.values()) / seconds, 1),
        "activations/s",
        note=f"{sum(won.values())} activations in {seconds:.2f} s",
    )

    race_seconds = 0.0
    race_won: Counter = Counter()
    race_lost = 0
    for round_number in range(sizes["race_rounds"]):
        if round_number:
            _add_back(tenant, race)
            connection.close()
        # Every worker tries every alias, each starting elsewhere in the list.
        step = max(1, len(race) // workers)
        plans = [race[index * step :] + race[: index * step] for index in range(workers)]
        seconds, won, lost, more_errors = _run_workers(tenant, plans)
        race_seconds += seconds
        race_won += won
        race_lost += sum(lost.values())
        errors += more_errors
    expected += race_won
    attempts = workers * len(race) * sizes["race_rounds"]
    result.add(
        f"{workers} workers racing on the same aliases",
        round(sum(race_won.values()) / race_seconds, 1),
        "activations/s",
        note=f"{attempts} attempts in {race_seconds:.2f} s: {sum(race_won.values())} activated, "
        f"{race_lost} found it done already",
    )
    wins_per_round = [alias for alias in race if race_won[alias] != sizes["race_rounds"]]
    result.add(
        "race: aliases not activated exactly once per round",
        len(wins_per_round),
        "aliases",
        target="0",
        passed=not wins_per_round,
        note=", ".join(wins_per_round[:5]),
    )
    problems = _audit(tenant, expected, current_fp, renewed_fp)
    result.add(
        "lost or duplicated history rows",
        len(problems),
        "discrepancies",
        target="0",
        passed=not problems,
        note="; ".join(problems[:3]) or f"{sum(expected.values())} activations audited",
    )
    result.add(
        "unexpected errors in workers",
        len(errors),
        "errors",
        target="0",
        passed=not errors,
        note="; ".join(sorted(set(errors))[:3]),
    )
    return result
