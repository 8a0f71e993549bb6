"""Scenario 4: the automatic-activation scan at 1,000 and at 100,000 SAP keys.

Every SAP-owned key pair has a new key waiting in New SAP Keys (the worst case for the scan), spread
over 20 tenants; each row carries a real RSA chain and a private key sealed for that row, so a due
key is activated for real (backup to SAP Key History, overwrite, audit, mail record). "None due":
every current key expires in 200 days or more (outside the reminder window too). "N due": N current
keys expire within the next day. The scan is `renewals.tasks.run_auto_activation_scan`, what the
scheduler runs: automatic activation, reminders, and the expiry alerts of all entries.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from bench.common import (
    SapPki,
    ScenarioResult,
    bulk_insert,
    count_queries,
    ms,
    ratio,
    refresh_statistics,
    timed,
)

NAME = "scan"
SIZES = {
    "full": {"small": 1_000, "large": 100_000, "due": [10, 100], "tenants": 20, "repeat": 7},
    "quick": {"small": 1_000, "large": 10_000, "due": [10, 100], "tenants": 20, "repeat": 5},
}
TARGET_RATIO = 1.5
MAX_QUERIES_PER_KEY = 10


class Dataset:
    def __init__(self, tenants: int) -> None:
        from keystore.models import Tenant

        self.tenants = [
            Tenant.objects.create(name=f"Scan tenant {n:02d}", slug=f"scan-{n:02d}")
            for n in range(tenants)
        ]
        pki = SapPki.make("Scan")
        self.current = pki.key_pair("sap_cloudintegrationcertificate", days=400)
        self.renewed = pki.key_pair("sap_cloudintegrationcertificate", days=800)
        self.count = 0

    def add(self, count: int) -> None:
        """`count` SAP key pairs, each with a new key waiting; none due, no reminder due."""
        from django.utils import timezone

        from keystore.models import EntryType, KeystoreEntry, Owner
        from renewals.models import PendingSapKey, PendingSource

        now = timezone.now()
        start = self.count
        for offset in range(0, count, 5000):
            numbers = range(start + offset, start + min(offset + 5000, count))
            entries = []
            for number in numbers:
                entry = KeystoreEntry(
                    tenant=self.tenants[number % len(self.tenants)],
                    alias=f"sap_key_{number:06d}",
                    owner=Owner.SAP,
                    entry_type=EntryType.KEY_PAIR,
                    material_id=uuid.uuid4(),
                    modified_by_label="SAP",
                    active_since=now - timedelta(days=300),
                )
                self.current.fill(
                    entry,
                    serial=0x10000 + number,
                    valid_from=now - timedelta(days=300),
                    valid_until=now + timedelta(days=200 + number % 300, minutes=number % 1440),
                )
                entries.append(entry)
            bulk_insert(KeystoreEntry, entries)
            saved = KeystoreEntry.objects.filter(
                tenant__in=self.tenants, alias__in=[entry.alias for entry in entries]
            ).values_list("alias", "pk", "tenant_id")
            pending = []
            for alias, pk, tenant_id in saved:
                row = PendingSapKey(
                    tenant_id=tenant_id,
                    entry_id=pk,
                    alias=alias,
                    source=PendingSource.PROVISIONED,
                    provided_at=now - timedelta(days=10),
                    provided_by_label="SAP",
                    material_id=uuid.uuid4(),
                )
                self.renewed.fill(
                    row,
                    serial=0x900000 + pk,
                    valid_from=now - timedelta(days=1),
                    valid_until=now + timedelta(days=800),
                )
                pending.append(row)
            bulk_insert(PendingSapKey, pending)
        self.count += count
        refresh_statistics()

    def make_due(self, count: int) -> None:
        """`count` current keys (with a key waiting) now expire within the day."""
        from django.utils import timezone

        from keystore.models import KeystoreEntry
        from renewals.models import PendingSapKey

        ids = list(PendingSapKey.objects.order_by("?").values_list("entry_id", flat=True)[:count])
        KeystoreEntry.objects.filter(pk__in=ids).update(
            valid_until=timezone.now() + timedelta(hours=12)
        )
        refresh_statistics()


def _scan() -> dict:
    from renewals.tasks import run_auto_activation_scan

    return run_auto_activation_scan()


def _measure(result: ScenarioResult, data: Dataset, size: int, sizes: dict) -> dict:
    from bench.common import median_seconds

    figures: dict = {}
    queries, scan = count_queries(_scan)
    if scan["activated"] or scan["failed"] or scan["alerted"] or scan["reminded"]:
        raise RuntimeError(f"work was due before any key was made due: {scan}")
    figures["none"] = (median_seconds(_scan, repeat=sizes["repeat"], warmup=1), queries)
    for due in sizes["due"]:
        data.make_due(due)
        seconds, (queries, scan) = timed(lambda: count_queries(_scan))
        if len(scan["activated"]) != due or scan["failed"]:
            raise RuntimeError(
                f"{size} keys, {due} due: {len(scan['activated'])} activated, {scan['failed']}"
            )
        figures[due] = (seconds, queries)
    return figures


def run(sizes: dict, workdir=None) -> ScenarioResult:
    result = ScenarioResult(NAME, dict(sizes))
    small, large = sizes["small"], sizes["large"]
    data = Dataset(sizes["tenants"])
    data.add(small)
    at_small = _measure(result, data, small, sizes)
    build, _ = timed(lambda: data.add(large - small))
    at_large = _measure(result, data, large, sizes)

    none_small, none_large = at_small["none"][0], at_large["none"][0]
    result.add(
        f"scan, none due, {large} vs {small} keys",
        ms(none_large),
        "ms",
        baseline=ms(none_small),
        ratio=ratio(none_large, none_small),
        target=f"<= {TARGET_RATIO}x",
        passed=none_large <= TARGET_RATIO * none_small,
        note=f"building {large - small} more keys took {build:.0f} s",
    )
    for due in ("none", *sizes["due"]):
        label = "none due" if due == "none" else f"{due} due"
        result.add(
            f"queries, {label}, {large} vs {small} keys",
            at_large[due][1],
            "queries",
            baseline=at_small[due][1],
            target="same count",
            passed=at_large[due][1] == at_small[due][1],
        )
    most = max(sizes["due"])
    per_key = (at_large[most][1] - at_large["none"][1]) / most
    result.add(
        f"queries per activated key, {most} due",
        round(per_key, 2),
        "queries",
        target=f"<= {MAX_QUERIES_PER_KEY}",
        passed=per_key <= MAX_QUERIES_PER_KEY,
        note="(queries with the keys due - queries with none due) / keys; on SQLite this "
        "counts each key's BEGIN and COMMIT",
    )
    for due in sizes["due"]:
        seconds_small, seconds_large = at_small[due][0], at_large[due][0]
        result.add(
            f"scan, {due} due, {large} vs {small} keys",
            round(seconds_large, 3),
            "s",
            baseline=round(seconds_small, 3),
            ratio=ratio(seconds_large, seconds_small),
            note=f"{ms(seconds_large / due)} ms per activation",
        )
    return result
