"""The TLS connectivity test as one operation, and adding a server's root to the keystore.

`run_connectivity_test` is the only way a test runs: the admin page and the `connectivity_test`
command call it. It checks the permission and every input before any connection is made (a
refused input raises ConnectivityError and records nothing: only attempted tests are recorded),
holds one of the limited test slots (limits.py), opens the chosen key in memory, runs
`renewals.tlsprobe.probe` (which refuses loopback, link-local, metadata and unspecified addresses
unless CONNECTIVITY_ALLOWED_NETWORKS allows them, before any socket is opened; that refusal records
nothing either) and records the run. The test's timeout is its whole deadline, at most
tlsprobe.MAX_TIMEOUT, well inside a web worker's time.

`add_server_root_to_keystore` is the only way a certificate from a test result gets into the
keystore; it goes through keystore.services.import_certificate (its checks and audit record).
"""

from __future__ import annotations

import base64
import hashlib
import re
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import datetime
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from django.db.models import Q
from django.utils import timezone

from keystore import crypto, permissions
from keystore.audit import actor_label
from keystore.models import EntryType, KeyMaterial, KeystoreEntry, Owner, Tenant
from keystore.sealing import SealingError
from keystore.services import KeystoreError, import_certificate, validate_alias
from renewals.connectivity import conf, limits
from renewals.connectivity import probe as tlsprobe
from renewals.connectivity.models import ConnectivityTestRun, KeyUsed
from renewals.models import PendingSapKey

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from keystore.audit import Actor

DEFAULT_TIMEOUT = 10.0


class ConnectivityError(ValueError):
    """The test (or the addition of a root) was refused before anything happened; the message is
    meant for the operator and names no secret."""


def _client_entry(tenant: Tenant, alias: str) -> KeystoreEntry:
    try:
        # Owner SAP: the reserved prefixes are exactly the aliases a renewal test is about.
        validate_alias(alias, owner=Owner.SAP)
    except KeystoreError as error:
        raise ConnectivityError(str(error))
    entry = KeystoreEntry.objects.for_tenant(tenant).filter(alias=alias).first()
    if entry is None:
        raise ConnectivityError(f"There is no entry with alias {alias!r} in tenant {tenant.slug}.")
    if entry.entry_type != EntryType.KEY_PAIR or not entry.has_private_key:
        raise ConnectivityError(
            f"{alias!r} is a trusted certificate without a private key; choose a key pair to "
            "authenticate with a client certificate."
        )
    return entry


def _trusted_certificates(tenant: Tenant) -> list[x509.Certificate]:
    """Every certificate of the tenant's certificate entries (their whole chains), once each.

    Key pairs are not trust anchors: a tenant's own client certificate says nothing about which
    servers it trusts.
    """
    seen: set[bytes] = set()
    trusted = []
    for entry in KeystoreEntry.objects.for_tenant(tenant).certificates().only("chain_pem"):
        for cert in entry.certificate_chain():
            fingerprint = cert.fingerprint(hashes.SHA256())
            if fingerprint not in seen:
                seen.add(fingerprint)
                trusted.append(cert)
    return trusted


def _chain_rows(chain: list[tlsprobe.ServerCertificate]) -> list[dict[str, str | bool]]:
    return [
        {
            "subject": cert.subject,
            "issuer": cert.issuer,
            "not_before": cert.not_before.isoformat(),
            "not_after": cert.not_after.isoformat(),
            "fingerprint_sha256": cert.fingerprint_sha256,
            "self_signed": cert.self_signed,
            "der_b64": base64.b64encode(cert.der).decode("ascii"),
        }
        for cert in chain
    ]


def _client_material(
    tenant: Tenant, alias: str, include_pending: bool
) -> tuple[crypto.PrivateKey | None, list[x509.Certificate] | None, KeyUsed, str]:
    """(key, chain, key used, fingerprint) of the key pair `alias`, or of its new SAP key."""
    if not alias:
        return None, None, KeyUsed.NONE, ""
    entry = _client_entry(tenant, alias)
    material: KeyMaterial = entry
    key_used = KeyUsed.CURRENT
    if include_pending:
        pending = PendingSapKey.objects.filter(entry=entry).first()
        if pending is not None:
            material, key_used = pending, KeyUsed.PENDING
    try:
        # In memory only; tlsprobe hands it to OpenSSL through an encrypted one-time file.
        key = material.open_key_pair_key()
    except SealingError as error:
        raise ConnectivityError(f"The private key of {alias!r} cannot be opened: {error}")
    # The whole chain is sent: leaf and intermediates.
    return key, material.certificate_chain(), key_used, material.fingerprint_sha256


def run_connectivity_test(
    tenant: Tenant,
    host: str,
    port: int,
    *,
    alias: str = "",
    include_pending: bool = False,
    verify_server: bool = True,
    use_system_trust: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    actor: Actor = None,
) -> ConnectivityTestRun:
    """Handshake with host:port (SNI = host), optionally with the key pair `alias` (its new SAP
    key if `include_pending` and one is waiting), and record what happened.

    Raises ConnectivityError, without connecting or recording, for a missing permission, bad
    input, a refused address or a reached limit. Network and TLS failures are not errors: they
    are the recorded outcome. Call it outside a transaction, so that the slot it holds while the
    test runs counts for every worker.
    """
    permissions.require_of_actor(
        actor, permissions.READ_CREDENTIALS, tenant, ConnectivityError, "run connectivity tests"
    )
    try:
        tlsprobe.validate_target(host, port, timeout)
    except ValueError as error:
        raise ConnectivityError(str(error))
    if include_pending and not alias:
        raise ConnectivityError("Choose an alias to test its new SAP key.")
    allowed_networks = conf.allowed_networks()
    key, chain, key_used, key_fingerprint = _client_material(tenant, alias, include_pending)
    trusted = _trusted_certificates(tenant) if verify_server else []
    use_system_trust = use_system_trust and verify_server
    try:
        with limits.claim_slot(actor):
            started_at = timezone.now()
            try:
                result = tlsprobe.probe(
                    host,
                    port,
                    timeout=timeout,
                    client_key=key,
                    client_chain=chain,
                    verify_server=verify_server,
                    trusted=trusted,
                    use_system_trust=use_system_trust,
                    allowed_networks=allowed_networks,
                )
            except ValueError as error:  # a refused address, or a key not matching its chain
                raise ConnectivityError(str(error))
            # Recorded while the slot is held: the per-minute count sees either the slot or
            # the record, never neither.
            run = _run_record(
                tenant,
                actor,
                started_at,
                host,
                port,
                timeout,
                verify_server,
                use_system_trust,
                alias,
                include_pending,
                key_used,
                key_fingerprint,
                result,
            )
            run.save()
            return run
    except limits.LimitReached as error:
        raise ConnectivityError(str(error))


def _run_record(
    tenant: Tenant,
    actor: Actor,
    started_at: datetime,
    host: str,
    port: int,
    timeout: float,
    verify_server: bool,
    use_system_trust: bool,
    alias: str,
    include_pending: bool,
    key_used: str,
    key_fingerprint: str,
    result: tlsprobe.ProbeResult,
) -> ConnectivityTestRun:
    """The unsaved record of one attempted test."""
    return ConnectivityTestRun(
        tenant=tenant,
        actor=actor,
        actor_label=actor_label(actor),
        started_at=started_at,
        host=host,
        port=port,
        timeout=timeout,
        verify_server=verify_server,
        use_system_trust=use_system_trust,
        alias=alias,
        include_pending=include_pending,
        key_used=key_used,
        key_fingerprint=key_fingerprint,
        outcome=result.outcome.value,
        message=result.message,
        tls_version=result.tls_version,
        cipher=result.cipher,
        server_chain=_chain_rows(result.server_chain),
        client_certificate_requested=result.client_certificate_requested,
        acceptable_ca_names=result.acceptable_ca_names,
        client_certificate_sent=result.client_certificate_sent,
        client_certificate_accepted=result.client_certificate_accepted,
        elapsed_ms=result.elapsed_ms,
    )


# -- many tests at once (renewal plans) ------------------------------------------------------


def run_connectivity_tests(
    tenant: Tenant,
    targets: list[tuple[str, int]],
    *,
    alias: str,
    include_pending: bool,
    workers: int,
    timeout: float = DEFAULT_TIMEOUT,
    actor: Actor = None,
) -> list[ConnectivityTestRun | str]:
    """The same test against many (host, port) targets with one key, in parallel: per target
    its recorded run, or why it was refused before connecting (an invalid or refused address).

    Under the limits of #9: a user's batch runs on as many slots as it can claim (at most
    CONNECTIVITY_MAX_CONCURRENT_PER_USER, held for the whole batch) and counts against the
    per-minute limit as a whole, so a batch larger than that is refused. The key and the
    trusted certificates are read once; the handshakes run in `workers` threads that touch no
    database (tlsprobe is pure), and the runs are recorded together at the end. Call it outside
    a transaction, like run_connectivity_test.
    """
    permissions.require_of_actor(
        actor, permissions.READ_CREDENTIALS, tenant, ConnectivityError, "run connectivity tests"
    )
    if not targets:
        return []
    allowed_networks = conf.allowed_networks()
    key, chain, key_used, key_fingerprint = _client_material(tenant, alias, include_pending)
    trusted = _trusted_certificates(tenant)

    def one(target: tuple[str, int]) -> tuple[datetime, tlsprobe.ProbeResult | str]:
        started_at = timezone.now()
        try:
            return started_at, tlsprobe.probe(
                target[0],
                target[1],
                timeout=timeout,
                client_key=key,
                client_chain=chain,
                trusted=trusted,
                allowed_networks=allowed_networks,
            )
        except ValueError as error:
            return started_at, str(error)

    with ExitStack() as slots:
        if actor is not None:
            workers = min(workers, _claim_batch_slots(slots, actor, len(targets)))
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(targets)))) as pool:
            outcomes = list(pool.map(one, targets))
        answers: list[ConnectivityTestRun | str] = []
        records = []
        for (host, port), (started_at, outcome) in zip(targets, outcomes, strict=True):
            if isinstance(outcome, str):
                answers.append(outcome)
                continue
            record = _run_record(
                tenant,
                actor,
                started_at,
                host,
                port,
                timeout,
                True,
                False,
                alias,
                include_pending,
                key_used,
                key_fingerprint,
                outcome,
            )
            records.append(record)
            answers.append(record)
        # Recorded while the slots are held, as run_connectivity_test does.
        ConnectivityTestRun.objects.bulk_create(records)
    return answers


def _claim_batch_slots(slots: ExitStack, actor: User, tests: int) -> int:
    """Claim as many of the user's slots as they may hold (at least one; ConnectivityError when
    none is free or the batch exceeds the per-minute limit); how many were claimed."""
    limit = conf.tests_per_minute()
    recent = ConnectivityTestRun.objects.filter(
        actor=actor, started_at__gte=timezone.now() - limits.RATE_WINDOW
    ).count()
    if recent + tests > limit:
        raise ConnectivityError(
            f"{tests} connectivity tests now would make more than the {limit} a user may start "
            "within a minute; wait a minute, or run them from the command line "
            "(probe_backends)."
        )
    claimed = 0
    try:
        for _ in range(conf.max_concurrent_per_user()):
            slots.enter_context(limits.claim_slot(actor))
            claimed += 1
    except limits.LimitReached as error:
        if not claimed:
            raise ConnectivityError(str(error))
    return claimed


# -- adding the server's root ----------------------------------------------------------------

_HEX = re.compile(r"[^0-9A-F]")


def normalized_fingerprint(text: str) -> str:
    """A fingerprint as typed (ab:cd.., ABCD.., AB CD ..) in the stored form AB:CD:..."""
    digits = _HEX.sub("", (text or "").upper())
    return ":".join(digits[i : i + 2] for i in range(0, len(digits), 2))


def trusted_aliases(tenant: Tenant | int, fingerprints: list[str]) -> dict[str, str]:
    """SHA-256 fingerprint -> alias of the certificate entry that trusts it already (as its
    certificate or as the root of its chain), for the given fingerprints; one query."""
    found: dict[str, str] = {}
    rows = (
        KeystoreEntry.objects.for_tenant(tenant)
        .certificates()
        .filter(
            Q(fingerprint_sha256__in=fingerprints) | Q(root_fingerprint_sha256__in=fingerprints)
        )
        .order_by("alias")
        .values_list("alias", "fingerprint_sha256", "root_fingerprint_sha256")
    )
    for alias, own, root in rows:
        for fingerprint in (own, root):
            if fingerprint in fingerprints:
                found.setdefault(fingerprint, alias)
    return found


def root_index(run: ConnectivityTestRun) -> int | None:
    """The position of the self-signed root in the server's chain, if the server sent it."""
    for index, cert in enumerate(run.server_chain):
        if cert.get("self_signed"):
            return index
    return None


def add_server_root_to_keystore(
    run: ConnectivityTestRun,
    index: int,
    alias: str,
    confirmed_fingerprint: str,
    *,
    actor: Actor = None,
) -> KeystoreEntry:
    """Add the root certificate the server sent in `run` as a trusted certificate `alias`.

    The caller confirms the root's SHA-256 fingerprint (compared with the operator's out-of-band
    knowledge); a different fingerprint is refused, so a confirmation given for one certificate
    never adds another.
    """
    tenant = run.tenant
    permissions.require_of_actor(
        actor, permissions.DEPLOY, tenant, ConnectivityError, "add certificates to the keystore"
    )
    der = run.server_certificate_der(index) if isinstance(index, int) else None
    if der is None:
        raise ConnectivityError("The server's chain in this test has no such certificate.")
    stored = run.server_chain[index]
    if not stored.get("self_signed"):
        raise ConnectivityError(
            "Only the root certificate (self-signed, at the top of the chain) can be added here."
        )
    # The stored row is the only source; make sure it still is what was shown and confirmed.
    actual = normalized_fingerprint(hashlib.sha256(der).hexdigest())
    if actual != stored["fingerprint_sha256"]:
        raise ConnectivityError("The stored certificate is damaged; run the test again.")
    if normalized_fingerprint(confirmed_fingerprint) != actual:
        raise ConnectivityError(
            "The confirmed fingerprint does not match the root certificate's SHA-256 "
            "fingerprint; nothing was added."
        )
    existing = trusted_aliases(tenant, [actual]).get(actual)
    if existing is not None:
        raise ConnectivityError(
            f"This root certificate is in the keystore of {tenant.slug} already, as {existing!r}."
        )
    try:
        return import_certificate(tenant, alias, der, actor=actor)
    except KeystoreError as error:
        raise ConnectivityError(str(error))
