"""Scenario 7: probing a renewal plan's backends (issue 17, "Probe before activation"): 50
backends whose servers each take 1 s to answer the handshake, against one such backend.

A tenant has an SAP key pair with a new key waiting in New SAP Keys, flows whose 50 receiver
channels point at `https://127.0.0.1:<port>/` of 50 real TLS servers (bench/slowtls.py, in a
process of their own, each waiting 1 s before it completes the handshake and requiring a client
certificate from the SAP root), and so a renewal plan with 50 backends. A second tenant's plan
has one such backend: the baseline. Both are probed through `renewals.plans.probing.
probe_backends` with the new key, as the `probe_backends` command does (no user: the command line
is not held to a user's connectivity limits), in alternating rounds; every probe must succeed.
The figure is the median of the rounds' ratios (50-backend probe / one-backend probe).

The connectivity test refuses loopback unless CONNECTIVITY_ALLOWED_NETWORKS allows it, so the
scenario allows 127.0.0.1/32, and only that, while it runs. A last row tells what a web user's
probe of the same plan (the admin page's button) meets under the default limits of #9.
"""

from __future__ import annotations

import math
import statistics

from cryptography.hazmat.primitives.serialization import Encoding

from bench.common import SapPki, ScenarioResult, ratio, timed

NAME = "plan_probe"
SIZES = {
    "full": {"backends": 50, "delay": 1.0, "rounds": 7, "warmup": 1},
    "quick": {"backends": 50, "delay": 1.0, "rounds": 3, "warmup": 1},
}
TARGET_RATIO = 3.0
ALIAS = "sap_cloudintegrationcertificate"
LOOPBACK = "127.0.0.1/32"
TIMEOUT = 10.0  # the probe_backends command's default


def _plan(name: str, pki: SapPki, server_root_der: bytes, ports: list[int]):
    """A tenant whose SAP key has a new key waiting and a plan with one backend per port."""
    from keystore import services as keystore_services
    from keystore.models import Tenant
    from renewals.activation import provision_sap_key
    from renewals.plans.models import RenewalPlan
    from renewals.whereused.exportwriter import channel, flow_zip, iflw
    from renewals.whereused.importing import import_flow_exports

    tenant = Tenant.objects.create(name=f"Probe {name}", slug=f"probe-{name}")
    current = pki.key_pair(ALIAS, days=20)
    keystore_services.create_sap_entry(tenant, ALIAS, current.key, current.chain)
    keystore_services.import_certificate(tenant, "backend_root", server_root_der)
    channels = [
        channel(
            f"MessageFlow_{number}",
            f"To backend {number}",
            "SOAP",
            props={"authentication": "Client Certificate", "privateKeyAlias": ALIAS},
            receiver=f"BACKEND_{number:03d}",
            address=f"https://127.0.0.1:{port}/",
        )
        for number, port in enumerate(ports, start=1)
    ]
    [imported] = import_flow_exports(
        tenant, [("com.example.probe.zip", flow_zip("com.example.probe", iflw(*channels)))]
    )
    if not imported.ok:
        raise RuntimeError(f"the flow of {name} was not imported: {imported.message}")
    pending = provision_sap_key(
        tenant, ALIAS, valid_days=385, ca=(pki.issuing_key, [pki.issuing, pki.root])
    )
    plan = RenewalPlan.objects.get(occasion=pending.material_id)
    if plan.backends.count() != len(ports):
        raise RuntimeError(f"the plan of {name} has {plan.backends.count()} backends")
    return tenant


def _probe(tenant, expected: int) -> None:
    from renewals.plans.probing import probe_backends

    report = probe_backends(tenant, ALIAS, timeout=TIMEOUT)
    if len(report.probed) != expected or report.failed:
        failed = report.failed[0].probe_message if report.failed else ""
        raise RuntimeError(
            f"{len(report.succeeded)} of {expected} probes succeeded in {tenant.slug}: {failed}"
        )


def _as_web_user(tenant) -> tuple[str, str]:
    """(value, note) of a probe by an IntegrationDeveloper (the admin page's button) under the
    site's connectivity limits: refused before any connection, or how long it took."""
    from django.contrib.auth import get_user_model

    from keystore import roles
    from renewals.connectivity import conf as connectivity_conf
    from renewals.plans.probing import probe_backends
    from renewals.plans.services import PlanError

    user = get_user_model().objects.create_user("probe-developer", is_staff=True)
    roles.assign_role(user, tenant, "IntegrationDeveloper")
    limits = (
        f"CONNECTIVITY_TESTS_PER_MINUTE={connectivity_conf.tests_per_minute()}, "
        f"CONNECTIVITY_MAX_CONCURRENT_PER_USER={connectivity_conf.max_concurrent_per_user()}"
    )
    try:
        seconds, _ = timed(lambda: probe_backends(tenant, ALIAS, timeout=TIMEOUT, actor=user))
    except PlanError as error:
        return "refused", f"{limits}: {error}"
    return f"{seconds:.1f} s", f"{limits}: ran, on at most the user's concurrent slots"


def run(sizes: dict, workdir=None) -> ScenarioResult:
    from django.test import override_settings

    from bench.slowtls import slow_servers
    from renewals.plans import conf as plan_conf
    from tests.renewals.tlsservers import key_pem, make_server_pki, pem

    result = ScenarioResult(NAME, dict(sizes))
    backends, delay = sizes["backends"], sizes["delay"]
    sap = SapPki.make("Probe")
    server = make_server_pki("Probe backend")  # its leaf is valid for 127.0.0.1
    with (
        slow_servers(
            backends + 1,
            delay,
            chain_pem=pem(*server.chain[:2]).encode("ascii"),
            key_pem=key_pem(server.leaf_key),
            client_cas_pem=pem(sap.root).encode("ascii"),
        ) as ports,
        override_settings(CONNECTIVITY_ALLOWED_NETWORKS=[LOOPBACK]),
    ):
        root_der = server.root.public_bytes(Encoding.DER)
        many = _plan("many", sap, root_der, ports[:backends])
        one = _plan("one", sap, root_der, ports[backends:])
        for _ in range(sizes["warmup"]):
            _probe(one, 1)
            _probe(many, backends)
        singles, wholes = [], []
        for _ in range(sizes["rounds"]):  # alternating, so the machine's drift touches both alike
            singles.append(timed(lambda: _probe(one, 1))[0])
            wholes.append(timed(lambda: _probe(many, backends))[0])
        web_user, web_note = _as_web_user(many)
        workers = plan_conf.probe_workers()

    ratios = [ratio(whole, single) for whole, single in zip(wholes, singles, strict=True)]
    median_ratio = statistics.median(ratios)
    single, whole = statistics.median(singles), statistics.median(wholes)
    waves = math.ceil(backends / workers)
    result.add(
        f"probe_backends, {backends} backends vs 1, handshake after {delay:g} s",
        round(whole, 3),
        "s",
        baseline=round(single, 3),
        ratio=round(median_ratio, 3),
        target=f"<= {TARGET_RATIO:g}x",
        passed=median_ratio <= TARGET_RATIO,
        note=f"median of {len(ratios)} alternating rounds' ratios {ratios}; "
        f"RENEWALS_PLAN_PROBE_WORKERS={workers}: {waves} wave(s) of handshakes",
    )
    result.add(
        f"probe_backends, {backends} backends, as a web user (admin button), default limits",
        web_user,
        target="",
        note=web_note,
    )
    result.data = {
        "one_backend_seconds": singles,
        "all_backends_seconds": wholes,
        "ratios": ratios,
        "workers": workers,
        "web_user": {"value": web_user, "note": web_note},
    }
    return result
