"""Scenario 3: where-used at 100 and at 5,000 imported flows.

`prepare` writes the flow export ZIPs once, in a process of its own: each flow has receiver
channels (SOAP and OData with client certificates, HTTP with Basic), a sender channel, a PKCS#7
signer, an XML verifier, a router, a mapping, content modifiers, a script step, a Groovy script
naming a key and an externalized alias in parameters.prop, with the many other properties real
exports carry (about 85 KB of .iflw per flow). The looked-up alias
(sap_cloudintegrationcertificate) is used by the same 20 flows in both sets, and the same 5 flows
hold a client-certificate channel without an alias ("may use"); every other flow uses other
aliases. So the answer is the same at both sizes and only the size of the index differs.

Each size runs in a process of its own (peak memory is per process) on its own database:
* the import through `renewals.whereused.importing.import_flow_exports`, files opened lazily,
  alternating chunk by chunk with a bare parse of the same files (open the ZIP, parse each .iflw
  with ElementTree), the floor. Both are warmed up first on a few files. Each timed section
  starts from a collected heap (gc.collect, untimed), so it pays for the garbage collections its
  own allocations trigger: a full collection walks the whole Django process (tens of ms) and
  would otherwise land on whichever side happens to cross the threshold. The small set is
  imported `small_passes` times, each pass into a fresh tenant: one chunk is one sample.
  The import pauses Python's cyclic collector for each group of files (renewals/whereused/
  gcpause.py); the bare parse, written as anyone would, does not. So a third side times the bare
  parse with the collector paused too, and a row without a target shows that ratio: how much of
  the margin the pause buys and how much is ours;
* in the large process, the where-used lookup `where_used(tenant, alias)` in the large tenant
  alternating with the same lookup in a second tenant holding the small set: time and queries.
"""

from __future__ import annotations

import gc
import statistics
import uuid
import zipfile
from datetime import timedelta
from pathlib import Path
from xml.etree import ElementTree as ET

from bench.common import (
    Material,
    SapPki,
    ScenarioResult,
    bulk_insert,
    count_queries,
    ms,
    peak_rss_mb,
    ratio,
    refresh_statistics,
    timed,
)

NAME = "whereused"
SIZES = {
    "full": {"small": 100, "large": 5_000, "lookup_repeat": 25, "small_passes": 5},
    "quick": {"small": 100, "large": 500, "lookup_repeat": 15, "small_passes": 5},
}
TARGET_IMPORT = 1.5
TARGET_LOOKUP = 1.5
TARGET_MEMORY = 1.2
ALIAS = "sap_cloudintegrationcertificate"
USING_FLOWS = 20  # flows 0..19 use ALIAS
MAY_USE_FLOWS = range(20, 25)  # flows with a client-certificate channel naming no alias
POOL = 500  # other aliases, shared by the other flows
SCRIPT = """\
import com.sap.gateway.ip.core.customdev.util.Message
import com.sap.it.api.ITApiFactory
import com.sap.it.api.keystore.KeystoreService

def Message processData(Message message) {
    def keystore = ITApiFactory.getService(KeystoreService.class, null)
    def key = keystore.getKey("%s")
    message.setProperty("signer", key.toString())
    return message
}
"""


def parts(sizes: dict) -> list[str]:
    return ["small", "large"]


def _pool(number: int) -> str:
    return f"partner_key_{number % POOL:03d}"


# What real exports carry besides the key settings: dozens of properties per channel and step
# (about 85 KB of .iflw per flow here), so the XML is as heavy as in a real tenant's exports.
CHANNEL_EXTRA = {
    "MessageProtocolVersion": "1.11.0",
    "TransportProtocolVersion": "1.11.0",
    "serviceDefinition": "WSDL",
    "urlWsdl": "/wsdl/OrdersService.wsdl",
    "service": "p1:OrdersService",
    "endpoint": "p1:OrdersServicePort",
    "operationName": "p1:CreateOrder",
    "proxyType": "default",
    "locationId": "",
    "requestTimeout": "60000",
    "compressMessage": "false",
    "allowChunking": "true",
    "CleanupHeaders": "true",
    "returnHttpResponseCodeAsHeader": "false",
    "SapRmMessageIdDetermination": "Reuse",
    "WSAddressing": "false",
    "throwExceptionOnFault": "true",
    "useCustomHeaderPattern": "false",
    "messageIDValidation": "false",
    "retryIteration": "1",
    "retryInterval": "5",
    "exponentialBackoff": "false",
    "maximumAttachmentSize": "40",
    "processingSettings": "WSStandard",
    "payloadValidation": "false",
    "allowedRequestHeaders": "SAP_ApplicationID|SAP_Sender|SAP_Receiver|Content-Type",
    "allowedResponseHeaders": "*",
}
HEADERS = "".join(
    f"<row><cell id='Action'>Create</cell><cell id='Type'>constant</cell>"
    f"<cell id='Value'>value-{n}</cell><cell id='Default'></cell>"
    f"<cell id='Name'>X-Bench-Header-{n}</cell><cell id='Datatype'>java.lang.String</cell></row>"
    for n in range(6)
)
STEP_EXTRA = {
    "bodyType": "expression",
    "propertyTable": HEADERS,
    "headerTable": HEADERS,
    "wrapContent": "${property.order_payload}",
}


def _steps(number: int) -> list:
    from tests.renewals.flowfactory import step

    steps = [
        step("CallActivity_1", "Sign order", "PKCS7Signer", {"privateKeyAlias": _pool(number * 3)}),
        step(
            "CallActivity_2", "Verify reply", "XMLVerifier", {"publicKeyAlias": _pool(number * 5)}
        ),
        step("CallActivity_3", "Custom signing", "GroovyScript", {"script": "Sign.groovy"}),
        step(
            "CallActivity_4",
            "Route by region",
            "ExclusiveGateway",
            {f"condition_{n}": f"${{header.region}} = 'R{n}'" for n in range(8)},
        ),
        step(
            "CallActivity_5",
            "Map to IDoc",
            "MessageMapping",
            {"mappinguri": "dir://mmap/src/main/resources/mapping/Orders.mmap"},
        ),
    ]
    steps += [
        step(f"CallActivity_{n}", f"Set headers {n}", "Enricher", STEP_EXTRA) for n in range(6, 14)
    ]
    return steps


def flow_export(number: int) -> bytes:
    """Flow export ZIP number `number` (deterministic)."""
    from tests.renewals.flowfactory import channel, flow_zip, iflw

    cert = {"authentication": "Client Certificate"}
    erp_alias = ALIAS if number < USING_FLOWS else _pool(number)
    odata = {"authenticationMethod": "Client Certificate"}
    if number not in MAY_USE_FLOWS:
        odata["odataCertAuthPrivateKeyAlias"] = _pool(number * 7 + 1)
    xml = iflw(
        channel(
            "MessageFlow_1",
            "Orders to ERP",
            "SOAP",
            props={**CHANNEL_EXTRA, **cert, "privateKeyAlias": "{{erp_alias}}"},
            receiver="ERP_PROD",
            address=f"https://erp.example:443/sap/bc/srt/orders/{number}",
        ),
        channel(
            "MessageFlow_2",
            "Business partners from S4",
            "OData",
            props={**CHANNEL_EXTRA, **odata},
            receiver="S4_ODATA",
            address="https://s4.example/sap/opu/odata/sap/API_BUSINESS_PARTNER",
        ),
        channel(
            "MessageFlow_3",
            "Legacy HTTP",
            "HTTP",
            props={
                **CHANNEL_EXTRA,
                "authenticationMethod": "Basic",
                "credentialName": "legacy_user",
            },
            receiver="LEGACY",
            address="https://legacy.example/in",
        ),
        channel(
            "MessageFlow_4",
            "From shop",
            "HTTPS",
            direction="Sender",
            props={**CHANNEL_EXTRA, "senderAuthType": "RoleBased", "userRole": "ESBMessaging.send"},
            receiver="SHOP",
            address=f"/shop/orders/{number}",
        ),
        *_steps(number),
    )
    return flow_zip(
        f"com.bench.flow{number:05d}",
        xml,
        parameters={"erp_alias": erp_alias, "erp_timeout": "60000"},
        scripts={"Sign.groovy": SCRIPT % _pool(number * 11 + 2)},
        bundle_name=f"Bench flow {number:05d}",
    )


def _flow_dir(workdir: Path) -> Path:
    return workdir / "flows"


def prepare(sizes: dict, workdir: Path) -> None:
    directory = _flow_dir(workdir)
    directory.mkdir(exist_ok=True)
    for number in range(sizes["large"]):
        (directory / f"flow-{number:05d}.zip").write_bytes(flow_export(number))


def _paths(workdir: Path, count: int) -> list[Path]:
    paths = sorted(_flow_dir(workdir).glob("flow-*.zip"))[:count]
    if len(paths) != count:
        raise RuntimeError(f"{len(paths)} flow files prepared, {count} needed")
    return paths


def bare_parse(paths: list[Path]) -> int:
    """The floor: open each ZIP and parse its .iflw documents with ElementTree."""
    elements = 0
    for path in paths:
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                if name.endswith(".iflw"):
                    elements += len(ET.fromstring(archive.read(name)))  # noqa: S314
    return elements


def _tenant_with_keystore(slug: str = "whereused"):
    """A tenant whose keystore holds the looked-up alias and the pool of other aliases."""
    from django.utils import timezone

    from keystore.models import EntryType, KeystoreEntry, Owner, Tenant

    tenant = Tenant.objects.create(name=f"Where-used tenant {slug}", slug=slug)
    pki = SapPki.make("Where-used")
    sap = pki.key_pair(ALIAS)
    partner = Material.of([pki.root], None)
    now = timezone.now()
    rows = []
    for number, (alias, owner, material) in enumerate(
        [(ALIAS, Owner.SAP, sap)]
        + [(_pool(number), Owner.TENANT, partner) for number in range(POOL)]
    ):
        entry = KeystoreEntry(
            tenant=tenant,
            alias=alias,
            owner=owner,
            entry_type=EntryType.KEY_PAIR if material.key else EntryType.CERTIFICATE,
            material_id=uuid.uuid4(),
        )
        material.fill(
            entry,
            serial=number + 1,
            valid_from=now - timedelta(days=10),
            valid_until=now + timedelta(days=300),
        )
        rows.append(entry)
    bulk_insert(KeystoreEntry, rows)
    return tenant


CHUNK = 100  # files per alternation of bare parse and import
WARM_UP = 10  # files parsed and imported (into a scratch tenant) before anything is timed


def _collected_and_timed(call) -> tuple[float, object]:
    gc.collect()
    return timed(call)


def _paused_bare_parse(paths: list[Path]) -> int:
    from renewals.whereused.gcpause import collector_paused

    with collector_paused():
        return bare_parse(paths)


def _import_against_parse(tenant, paths: list[Path]) -> tuple[float, float, float, int]:
    """Import the files, alternating chunk by chunk with a bare parse of the same chunk (and the
    same parse with the collector paused), so all see the same machine (other processes,
    caches). Returns (import s, parse s, paused parse s, usages)."""
    from renewals.whereused.importing import import_flow_exports

    imported = parsed = paused = 0.0
    usages = 0
    for start in range(0, len(paths), CHUNK):
        chunk = paths[start : start + CHUNK]
        parsed += _collected_and_timed(lambda c=chunk: bare_parse(c))[0]
        paused += _collected_and_timed(lambda c=chunk: _paused_bare_parse(c))[0]
        seconds, outcomes = _collected_and_timed(
            lambda c=chunk: import_flow_exports(tenant, ((path.name, path) for path in c))
        )
        imported += seconds
        failed = [f"{o.name}: {o.message}" for o in outcomes if not o.ok]
        if failed or len(outcomes) != len(chunk):
            raise RuntimeError(f"{len(failed)} flows not imported: {failed[:3]}")
        usages += sum(o.usage_count for o in outcomes)
    return imported, parsed, paused, usages


def _answer(report) -> dict:
    counts = report.counts
    return {
        "uses": counts.uses,
        "may_use": counts.may_use,
        "flows": counts.flows,
        "backends": counts.backends,
    }


def run_part(part: str, sizes: dict, workdir: Path) -> ScenarioResult:
    """Import `sizes[part]` flows (peak memory is read right after); in the large part, also the
    lookup in this tenant against a tenant with the small set, alternating."""
    from renewals.whereused.importing import import_flow_exports
    from renewals.whereused.report import where_used

    count = sizes[part]
    result = ScenarioResult(NAME, dict(sizes))
    paths = _paths(workdir, count)
    for path in paths:  # the files in the page cache for both measurements alike
        path.read_bytes()
    warm_up = paths[:WARM_UP]
    bare_parse(warm_up)
    import_flow_exports(_tenant_with_keystore(f"warm-up-{part}"), ((p.name, p) for p in warm_up))
    imported = parsed = paused = 0.0
    passes = 1 if part == "large" else sizes["small_passes"]
    for number in range(passes):
        tenant = _tenant_with_keystore(f"{part}-{number}")
        pass_imported, pass_parsed, pass_paused, usages = _import_against_parse(tenant, paths)
        imported, parsed = imported + pass_imported, parsed + pass_parsed
        paused += pass_paused
    result.data = {
        "flows": count,
        "passes": passes,
        "usages": usages,
        "parse_s": parsed,
        "paused_parse_s": paused,
        "import_s": imported,
        "peak_rss_after_import_mb": peak_rss_mb(),
    }
    if part != "large":
        return result
    small = _tenant_with_keystore("lookup-small")
    _import_against_parse(small, _paths(workdir, sizes["small"]))
    refresh_statistics()
    lookups: dict[str, list[float]] = {"large": [], "small": []}
    for _ in range(3):  # warm-up
        where_used(tenant, ALIAS), where_used(small, ALIAS)
    for _ in range(sizes["lookup_repeat"]):
        lookups["large"].append(timed(lambda: where_used(tenant, ALIAS))[0])
        lookups["small"].append(timed(lambda: where_used(small, ALIAS))[0])
    queries_large, report_large = count_queries(lambda: where_used(tenant, ALIAS))
    queries_small, report_small = count_queries(lambda: where_used(small, ALIAS))
    result.data["lookup"] = {
        "large_s": statistics.median(lookups["large"]),
        "small_s": statistics.median(lookups["small"]),
        "large_queries": queries_large,
        "small_queries": queries_small,
        "large_answer": _answer(report_large),
        "small_answer": _answer(report_small),
    }
    return result


def combine(sizes: dict, parts: dict[str, dict]) -> ScenarioResult:
    result = ScenarioResult(NAME, dict(sizes))
    small, large = parts["small"]["data"], parts["large"]["data"]
    for data in (small, large):
        flows = data["flows"] * data.get("passes", 1)
        result.add(
            f"import {data['flows']} flows vs bare XML parse"
            + (f" ({data['passes']} passes)" if data.get("passes", 1) > 1 else ""),
            round(data["import_s"], 2),
            "s",
            baseline=round(data["parse_s"], 2),
            ratio=ratio(data["import_s"], data["parse_s"]),
            target=f"<= {TARGET_IMPORT}x parse",
            passed=data["import_s"] <= TARGET_IMPORT * data["parse_s"],
            note=f"{ms(data['import_s'] / flows)} ms/flow, "
            f"parse {ms(data['parse_s'] / flows)} ms/flow, {data['usages']} usages",
        )
    for data in (small, large):
        result.add(
            f"import {data['flows']} flows vs bare parse, collector paused in both",
            round(data["import_s"], 2),
            "s",
            baseline=round(data["paused_parse_s"], 2),
            ratio=ratio(data["import_s"], data["paused_parse_s"]),
            note="no target: what the import costs beyond the parse once neither pays the "
            "cyclic collector",
        )
    lookup = large["lookup"]
    same = lookup["large_answer"] == lookup["small_answer"]
    result.add(
        f"where-used lookup, {large['flows']} vs {sizes['small']} flows",
        ms(lookup["large_s"]),
        "ms",
        baseline=ms(lookup["small_s"]),
        ratio=ratio(lookup["large_s"], lookup["small_s"]),
        target=f"<= {TARGET_LOOKUP}x",
        passed=lookup["large_s"] <= TARGET_LOOKUP * lookup["small_s"] and same,
        note="answer {uses} uses, {may_use} may use, {flows} flows".format(**lookup["large_answer"])
        + ("" if same else " (DIFFERS from the small set)"),
    )
    result.add(
        f"where-used queries, {large['flows']} vs {sizes['small']} flows",
        lookup["large_queries"],
        "queries",
        baseline=lookup["small_queries"],
        target="same count",
        passed=lookup["large_queries"] == lookup["small_queries"],
    )
    memory_small = small["peak_rss_after_import_mb"]
    memory_large = large["peak_rss_after_import_mb"]
    result.add(
        f"peak RSS importing {large['flows']} vs {small['flows']} flows",
        memory_large,
        "MB",
        baseline=memory_small,
        ratio=ratio(memory_large, memory_small),
        target=f"<= {TARGET_MEMORY}x",
        passed=memory_large <= TARGET_MEMORY * memory_small,
        note="two processes, read right after the import",
    )
    result.peak_rss_mb = max(parts["small"]["peak_rss_mb"], parts["large"]["peak_rss_mb"])
    return result
