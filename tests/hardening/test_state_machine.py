"""A hypothesis state machine over the renewal of SAP keys: provide, activate (by an
administrator or the system, with a confirmed, stale or no fingerprint), revert, the automatic
scan and the passing of time, in any order, against a model of what must be true.

After every step the database must match the model:
* one keystore entry per alias, at most one new SAP key waiting for it;
* every replaced key is in SAP Key History, with its Active Until, in order;
* no key material is lost: the private key of every certificate that was ever active or is
  waiting opens, byte for byte, from the entry, the waiting key or a backup;
* the audit log and the activation mails match the operations that succeeded, and an
  operation that was refused changed nothing.

The whole run is one test in one transaction; each example starts from a savepoint taken after
the two SAP entries were created and rolls back to it. Required on PostgreSQL (row locks, real
isolation); SQLite runs it too because it is cheap.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from django.db import connection, transaction
from django.utils import timezone
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from keystore import crypto, services
from keystore.models import AuditAction, AuditEvent, KeystoreEntry
from renewals import conf
from renewals.activation import (
    AlreadyWaiting,
    NothingToActivate,
    PendingKeyExists,
    RenewalError,
    activate_pending_key,
    add_back_to_pending,
    provision_sap_key,
)
from renewals.models import NotificationKind, PendingSapKey, SapKeyBackup, SentNotification
from renewals.scan import auto_activate_due
from tests import pki as pki_factory
from tests.conftest import make_user
from tests.hardening.conftest import hypothesis_profile, renewal_state

ALIASES = ("sap_cloudintegrationcertificate", "hcicertificate_signing")
VALID_DAYS = (2, 60, 60)  # 2 days: a new key that expires before it is activated
SCAN_TIMES = ("now", "just before it is due", "when it is due", "after the expiry")
# The SAP CA of the test PKI is valid for 1825 days; the clock stays well inside.
CLOCK_LIMIT = timedelta(days=1200)


@dataclass
class Key:
    fingerprint: str
    der: bytes  # the private key, as it must open from whichever row holds it
    valid_until: datetime


@dataclass
class Backup:
    key: Key
    active_until: datetime


@dataclass
class AliasModel:
    entry: Key
    version: int
    pending: Key | None = None
    history: list[Backup] = field(default_factory=list)
    audit: Counter = field(default_factory=Counter)
    activations: list[tuple[str, str]] = field(default_factory=list)  # (old, new) fingerprints


@dataclass
class World:
    tenant: object
    admin: object
    ca: tuple
    start: datetime
    entries: dict[str, Key]
    tally: Counter = field(default_factory=Counter)  # what the examples did, for the figures


def key_of(material) -> Key:
    return Key(
        material.fingerprint_sha256,
        crypto.private_key_to_der(material.open_private_key()),
        material.valid_until,
    )


class RenewalMachine(RuleBasedStateMachine):
    world: World  # set by the test

    def __init__(self) -> None:
        super().__init__()
        self.savepoint = transaction.savepoint()
        self.now = self.world.start
        self.model = {
            alias: AliasModel(entry=key, version=1) for alias, key in self.world.entries.items()
        }
        self.audit_floor = AuditEvent.objects.order_by("-pk").values_list("pk", flat=True).first()

    def teardown(self) -> None:
        transaction.savepoint_rollback(self.savepoint)

    # -- helpers -----------------------------------------------------------------------------

    def step(self, seconds: int = 1) -> datetime:
        """Every operation happens at a later instant (Active Until is unique per alias)."""
        self.now += timedelta(seconds=seconds)
        return self.now

    def refused(self, expected: type[Exception], call) -> None:
        """`call` must raise exactly `expected` and change nothing."""
        before = renewal_state()
        with pytest.raises(RenewalError) as caught:
            call()
        assert type(caught.value) is expected, (expected, caught.value)
        assert renewal_state() == before
        self.world.tally["refused, nothing changed"] += 1
        self.world.tally[f"refused: {expected.__name__}"] += 1

    def actor(self, who: str):
        return self.world.admin if who == "admin" else None

    def activated(self, model: AliasModel, at: datetime) -> None:
        model.history.append(Backup(model.entry, at))
        model.activations.append((model.entry.fingerprint, model.pending.fingerprint))
        model.entry, model.pending = model.pending, None
        model.version += 1
        model.audit[AuditAction.ACTIVATE] += 1
        self.world.tally["activations"] += 1

    # -- rules -------------------------------------------------------------------------------

    @initialize()
    def sap_provides_keys_for_every_alias(self) -> None:
        """Each example starts where renewals start: a new key waiting for each alias."""
        for alias in ALIASES:
            self.sap_provides_a_key(alias, replace=False, valid_days=60, kind="ec")

    @rule(minutes=st.integers(1, 4 * 24 * 60))
    def time_passes(self, minutes: int) -> None:
        if self.now + timedelta(minutes=minutes) < self.world.start + CLOCK_LIMIT:
            self.now += timedelta(minutes=minutes)

    @rule(
        alias=st.sampled_from(ALIASES),
        replace=st.booleans(),
        valid_days=st.sampled_from(VALID_DAYS),
        kind=st.sampled_from(("ec", "rsa")),
    )
    def sap_provides_a_key(self, alias: str, replace: bool, valid_days: int, kind: str) -> None:
        model, now = self.model[alias], self.step()
        # EC keys are made fresh (fast); RSA keys come from the test pool.
        private_key = ec.generate_private_key(ec.SECP256R1()) if kind == "ec" else None
        private_key = private_key or pki_factory.make_key()

        def provide():
            return provision_sap_key(
                self.world.tenant,
                alias,
                valid_days=valid_days,
                now=now,
                replace=replace,
                private_key=private_key,
                ca=self.world.ca,
            )

        if model.pending is not None and not replace:
            self.refused(PendingKeyExists, provide)
            return
        pending = provide()
        model.pending = Key(
            pending.fingerprint_sha256, crypto.private_key_to_der(private_key), pending.valid_until
        )
        model.audit[AuditAction.PROVISION] += 1
        self.world.tally["new keys provided"] += 1

    @rule(
        pick=st.integers(0, 100),
        waiting_only=st.sampled_from((True, True, False)),
        who=st.sampled_from(("admin", "system")),
        confirm=st.sampled_from(("reviewed", "reviewed", "stale", "none")),
    )
    def administrator_activates(
        self, pick: int, waiting_only: bool, who: str, confirm: str
    ) -> None:
        """Activate the key waiting for an alias (mostly one that has a key waiting)."""
        waiting = [alias for alias, model in self.model.items() if model.pending]
        choices = waiting if waiting_only and waiting else list(ALIASES)
        alias = choices[pick % len(choices)]
        model, now = self.model[alias], self.step()
        expected_fingerprint = {
            "reviewed": model.pending.fingerprint if model.pending else "",
            "stale": model.entry.fingerprint,  # e.g. a page opened before another provision
            "none": None,
        }[confirm]

        def activate():
            return activate_pending_key(
                self.world.tenant,
                alias,
                actor=self.actor(who),
                now=now,
                expected_fingerprint=expected_fingerprint,
            )

        if model.pending is None:
            self.refused(NothingToActivate, activate)
        elif confirm == "stale" or model.pending.valid_until <= now:
            self.refused(RenewalError, activate)
        else:
            result = activate()
            assert (result.old_fingerprint, result.new_fingerprint) == (
                model.entry.fingerprint,
                model.pending.fingerprint,
            )
            self.activated(model, now)

    @precondition(lambda self: any(model.history for model in self.model.values()))
    @rule(pick=st.integers(0, 100), replace=st.booleans(), who=st.sampled_from(("admin", "system")))
    def administrator_reverts(self, pick: int, replace: bool, who: str) -> None:
        """Add a backup (any alias's, picked by `pick`) back to New SAP Keys."""
        now = self.step()
        backups = [(alias, b) for alias, m in self.model.items() for b in m.history]
        alias, chosen = backups[pick % len(backups)]
        model = self.model[alias]
        backup = SapKeyBackup.objects.get(
            tenant=self.world.tenant, alias=alias, active_until=chosen.active_until
        )

        def revert():
            return add_back_to_pending(backup, actor=self.actor(who), replace=replace, now=now)

        if chosen.key.valid_until <= now:
            self.refused(RenewalError, revert)  # an expired key cannot come back
        elif chosen.key.fingerprint == model.entry.fingerprint:
            self.refused(RenewalError, revert)  # it is the active key already
        elif model.pending and model.pending.fingerprint == chosen.key.fingerprint:
            self.refused(AlreadyWaiting, revert)
        elif model.pending and not replace:
            self.refused(PendingKeyExists, revert)
        else:
            pending = revert()
            assert pending.fingerprint_sha256 == chosen.key.fingerprint
            model.pending = chosen.key
            model.audit[AuditAction.REVERT] += 1
            self.world.tally["reverts"] += 1

    @rule(alias=st.sampled_from(ALIASES), when=st.sampled_from(SCAN_TIMES))
    def scheduler_scans(self, alias: str, when: str) -> None:
        """The scan, run now or once the clock reaches the automatic activation (or the
        expiry) of `alias`'s current key."""
        expiry = self.model[alias].entry.valid_until
        target = {
            "now": self.now,
            "just before it is due": expiry - conf.auto_activate_before() - timedelta(minutes=1),
            "when it is due": expiry - conf.auto_activate_before() + timedelta(minutes=1),
            "after the expiry": expiry + timedelta(hours=1),
        }[when]
        if self.now < target < self.world.start + CLOCK_LIMIT:
            self.now = target
        now = self.step()
        # Never activated automatically: a waiting key that has expired, or that expires no
        # later than the key it would replace (a revert of an older backup, say).
        attention = {
            alias
            for alias, model in self.model.items()
            if model.pending
            and (
                model.pending.valid_until <= now
                or model.pending.valid_until <= model.entry.valid_until
            )
        }
        due = {
            alias
            for alias, model in self.model.items()
            if model.pending and model.entry.valid_until <= now + conf.auto_activate_before()
        } - attention
        result = auto_activate_due(now)
        assert {a.alias for a in result.activated} == due
        assert result.failed == [] and result.skipped == []
        assert {n.alias for n in result.attention} <= attention
        for alias in due:
            self.activated(self.model[alias], now)
            self.world.tally["of which automatic"] += 1

    # -- invariant ---------------------------------------------------------------------------

    @invariant()
    def database_matches_the_model(self) -> None:
        # Five queries for the whole tenant: the check runs after every step.
        tenant = self.world.tenant
        sealed = ("tenant_id", "alias", "material_id", "version", "kek_id", "sealed_private_key")
        entries = list(
            KeystoreEntry.objects.filter(tenant=tenant).only(*sealed, "fingerprint_sha256")
        )
        waiting = list(
            PendingSapKey.objects.filter(tenant=tenant).only(
                *sealed, "fingerprint_sha256", "entry_id"
            )
        )
        history = list(
            SapKeyBackup.objects.filter(tenant=tenant)
            .only(*sealed, "fingerprint_sha256", "active_until")
            .order_by("active_until")
        )
        events = AuditEvent.objects.filter(tenant=tenant, pk__gt=self.audit_floor or 0)
        events = list(
            events.order_by("at", "pk").values_list(
                "alias", "action", "old_fingerprint", "new_fingerprint"
            )
        )
        mails = Counter(
            SentNotification.objects.filter(
                tenant=tenant, kind=NotificationKind.ACTIVATED
            ).values_list("alias", flat=True)
        )
        assert sorted(entry.alias for entry in entries) == sorted(self.model)
        for alias, model in self.model.items():
            [entry] = [row for row in entries if row.alias == alias]  # one entry per alias
            assert (entry.fingerprint_sha256, entry.version) == (
                model.entry.fingerprint,
                model.version,
            ), alias
            pending = [row for row in waiting if row.entry_id == entry.pk]
            assert [row.fingerprint_sha256 for row in pending] == (
                [model.pending.fingerprint] if model.pending else []
            ), alias
            backups = [row for row in history if row.alias == alias]
            assert [(row.fingerprint_sha256, row.active_until) for row in backups] == [
                (backup.key.fingerprint, backup.active_until) for backup in model.history
            ], alias
            # No key material lost: each key opens, byte for byte, from the row holding it.
            holders = [
                (entry, model.entry),
                *zip(backups, [b.key for b in model.history], strict=True),
            ]
            holders += [(row, model.pending) for row in pending]
            for row, key in holders:
                assert key_of(row).der == key.der, f"{alias}: the key of {key.fingerprint} changed"
            self.world.tally["private keys opened and compared"] += len(holders)
            # The audit log and the mails tell what succeeded, nothing else.
            mine = [event for event in events if event[0] == alias]
            assert Counter(action for _alias, action, _old, _new in mine) == +model.audit, alias
            assert [
                (old, new) for _alias, action, old, new in mine if action == AuditAction.ACTIVATE
            ] == model.activations, alias
            assert mails[alias] == len(model.activations), alias


@pytest.fixture
def world(tenant, sap_pki):
    admin = make_user("machine_admin", tenant=tenant, role="Administrator")
    entries = {}
    for alias in ALIASES:
        # Each alias its own leaf (own key) under the same SAP CA, valid 20 days.
        leaf_key = pki_factory.make_key("ec")
        leaf = pki_factory.make_cert(
            f"SAP {alias}", leaf_key, sap_pki.inter, sap_pki.inter_key, days=20
        )
        entry = services.create_sap_entry(
            tenant, alias, leaf_key, [leaf, sap_pki.inter, sap_pki.root]
        )
        entries[alias] = key_of(entry)
    start = timezone.now().replace(microsecond=0) + timedelta(minutes=1)
    return World(tenant, admin, (sap_pki.inter_key, [sap_pki.inter, sap_pki.root]), start, entries)


def test_renewal_state_machine(world, figures):
    machine = type("RenewalMachineForThisWorld", (RenewalMachine,), {"world": world})
    profile = hypothesis_profile()
    run_state_machine_as_test(machine, settings=profile)
    # Each kind of step did happen (the counts are in the figures).
    for kind in ("activations", "of which automatic", "reverts", "refused, nothing changed"):
        assert world.tally[kind] >= 1, world.tally
    figures[f"state machine examples ({connection.vendor})"] += profile.max_examples
    for kind, count in world.tally.items():
        figures[f"state machine: {kind} ({connection.vendor})"] += count
