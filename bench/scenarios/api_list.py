"""Scenario 6: GET /api/v1/KeystoreEntries (the Cloud Integration API's entity list) against a
bare Django JsonResponse of the same rows' columns (bench/bareapp/urls.py), at 18 and at 1,800
key pairs (the original's largest keystore). Both go through the test client and the site's
middleware; the API call authenticates an API client by HTTP Basic and builds the OData
entities. Alternating requests, medians; query counts at both sizes.
"""

from __future__ import annotations

import base64
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

NAME = "api_list"
SIZES = {
    "full": {"entries": 1800, "small": 18, "repeat": 21, "warmup": 3},
    "quick": {"entries": 1800, "small": 18, "repeat": 7, "warmup": 2},
}
TARGET_RATIO = 1.5
API_URL = "/api/v1/KeystoreEntries"


def _add(tenant, material: Material, start: int, count: int) -> None:
    from django.utils import timezone

    from keystore.models import EntryType, KeystoreEntry, Owner

    now = timezone.now()
    rows = []
    for number in range(start, start + count):
        entry = KeystoreEntry(
            tenant=tenant,
            alias=f"key_{number:05d}",
            owner=Owner.TENANT,
            entry_type=EntryType.KEY_PAIR,
            material_id=uuid.uuid4(),
            modified_by_label="bench",
        )
        material.fill(
            entry,
            serial=0x1000 + number,
            valid_from=now - timedelta(days=30),
            valid_until=now + timedelta(days=300 + number % 400),
        )
        rows.append(entry)
    bulk_insert(KeystoreEntry, rows)
    refresh_statistics()


def _get(client, url: str, authorization: str, expected: int) -> None:
    response = (
        client.get(url, HTTP_AUTHORIZATION=authorization) if authorization else client.get(url)
    )
    if response.status_code != 200:
        raise RuntimeError(f"GET {url} answered {response.status_code}: {response.content[:200]!r}")
    count = len(response.json()["d"]["results"])
    if count != expected:
        raise RuntimeError(f"GET {url} gave {count} rows, expected {expected}")


def _measure(calls: dict, expected: int, repeat: int, warmup: int) -> tuple[dict, dict]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    queries = {}
    for name, call in calls.items():
        for _ in range(warmup):
            call(expected)
        with CaptureQueriesContext(connection) as captured:
            call(expected)
        queries[name] = len(captured.captured_queries)
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeat):  # alternating, so the machine's drift touches both alike
        for name, call in calls.items():
            samples[name].append(timed(lambda c=call: c(expected))[0])
    return {name: statistics.median(values) for name, values in samples.items()}, queries


def run(sizes: dict, workdir=None) -> ScenarioResult:
    from django.test import Client

    from keystore.models import Tenant
    from keystore_site.api import clients

    result = ScenarioResult(NAME, dict(sizes))
    tenant = Tenant.objects.create(name="API bench", slug="api-bench")
    api_client, secret = clients.create_api_client(tenant, "bench", "ReadOnly")
    authorization = (
        "Basic " + base64.b64encode(f"{api_client.client_id}:{secret}".encode()).decode()
    )
    material = SapPki.make("API").key_pair("bench.example.com")
    http = Client()
    calls = {
        "api": lambda n: _get(http, API_URL, authorization, n),
        "bare": lambda n: _get(http, f"/bare/entries/{tenant.pk}", "", n),
    }
    small, large = sizes["small"], sizes["entries"]
    _add(tenant, material, 0, small)
    small_times, small_queries = _measure(calls, small, sizes["repeat"], sizes["warmup"])
    _add(tenant, material, small, large - small)
    large_times, large_queries = _measure(calls, large, sizes["repeat"], sizes["warmup"])

    for size, times in ((large, large_times), (small, small_times)):
        result.add(
            f"GET /KeystoreEntries, {size} key pairs vs bare JsonResponse",
            ms(times["api"]),
            "ms/request",
            baseline=ms(times["bare"]),
            ratio=ratio(times["api"], times["bare"]),
            target=f"<= {TARGET_RATIO}x bare" if size == large else "",
            passed=times["api"] <= TARGET_RATIO * times["bare"] if size == large else None,
        )
    result.add(
        f"queries, {large} vs {small} key pairs",
        large_queries["api"],
        "queries",
        baseline=small_queries["api"],
        target="same count",
        passed=large_queries["api"] == small_queries["api"],
        note=f"bare: {small_queries['bare']} / {large_queries['bare']}",
    )
    return result
