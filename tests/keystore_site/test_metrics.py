"""GET /metrics: who may read it (bearer token or staff session), output that parses strictly as
Prometheus text format 0.0.4, values that match the data, a constant query count."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from keystore.models import Owner
from keystore_site import metrics
from renewals.models import ScanRun
from tests.conftest import client_for, make_user
from tests.keystore_site.test_dashboard import add_audit, add_certificates, add_flow, add_pending

TOKEN = "s3cret-metrics-token-0123456789"
DAY = timedelta(days=1)

# -- a strict parser of the text exposition format ---------------------------------------------

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL_NAME = r"[a-zA-Z_][a-zA-Z0-9_]*"
VALUE = r"[+-]?(?:\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|Inf|NaN)"
HELP_LINE = re.compile(rf"# HELP ({NAME}) ((?:[^\\\n]|\\\\|\\n)*)")
TYPE_LINE = re.compile(rf"# TYPE ({NAME}) (counter|gauge|histogram|summary|untyped)")
SAMPLE_HEAD = re.compile(rf"({NAME})(\{{)?")
LABEL_START = re.compile(rf'({LABEL_NAME})="')
SAMPLE_TAIL = re.compile(rf" ({VALUE})(?: (-?\d+))?")
UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


def parse_labels(line: str, at: int) -> tuple[dict[str, str], int]:
    labels: dict[str, str] = {}
    while line[at] != "}":
        match = LABEL_START.match(line, at)
        assert match, f"bad label at {at}: {line!r}"
        at = match.end()
        value = []
        while line[at] != '"':
            if line[at] == "\\":
                escape = line[at : at + 2]
                assert escape in UNESCAPE, f"bad escape {escape!r}: {line!r}"
                value.append(UNESCAPE[escape])
                at += 2
            else:
                assert line[at] != "\n"
                value.append(line[at])
                at += 1
        assert match.group(1) not in labels, f"repeated label: {line!r}"
        labels[match.group(1)] = "".join(value)
        at += 1
        if line[at] == ",":
            at += 1
    return labels, at + 1


def parse_exposition(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """metric name -> [(labels, value)]; fails on any line that is not valid text format."""
    assert text.endswith("\n")
    families: dict[str, list] = {}
    types: dict[str, str] = {}
    helps: set[str] = set()
    for line in text[:-1].split("\n"):
        if line.startswith("#"):
            if line.startswith("# HELP "):
                match = HELP_LINE.fullmatch(line)
                assert match and match.group(1) not in helps, line
                helps.add(match.group(1))
            elif line.startswith("# TYPE "):
                match = TYPE_LINE.fullmatch(line)
                assert match and match.group(1) not in types, line
                assert match.group(1) not in families, f"TYPE after samples: {line}"
                types[match.group(1)] = match.group(2)
                families[match.group(1)] = []
            continue
        head = SAMPLE_HEAD.match(line)
        assert head, f"not a sample: {line!r}"
        name, at = head.group(1), head.end()
        labels = {}
        if head.group(2):
            labels, at = parse_labels(line, at)
        tail = SAMPLE_TAIL.fullmatch(line, at)
        assert tail, f"bad value: {line!r}"
        assert name in types, f"sample without TYPE: {line!r}"
        assert labels not in [seen for seen, _value in families[name]], f"duplicate: {line!r}"
        families[name].append((labels, float(tail.group(1))))
    assert set(types) == helps
    return families


def value_of(families, name: str, **labels) -> float:
    [value] = [value for seen, value in families[name] if seen == labels]
    return value


def test_the_parser_rejects_what_is_not_text_format():
    for bad in (
        "a 1\n",  # no TYPE
        '# TYPE a gauge\na{x="1"} one\n',
        '# TYPE a gauge\na{x="un"escaped"} 1\n',
        "# TYPE a gauge\n# TYPE a gauge\n",
        "# TYPE a gauge\na 1",
    ):
        with pytest.raises(AssertionError):
            parse_exposition(bad)


# -- data --------------------------------------------------------------------------------------


@pytest.fixture
def data(tenant, other_tenant, users):
    now = datetime.now(UTC).replace(microsecond=0)
    entries = add_certificates(tenant, [now - DAY, now + 3 * DAY, now + 45 * DAY, now + 400 * DAY])
    [odd] = add_certificates(tenant, [now + 20 * DAY], prefix="odd")
    odd.alias = 'we"ird\\al\nias'
    odd.save()
    [sap] = add_certificates(
        tenant, [now + 10 * DAY], prefix="sap_cpi", owner=Owner.SAP, key_pair=True
    )
    pending = add_pending(sap)
    add_certificates(other_tenant, [now + 5 * DAY], prefix="b")
    add_flow(tenant, "Orders", restart=True)
    add_flow(tenant, "Invoices", restart=False)
    add_flow(other_tenant, "Hidden", restart=True)
    ScanRun.objects.create(
        started_at=now - 3 * DAY, finished_at=now - 3 * DAY + timedelta(seconds=5), as_of=now
    )
    ScanRun.objects.create(
        started_at=now - 2 * DAY,
        finished_at=now - 2 * DAY + timedelta(seconds=7),
        as_of=now,
        failed=1,
    )
    ScanRun.objects.create(started_at=now - DAY, as_of=now)  # still running or died
    return {"entries": entries, "odd": odd, "sap": sap, "pending": pending, "now": now}


def bearer(token: str) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}")


def test_the_url_is_documented_and_stable():
    assert reverse("metrics") == "/metrics"


def test_a_scraper_with_the_token_sees_every_tenant_and_correct_values(data, settings):
    settings.METRICS_TOKEN = TOKEN
    response = bearer(TOKEN).get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    families = parse_exposition(response.content.decode())

    expiry = families["keystore_entry_expiry_timestamp_seconds"]
    assert len(expiry) == 7
    for entry in data["entries"]:
        assert (
            value_of(
                families,
                "keystore_entry_expiry_timestamp_seconds",
                tenant="tenant-a",
                alias=entry.alias,
                type="certificate",
                owner="tenant",
            )
            == entry.valid_until.timestamp()
        )
    assert (
        value_of(
            families,
            "keystore_entry_expiry_timestamp_seconds",
            tenant="tenant-a",
            alias='we"ird\\al\nias',
            type="certificate",
            owner="tenant",
        )
        == data["odd"].valid_until.timestamp()
    )

    states = {
        (labels["tenant"], labels["state"]): value for labels, value in families["keystore_entries"]
    }
    assert states == {
        ("tenant-a", "expired"): 1,
        ("tenant-a", "within_7_days"): 1,
        ("tenant-a", "within_30_days"): 2,
        ("tenant-a", "within_90_days"): 1,
        ("tenant-a", "later"): 1,
        ("tenant-b", "expired"): 0,
        ("tenant-b", "within_7_days"): 1,
        ("tenant-b", "within_30_days"): 0,
        ("tenant-b", "within_90_days"): 0,
        ("tenant-b", "later"): 0,
    }
    assert value_of(families, "renewals_pending_sap_keys", tenant="tenant-a") == 1
    assert value_of(families, "renewals_pending_sap_keys", tenant="tenant-b") == 0
    assert (
        value_of(
            families,
            "renewals_pending_auto_activation_timestamp_seconds",
            tenant="tenant-a",
            alias=data["sap"].alias,
        )
        == data["pending"].auto_activation_at.timestamp()
    )
    [(labels, last_scan)] = families["renewals_last_successful_scan_timestamp_seconds"]
    assert labels == {}
    assert last_scan == (data["now"] - 3 * DAY + timedelta(seconds=5)).timestamp()
    assert value_of(families, "whereused_flows_restart_required", tenant="tenant-a") == 1
    assert value_of(families, "whereused_flows_restart_required", tenant="tenant-b") == 1


def test_the_token_may_come_from_the_environment(data, monkeypatch, settings):
    if hasattr(settings, "METRICS_TOKEN"):
        del settings.METRICS_TOKEN
    monkeypatch.setenv("METRICS_TOKEN", TOKEN)
    assert bearer(TOKEN).get("/metrics").status_code == 200
    assert bearer(TOKEN + "x").get("/metrics").status_code == 403


def test_who_may_read_the_metrics(data, users, settings):
    settings.METRICS_TOKEN = TOKEN
    anonymous = Client().get("/metrics")
    assert anonymous.status_code == 401
    assert anonymous["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert Client(HTTP_AUTHORIZATION="Basic dXNlcjpwdw==").get("/metrics").status_code == 401
    assert bearer("wrong-token").get("/metrics").status_code == 403
    assert bearer(TOKEN[:-1]).get("/metrics").status_code == 403
    assert bearer(TOKEN).post("/metrics").status_code == 405

    not_staff = make_user("customer")
    not_staff.is_staff = False
    not_staff.save()
    assert client_for(not_staff).get("/metrics").status_code == 403

    reader = client_for(users["ReadOnly"]).get("/metrics")
    assert reader.status_code == 200
    families = parse_exposition(reader.content.decode())
    tenants = {labels.get("tenant") for family in families.values() for labels, _v in family}
    assert tenants == {"tenant-a", None}
    assert len(families["keystore_entry_expiry_timestamp_seconds"]) == 6

    nobody = parse_exposition(client_for(users["none"]).get("/metrics").content.decode())
    assert nobody["keystore_entry_expiry_timestamp_seconds"] == []
    assert len(nobody["renewals_last_successful_scan_timestamp_seconds"]) == 1


def test_without_a_configured_token_no_bearer_is_accepted(data, settings, monkeypatch):
    settings.METRICS_TOKEN = ""
    monkeypatch.delenv("METRICS_TOKEN", raising=False)
    assert bearer("anything").get("/metrics").status_code == 403


def test_no_successful_scan_leaves_the_timestamp_absent(db, settings):
    settings.METRICS_TOKEN = TOKEN
    families = parse_exposition(bearer(TOKEN).get("/metrics").content.decode())
    assert families["renewals_last_successful_scan_timestamp_seconds"] == []


def test_label_values_and_help_are_escaped():
    family = metrics.Family("x_total", "line one\nback\\slash", samples=[])
    family.add(1.5, alias='a"b\\c\nd')
    text = metrics.render([family])
    assert text == (
        "# HELP x_total line one\\nback\\\\slash\n"
        "# TYPE x_total gauge\n"
        'x_total{alias="a\\"b\\\\c\\nd"} 1.5\n'
    )
    assert parse_exposition(text)["x_total"] == [({"alias": 'a"b\\c\nd'}, 1.5)]
    assert math.isclose(float(metrics.format_value(1767225600.25)), 1767225600.25)


def scrape_queries() -> int:
    client = bearer(TOKEN)
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/metrics").status_code == 200
    return len(queries)


def test_the_query_count_does_not_grow(data, tenant, other_tenant, settings):
    settings.METRICS_TOKEN = TOKEN
    small = scrape_queries()
    now = data["now"]
    for target in (tenant, other_tenant):
        for entry in add_certificates(
            target,
            [now + n * DAY for n in range(5, 15)],
            prefix="sap_x",
            owner=Owner.SAP,
            key_pair=True,
        ):
            add_pending(entry)
        add_certificates(target, [now + n * 9 * DAY for n in range(-5, 40)], prefix="many")
        add_flow(target, "more", restart=True)
        add_audit(target, 5)
    assert scrape_queries() == small
