"""The benchmark code still runs: the smallest version of the scenarios, in-process, on the
test database (the real runs are `python bench/run.py`, never part of the test suite)."""

from __future__ import annotations

import pytest

from bench import run as bench_run
from bench.scenarios import keystore_import, scan, whereused


# Committed transactions, as in a real run: the mails of an activation are sent after commit
# (inside a test transaction they would wait and be retried by the next scan).
@pytest.mark.django_db(transaction=True)
def test_scan_scenario_activates_the_due_keys_with_the_same_queries_at_both_sizes():
    sizes = {"small": 8, "large": 16, "due": [2], "tenants": 2, "repeat": 1}
    result = scan.run(sizes)
    rows = {row.metric: row for row in result.rows}
    assert rows["queries, none due, 16 vs 8 keys"].passed is True
    due, none = rows["queries, 2 due, 16 vs 8 keys"], rows["queries, none due, 16 vs 8 keys"]
    assert due.passed is True
    # Two activations cost more queries than none, and the same number at both sizes.
    assert due.value > none.value
    from renewals.models import PendingSapKey, SapKeyBackup

    assert SapKeyBackup.objects.count() == 4  # two due keys at each size, activated for real
    assert PendingSapKey.objects.count() == 16 - 4


@pytest.mark.django_db
def test_keystore_import_scenario_imports_every_entry_of_its_file():
    from tests.pki import make_jks

    data = make_jks(keystore_import._entries(6), keystore_import.PASSWORD)
    seconds = keystore_import._import_seconds(data, "jks", 6, 0)
    assert seconds > 0
    from keystore.models import KeystoreEntry

    assert KeystoreEntry.objects.filter(entry_type="key_pair").count() == 5
    assert KeystoreEntry.objects.filter(entry_type="certificate").count() == 1


@pytest.mark.django_db
def test_whereused_scenario_imports_the_flows_and_finds_the_alias(tmp_path):
    sizes = {"small": 2, "large": 3, "lookup_repeat": 1, "small_passes": 2}
    whereused.prepare(sizes, tmp_path)
    small = whereused.run_part("small", sizes, tmp_path).data
    assert (small["flows"], small["passes"], small["usages"]) == (2, 2, 10)
    data = whereused.run_part("large", sizes, tmp_path).data
    assert (data["flows"], data["usages"]) == (3, 15)
    lookup = data["lookup"]
    assert lookup["large_queries"] == lookup["small_queries"] == 1
    assert lookup["large_answer"]["uses"] == 3 and lookup["small_answer"]["uses"] == 2
    combined = whereused.combine(
        sizes,
        {
            "small": {"data": {**data, "flows": 2}, "peak_rss_mb": 50.0},
            "large": {"data": data, "peak_rss_mb": 50.0},
        },
    )
    assert [row.passed for row in combined.rows if row.metric.startswith("where-used queries")] == [
        True
    ]
    table = bench_run.table([combined.as_dict()])
    assert "where-used lookup, 3 vs 2 flows" in table


def test_an_unknown_scenario_is_refused_before_anything_runs(capsys, tmp_path):
    report = tmp_path / "results.json"
    assert bench_run.main(["--only", "changelist,nope", "--json", str(report)]) == 2
    assert "Unknown scenario(s): nope" in capsys.readouterr().out
    assert not report.exists()


@pytest.mark.django_db
def test_api_list_scenario_lists_through_the_api_and_the_bare_view(settings):
    from bench.scenarios import api_list

    settings.ROOT_URLCONF = "bench.bareapp.urls"  # the bare baseline's URL, as in bench runs
    result = api_list.run({"entries": 12, "small": 3, "repeat": 1, "warmup": 1})
    rows = {row.metric: row for row in result.rows}
    assert rows["queries, 12 vs 3 key pairs"].passed is True
    listed = rows["GET /KeystoreEntries, 12 key pairs vs bare JsonResponse"]
    assert listed.value > 0 and listed.baseline > 0


@pytest.mark.django_db
def test_plan_probe_scenario_probes_every_backend_of_the_plan_with_the_new_key():
    from bench.scenarios import plan_probe
    from renewals.connectivity.models import ConnectivityTestRun, KeyUsed
    from renewals.plans.models import BackendStatus, PlanBackend

    result = plan_probe.run({"backends": 3, "delay": 0.2, "rounds": 1, "warmup": 0})
    rows = {row.metric: row for row in result.rows}
    assert rows["probe_backends, 3 backends vs 1, handshake after 0.2 s"].ratio is not None
    # Each probe waits for its server's delay; the timing itself is the real run's business.
    assert min(result.data["one_backend_seconds"] + result.data["all_backends_seconds"]) >= 0.2
    # A web user's three probes stay within the default limits and run (one at a time).
    web_user = rows["probe_backends, 3 backends, as a web user (admin button), default limits"]
    assert web_user.value != "refused", web_user.note
    assert set(PlanBackend.objects.values_list("status", flat=True)) == {BackendStatus.VERIFIED}
    assert PlanBackend.objects.count() == 4
    assert ConnectivityTestRun.objects.exclude(key_used=KeyUsed.PENDING).count() == 0
