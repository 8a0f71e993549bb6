"""Scenario 1: the keystore changelist against a bare Django admin changelist of the same rows.

20 tenants, entries spread over them (SAP key pairs, tenant key pairs, trusted certificates,
some expired or expiring), a page of 100. Three users hold one role each on every tenant
(ReadOnly, IntegrationDeveloper, Administrator: object permissions through the role groups) and
see every row; the baseline is a superuser on the bare admin of `bench.bareapp.BareEntry`, which
holds the same rows in the same order with the stock filters and search. Query counts are taken
at the small size and at the full size.
"""

from __future__ import annotations

import statistics
import uuid
from datetime import timedelta

from bench.common import (
    Material,
    SapPki,
    ScenarioResult,
    bulk_insert,
    ms,
    ratio,
    refresh_statistics,
    timed,
)

NAME = "changelist"
SIZES = {
    "full": {"entries": 20_000, "small": 200, "tenants": 20, "repeat": 15, "warmup": 3},
    "quick": {"entries": 2_000, "small": 200, "tenants": 20, "repeat": 7, "warmup": 2},
}
TARGET_RATIO = 1.3
ROLES = ("ReadOnly", "IntegrationDeveloper", "Administrator")
ENTRY_URL = "/admin/keystore/keystoreentry/"
BARE_URL = "/admin/bareapp/bareentry/"
PAGE = 100


class Dataset:
    """Tenants, role users and the material the rows are made of."""

    def __init__(self, tenants: int) -> None:
        from django.contrib.auth import get_user_model

        from keystore import roles
        from keystore.models import Tenant

        self.tenants = [
            Tenant.objects.create(name=f"Bench tenant {n:02d}", slug=f"bench-{n:02d}")
            for n in range(tenants)
        ]
        roles.ensure_roles(self.tenants)
        user_model = get_user_model()
        self.users = {}
        for role in ROLES:
            user = user_model.objects.create_user(
                username=f"bench_{role.lower()}", password="bench-pw-123!", is_staff=True
            )
            for tenant in self.tenants:
                roles.assign_role(user, tenant, role)
            self.users[role] = user
        self.superuser = user_model.objects.create_superuser(
            username="bench_superuser", password="bench-pw-123!", email=""
        )
        pki = SapPki.make("Changelist")
        self.sap = pki.key_pair("sap_cloudintegrationcertificate")
        self.tenant_pair = pki.key_pair("bench.example.com")
        self.certificate = Material.of([pki.root], None)
        self.count = 0

    def add(self, count: int) -> None:
        """Add `count` entries (and the same rows to the bare table), spread over the tenants."""
        from django.utils import timezone

        from bench.bareapp.models import BareEntry
        from keystore.models import EntryType, KeystoreEntry, Owner

        now = timezone.now()
        entries: list[KeystoreEntry] = []
        start = self.count
        for number in range(start, start + count):
            tenant = self.tenants[number % len(self.tenants)]
            kind = number % 10
            if kind == 0:
                alias, owner, material = f"sap_key_{number:06d}", Owner.SAP, self.sap
            elif kind <= 6:
                alias, owner, material = f"key_{number:06d}", Owner.TENANT, self.tenant_pair
            else:
                alias, owner, material = f"trusted_{number:06d}", Owner.TENANT, self.certificate
            pair = material.key is not None
            entry = KeystoreEntry(
                tenant=tenant,
                alias=alias,
                owner=owner,
                entry_type=EntryType.KEY_PAIR if pair else EntryType.CERTIFICATE,
                material_id=uuid.uuid4(),
                modified_by_label="bench",
            )
            # Expired, expiring within a month, and valid for years: every colour of the list.
            days_left = (-30, 10, 400, 800)[number % 4]
            material.fill(
                entry,
                serial=0x1000 + number,
                valid_from=now - timedelta(days=365),
                valid_until=now + timedelta(days=days_left, minutes=number % 1440),
            )
            entries.append(entry)
        bulk_insert(KeystoreEntry, entries)
        bare = [
            BareEntry(
                **{
                    field.attname: getattr(entry, field.attname)
                    for field in BareEntry._meta.concrete_fields
                    if field.attname != "id"
                }
            )
            for entry in entries
        ]
        bulk_insert(BareEntry, bare)
        self.count += count
        refresh_statistics()


def _clients(data: Dataset) -> dict[str, tuple[object, str]]:
    from django.test import Client

    clients: dict[str, tuple[object, str]] = {}
    for role, user in data.users.items():
        client = Client()
        client.force_login(user)
        clients[role] = (client, ENTRY_URL)
    bare = Client()
    bare.force_login(data.superuser)
    clients["bare"] = (bare, BARE_URL)
    return clients


def _get(client, url: str, expected_rows: int):
    response = client.get(url)
    if response.status_code != 200:
        raise RuntimeError(f"GET {url} answered {response.status_code}")
    listing = response.content.partition(b'id="result_list"')[2].partition(b"</table>")[0]
    rows = listing.count(b"<tr") - 1  # the header row
    if rows != expected_rows:
        raise RuntimeError(f"GET {url} showed {rows} rows, expected {expected_rows}")
    return response


def _query_counts(clients, expected_rows: int) -> dict[str, int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    counts = {}
    for name, (client, url) in clients.items():
        _get(client, url, expected_rows)  # the session and caches are warm, as in use
        with CaptureQueriesContext(connection) as captured:
            _get(client, url, expected_rows)
        counts[name] = len(captured.captured_queries)
    return counts


def _medians(clients, expected_rows: int, repeat: int, warmup: int) -> dict[str, float]:
    for _ in range(warmup):
        for client, url in clients.values():
            _get(client, url, expected_rows)
    samples: dict[str, list[float]] = {name: [] for name in clients}
    # Interleaved, so drift of the machine touches every view alike.
    for _ in range(repeat):
        for name, (client, url) in clients.items():
            samples[name].append(timed(lambda c=client, u=url: _get(c, u, expected_rows))[0])
    return {name: statistics.median(values) for name, values in samples.items()}


def run(sizes: dict, workdir=None) -> ScenarioResult:
    result = ScenarioResult(NAME, dict(sizes))
    data = Dataset(sizes["tenants"])
    small, large = sizes["small"], sizes["entries"]
    data.add(small)
    clients = _clients(data)
    small_counts = _query_counts(clients, min(PAGE, small))
    small_times = _medians(clients, min(PAGE, small), sizes["repeat"], sizes["warmup"])
    data.add(large - small)
    large_counts = _query_counts(clients, PAGE)
    large_times = _medians(clients, PAGE, sizes["repeat"], sizes["warmup"])

    bare = large_times["bare"]
    result.add(
        f"bare admin, {large} rows",
        ms(bare),
        "ms/request",
        note=f"{small} rows: {ms(small_times['bare'])} ms; {large_counts['bare']} queries",
    )
    for role in ROLES:
        value = large_times[role]
        result.add(
            f"{role}, {large} rows",
            ms(value),
            "ms/request",
            baseline=ms(bare),
            ratio=ratio(value, bare),
            target=f"<= {TARGET_RATIO}x bare",
            passed=value <= TARGET_RATIO * bare,
            note=f"{small} rows: {ms(small_times[role])} ms",
        )
    for name in (*ROLES, "bare"):
        result.add(
            f"queries {name}, {small} vs {large} rows",
            large_counts[name],
            "queries",
            baseline=small_counts[name],
            target="same count" if name != "bare" else "",
            passed=large_counts[name] == small_counts[name] if name != "bare" else None,
        )
    return result
