"""Faults injected into the renewal: at every step of an activation, a revert and a scan; a
django-q2 timeout in the middle of a scan; a mail server that fails.

A "step" is every SQL statement the operation sends (transaction control excepted) and every
call that seals or opens a private key, writes the audit record or records a mail. Each
operation is first run once to list its steps (and rolled back), then once per step with a
fault at that step: the fault must roll everything back, to the byte, and send no mail. The
same operation then runs without a fault and does its work once.
"""

from __future__ import annotations

import re
import smtplib
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from django.core import mail
from django.core.mail.backends.base import BaseEmailBackend
from django.db import connection, transaction
from django.utils import timezone
from django_q.exceptions import TimeoutException
from django_q.tasks import async_task

from keystore import sealing, services
from keystore.models import AuditAction, AuditEvent, KeystoreEntry
from renewals import activation, notifications, outbox
from renewals.activation import activate_pending_key, add_back_to_pending
from renewals.models import (
    NotificationKind,
    PendingSapKey,
    SapKeyBackup,
    ScanRun,
    SentNotification,
)
from renewals.outbox import deliver_unsent
from renewals.scan import auto_activate_due
from tests import pki as pki_factory
from tests.hardening.conftest import SAP_ALIAS, renewal_state

EXTRA_ALIASES = ("sap_signing", "hcicertificate_b2b")
TRANSACTION_CONTROL = ("SAVEPOINT", "RELEASE", "ROLLBACK", "BEGIN", "COMMIT")
_TABLE = re.compile(r'\b(?:FROM|INTO|UPDATE)\s+"?(\w+)"?', re.IGNORECASE)


class InjectedFault(Exception):
    """The fault these tests inject; no product code knows it by name."""


@dataclass
class Faults:
    """Counts the steps of an operation while armed and raises at step `target`."""

    target: int | None = None
    armed: bool = False
    steps: list[str] = field(default_factory=list)

    def step(self, name: str) -> None:
        if not self.armed:
            return
        self.steps.append(name)
        if len(self.steps) == self.target:
            raise InjectedFault(f"fault injected at step {self.target}: {name}")

    def run(self, operation, target: int | None):
        self.target, self.armed, self.steps = target, True, []
        try:
            return operation()
        finally:
            self.armed = False


@pytest.fixture
def faults(monkeypatch):
    plan = Faults()

    def wrap(owner, attribute: str, label: str) -> None:
        original = getattr(owner, attribute)

        def wrapper(*args, **kwargs):
            plan.step(label)
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, attribute, wrapper)

    wrap(sealing, "seal", "seal a private key")
    wrap(sealing, "unseal", "open a private key")
    wrap(activation, "record_audit", "write the audit record")
    wrap(notifications, "record_mail", "record the mail")
    wrap(notifications, "deliver_after_commit", "queue the mail for after the commit")

    def sql(execute, statement, params, many, context):
        words = statement.lstrip().split(None, 1)
        if words and words[0].upper() not in TRANSACTION_CONTROL:
            table = _TABLE.search(statement)
            plan.step(f"SQL {words[0].upper()} {table.group(1) if table else ''}".strip())
        return execute(statement, params, many, context)

    with connection.execute_wrapper(sql):
        yield plan


def list_steps(faults: Faults, operation) -> list[str]:
    """The steps of `operation`, from a run that is rolled back. The first run fills caches
    (permissions, content types), so the steps are those of the second."""
    for _warm_up in range(2):
        dry_run = transaction.savepoint()
        faults.run(operation, None)
        transaction.savepoint_rollback(dry_run)
    return faults.steps


def inject_at_every_step(faults: Faults, operation, capture) -> list[str]:
    """Run `operation` once per step with a fault there; each time nothing may change and no
    mail may be queued. Returns the steps."""
    steps = list_steps(faults, operation)
    assert len(steps) >= 5, steps
    mail.outbox.clear()
    for target, name in enumerate(steps, start=1):
        before = renewal_state()
        with capture() as queued, pytest.raises(InjectedFault):
            faults.run(operation, target)
        assert renewal_state() == before, f"step {target} ({name}) left a change behind"
        assert queued == [], f"step {target} ({name}) queued a mail"
    assert mail.outbox == []
    return steps


@pytest.fixture
def admin(users):
    return users["Administrator"]


def test_a_fault_at_any_step_of_an_activation_changes_nothing(
    sap_entry, pending, admin, faults, figures, django_capture_on_commit_callbacks
):
    def activate():
        return activate_pending_key(sap_entry.tenant, SAP_ALIAS, actor=admin)

    steps = inject_at_every_step(faults, activate, django_capture_on_commit_callbacks)
    assert {"seal a private key", "open a private key", "write the audit record"} <= set(steps)
    assert "SQL INSERT renewals_sapkeybackup" in steps
    assert "SQL DELETE renewals_pendingsapkey" in steps
    figures["faults injected: activation"] += len(steps)

    with django_capture_on_commit_callbacks(execute=True):
        result = activate()
    assert result.new_fingerprint == pending.fingerprint_sha256
    assert SapKeyBackup.objects.get().fingerprint_sha256 == sap_entry.fingerprint_sha256
    assert not PendingSapKey.objects.exists()
    assert AuditEvent.objects.filter(action=AuditAction.ACTIVATE).count() == 1
    assert len([m for m in mail.outbox if "was activated" in m.subject]) == 1


def test_a_fault_at_any_step_of_a_revert_changes_nothing(
    sap_entry, pending, provide, admin, faults, figures, django_capture_on_commit_callbacks
):
    activate_pending_key(sap_entry.tenant, SAP_ALIAS, actor=admin)
    backup = SapKeyBackup.objects.get()
    waiting = provide(sap_entry.tenant)  # the revert replaces it: one more step (delete)

    def revert():
        return add_back_to_pending(backup, actor=admin, replace=True)

    steps = inject_at_every_step(faults, revert, django_capture_on_commit_callbacks)
    assert "SQL DELETE renewals_pendingsapkey" in steps
    assert "SQL INSERT renewals_pendingsapkey" in steps
    figures["faults injected: revert"] += len(steps)

    reverted = revert()
    assert reverted.fingerprint_sha256 == backup.fingerprint_sha256
    assert not PendingSapKey.objects.filter(pk=waiting.pk).exists()
    assert SapKeyBackup.objects.get() == backup  # the backup stays as it is


def add_due_keys(tenant, sap_pki, provide, count: int = 2) -> list[str]:
    """`count` more SAP key pairs expiring with sap_entry, each with a new key waiting."""
    for alias in EXTRA_ALIASES[:count]:
        key = pki_factory.make_key("ec")
        leaf = pki_factory.make_cert(
            f"SAP {alias}",
            key,
            sap_pki.inter,
            sap_pki.inter_key,
            not_after=sap_pki.leaf.not_valid_after_utc,
        )
        services.create_sap_entry(tenant, alias, key, [leaf, sap_pki.inter, sap_pki.root])
        provide(tenant, alias)
    return [SAP_ALIAS, *EXTRA_ALIASES[:count]]


def alias_states(tenant, aliases) -> dict[str, str]:
    """Per alias "waiting" (untouched), "activated" (every row of one activation) or a
    description of a partial state."""

    def per_alias(queryset) -> Counter:
        return Counter(queryset.filter(tenant=tenant).values_list("alias", flat=True))

    pending = per_alias(PendingSapKey.objects)
    backups = per_alias(SapKeyBackup.objects)
    audits = per_alias(AuditEvent.objects.filter(action=AuditAction.ACTIVATE))
    mails = per_alias(SentNotification.objects.filter(kind=NotificationKind.ACTIVATED))
    versions = dict(
        KeystoreEntry.objects.filter(tenant=tenant, alias__in=aliases).values_list(
            "alias", "version"
        )
    )
    states = {}
    for alias in aliases:
        facts = (pending[alias], backups[alias], versions[alias], audits[alias], mails[alias])
        states[alias] = {(1, 0, 1, 0, 0): "waiting", (0, 1, 2, 1, 1): "activated"}.get(
            facts, f"partial {facts}"
        )
    return states


def test_a_fault_at_any_step_of_a_scan_leaves_each_key_all_or_nothing(
    sap_entry, sap_pki, provide, pending, expiry, admin, faults, figures
):
    tenant = sap_entry.tenant
    # Two keys keep the run short; the timeout test below has three.
    aliases = add_due_keys(tenant, sap_pki, provide, count=1)
    now = expiry - timedelta(hours=12)

    def scan():
        return auto_activate_due(now)

    steps = list_steps(faults, scan)
    assert steps.count("write the audit record") == 2
    crashed = 0
    for target, name in enumerate(steps, start=1):
        attempt = transaction.savepoint()
        try:
            faults.run(scan, target)
        except InjectedFault:
            crashed += 1  # outside the per-key transactions: the scan stops, like a crash
            # The fault came before its statement reached the database, which is fine; in
            # production (autocommit) nothing else happens, so the test's outer transaction
            # is not to be rolled back either.
            transaction.set_rollback(False)
        states = alias_states(tenant, aliases)
        assert set(states.values()) <= {"waiting", "activated"}, (target, name, states)
        # The retry (the next scan) completes the rest, each key once.
        retry = auto_activate_due(now)
        assert retry.failed == []
        assert set(alias_states(tenant, aliases).values()) == {"activated"}, (target, name)
        transaction.savepoint_rollback(attempt)
    assert 0 < crashed < len(steps)  # both kinds of fault were met
    figures["faults injected: scan of two keys (+ a retry each)"] += len(steps)


def test_a_django_q_timeout_in_the_middle_of_a_scan(
    sap_entry,
    sap_pki,
    provide,
    pending,
    expiry,
    admin,
    monkeypatch,
    django_capture_on_commit_callbacks,
):
    """The real django-q2 mechanism: the worker's SIGALRM handler raises TimeoutException in
    whatever the task is doing; here, in the middle of the second activation."""
    tenant = sap_entry.tenant
    aliases = add_due_keys(tenant, sap_pki, provide)
    now = (expiry - timedelta(hours=12)).isoformat()
    original = activation.record_audit
    calls = []

    def stuck_in_the_second_activation(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == 2:
            time.sleep(30)  # the alarm interrupts this sleep
        return original(*args, **kwargs)

    monkeypatch.setattr(activation, "record_audit", stuck_in_the_second_activation)
    mail.outbox.clear()
    started = time.monotonic()
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(TimeoutException):
        async_task("renewals.tasks.run_auto_activation_scan", now, timeout=1)
    assert time.monotonic() - started < 10
    states = alias_states(tenant, aliases)
    assert sorted(states.values()) == ["activated", "waiting", "waiting"], states
    assert ScanRun.objects.get().finished_at is None  # the record shows the scan did not end

    monkeypatch.setattr(activation, "record_audit", original)
    # The next run comes later than any scan may live (the broker's retry, or the schedule).
    ScanRun.objects.update(started_at=timezone.now() - timedelta(minutes=10))
    with django_capture_on_commit_callbacks(execute=True):
        async_task("renewals.tasks.run_auto_activation_scan", now, timeout=60)
    assert set(alias_states(tenant, aliases).values()) == {"activated"}
    activated_mails = [m.subject for m in mail.outbox if "was activated" in m.subject]
    assert len(activated_mails) == 3 == len(set(activated_mails))
    assert ScanRun.objects.filter(finished_at__isnull=False).count() == 1
    # The killed run is marked interrupted instead of looking unfinished for good.
    dead = ScanRun.objects.get(finished_at__isnull=True)
    assert dead.interrupted and "Interrupted" in dead.detail


# -- a mail server that fails -----------------------------------------------------------------


class RefusingBackend(BaseEmailBackend):
    """An SMTP server that answers every message with a temporary failure."""

    def send_messages(self, email_messages):
        raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed: mail server down")


REFUSING = f"{__name__}.RefusingBackend"
LOCMEM = "django.core.mail.backends.locmem.EmailBackend"


def activated_mail() -> SentNotification:
    return SentNotification.objects.get(kind=NotificationKind.ACTIVATED)


@pytest.mark.django_db(transaction=True)
def test_a_failing_mail_server_neither_undoes_an_activation_nor_loses_the_mail(
    sap_entry, pending, admin, expiry, settings, caplog
):
    settings.EMAIL_BACKEND = REFUSING
    result = activate_pending_key(sap_entry.tenant, SAP_ALIAS, actor=admin)  # real commit

    entry = KeystoreEntry.objects.get(pk=sap_entry.pk)
    assert entry.fingerprint_sha256 == pending.fingerprint_sha256 == result.new_fingerprint
    assert SapKeyBackup.objects.count() == 1
    row = activated_mail()
    assert (row.sent_at, row.attempts, row.gave_up) == (None, 1, False)
    assert "mail server down" in row.last_error
    assert "could not be sent" in caplog.text

    # The next scan tries again while the server is still down: still recorded, not lost.
    auto_activate_due(expiry - timedelta(days=3))
    row = activated_mail()
    assert (row.sent_at, row.attempts) == (None, 2)

    settings.EMAIL_BACKEND = LOCMEM
    mail.outbox.clear()
    assert deliver_unsent() == 1
    assert deliver_unsent() == 0
    auto_activate_due(expiry - timedelta(days=3))
    assert [m.subject for m in mail.outbox if "was activated" in m.subject] == [
        f"SAP key {SAP_ALIAS} in {sap_entry.tenant.slug} was activated by admin_a"
    ]
    row = activated_mail()
    assert row.sent_at is not None and row.attempts == 3 and row.last_error == ""


@pytest.mark.django_db(transaction=True)
def test_a_mail_given_up_after_the_last_attempt_stays_recorded(sap_entry, pending, admin, settings):
    settings.EMAIL_BACKEND = REFUSING
    settings.RENEWALS_MAIL_MAX_ATTEMPTS = 2
    activate_pending_key(sap_entry.tenant, SAP_ALIAS, actor=admin)
    deliver_unsent()
    row = activated_mail()
    assert (row.sent_at, row.attempts, row.gave_up) == (None, 2, True)
    assert "mail server down" in row.last_error
    settings.EMAIL_BACKEND = LOCMEM
    deliver_unsent()
    assert activated_mail().sent_at is None  # given up: shown to the administrators, not resent


@pytest.mark.django_db(transaction=True)
def test_a_delivery_that_crashes_after_the_commit_does_not_fail_the_activation(
    sap_entry, pending, admin, monkeypatch, settings
):
    """The mail is delivered after the commit; if that delivery itself breaks (here the
    database refuses the claim), the activation has happened and must be reported as done."""
    settings.EMAIL_BACKEND = LOCMEM

    def claim_fails(*args, **kwargs):
        raise RuntimeError("connection to the database lost while claiming the mail")

    monkeypatch.setattr(outbox, "_claim", claim_fails)
    result = activate_pending_key(sap_entry.tenant, SAP_ALIAS, actor=admin)
    assert result.new_fingerprint == pending.fingerprint_sha256
    assert KeystoreEntry.objects.get(pk=sap_entry.pk).version == sap_entry.version + 1
    assert activated_mail().sent_at is None

    monkeypatch.undo()
    settings.EMAIL_BACKEND = LOCMEM
    mail.outbox.clear()
    deliver_unsent()
    assert len([m for m in mail.outbox if "was activated" in m.subject]) == 1
