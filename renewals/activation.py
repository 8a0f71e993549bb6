"""The renewal of SAP-owned keys: provide a new key, activate it, revert (the scan that
activates automatically is renewals.scan).

Each operation is one function; the admin screens, the management commands and the scheduler
call it. Every operation that touches an alias locks the keystore entry row first and the
pending row second, always in this order, so concurrent callers queue instead of deadlocking;
the entry lock plus "is the pending row still there?" is what makes an activation happen once.

`actor` is the user who acts (their tenant permission is checked) or None for the system
(commands run by the operator, the scheduler).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from cryptography import x509
from django.db import IntegrityError, transaction
from django.utils import timezone

from keystore import crypto, permissions
from keystore.audit import actor_label, record_audit
from keystore.models import (
    AuditAction,
    EntryType,
    KeyMaterial,
    KeystoreEntry,
    Owner,
    Tenant,
    is_sap_alias,
)
from keystore.sealing import SealingError
from keystore.services import KeystoreError, load_key_pair_file, validated_chain
from keystore.timefmt import utc
from renewals import conf, notifications
from renewals.models import PendingSapKey, PendingSource, SapKeyBackup
from renewals.plans import gate
from renewals.plans.services import PlanError, plan_created
from renewals.whereused.restart import mark_restart_required

if TYPE_CHECKING:
    from keystore.audit import Actor

logger = logging.getLogger(__name__)

AUTOMATIC = "automatic"
SAP_LABEL = "SAP"


class RenewalError(KeystoreError):
    """A renewal step was refused; nothing changed. The message is meant for the operator."""


class NothingToActivate(RenewalError):
    """No pending key (any more): someone else activated it first, or there never was one."""


# The admin and the scheduler say "already activated"; both mean the same thing.
AlreadyActivated = NothingToActivate


class PendingKeyExists(RenewalError):
    """A new key is waiting already; replacing it needs an explicit confirmation."""


class AlreadyWaiting(RenewalError):
    """The very same key is waiting in New SAP Keys already (a repeated revert or import)."""


def _nothing_waiting(tenant: Tenant, alias: str) -> NothingToActivate:
    return NothingToActivate(
        f"No new SAP key is waiting for {alias} in {tenant.slug}; "
        "it may have been activated already."
    )


def _locked_sap_entry(tenant: Tenant, alias: str) -> KeystoreEntry:
    """The current SAP-owned key pair with this alias, locked for this transaction."""
    entry = KeystoreEntry.objects.select_for_update().filter(tenant=tenant, alias=alias).first()
    return _checked_sap_entry(entry, tenant, alias)


def _checked_sap_entry(entry: KeystoreEntry | None, tenant: Tenant, alias: str) -> KeystoreEntry:
    """`entry`, if it is the SAP-owned key pair `alias`; RenewalError otherwise."""
    if not is_sap_alias(alias):
        raise RenewalError(
            f"{alias!r} is not an SAP alias: only aliases starting with 'sap_' or "
            "'hcicertificate' are renewed by SAP."
        )
    if entry is None:
        raise RenewalError(
            f"Tenant {tenant.slug} has no key pair {alias!r}; SAP renews existing keys only."
        )
    if entry.owner != Owner.SAP or entry.entry_type != EntryType.KEY_PAIR:
        raise RenewalError(f"{alias!r} in {tenant.slug} is not an SAP-owned key pair.")
    return entry


def _unopenable(material: KeyMaterial, error: SealingError) -> RenewalError:
    # A key moved between rows, or sealed with a KEK that is no longer configured: the
    # operation is refused with one clear line, and nothing changes.
    return RenewalError(f"{material.alias} in {material.tenant.slug}: {error}")


def _opened(material: KeyMaterial) -> crypto.PrivateKey:
    try:
        return material.open_key_pair_key()
    except SealingError as error:
        raise _unopenable(material, error)


def _copy_material(target: KeyMaterial, source: KeyMaterial) -> None:
    try:
        target.copy_material_from(source)
    except SealingError as error:
        raise _unopenable(source, error)


def _locked_pending(entry: KeystoreEntry) -> PendingSapKey | None:
    return PendingSapKey.objects.select_for_update().filter(entry=entry).first()


# -- providing a new key ---------------------------------------------------------------------


def _store_pending(
    tenant: Tenant,
    alias: str,
    chain: list[x509.Certificate],
    private_key: crypto.PrivateKey,
    *,
    source: str,
    replace: bool,
    now: datetime,
    actor: Actor = None,
    label: str,
    reverted_from: SapKeyBackup | None = None,
) -> PendingSapKey:
    with transaction.atomic():
        entry = _locked_sap_entry(tenant, alias)
        pending = PendingSapKey(
            tenant=tenant,
            entry=entry,
            alias=entry.alias,
            source=source,
            provided_at=now,
            provided_by=actor,
            provided_by_label=label,
            reverted_from=reverted_from,
        )
        pending.set_material(chain, private_key)
        pending.replaces_longer_lived_key = pending.valid_until <= entry.valid_until
        if pending.fingerprint_sha256 == entry.fingerprint_sha256:
            raise RenewalError(f"This key is the active key of {alias} in {tenant.slug} already.")
        waiting = _locked_pending(entry)
        if waiting is not None:
            if waiting.fingerprint_sha256 == pending.fingerprint_sha256:
                raise AlreadyWaiting(
                    f"This key is waiting in New SAP Keys for {alias} in {tenant.slug} already."
                )
            if not replace:
                raise PendingKeyExists(
                    f"A new SAP key is waiting for {alias} in {tenant.slug} already "
                    f"(SHA-256 {waiting.fingerprint_sha256[:23]}..., provided "
                    f"{utc(waiting.provided_at, label=True)}); confirm replacing it."
                )
            waiting.delete()
        pending.save()
        # The renewal plan (issue 17) exists with its key or not at all.
        plan_created(pending, now=now)
        if reverted_from is not None:
            record_audit(
                tenant,
                alias,
                AuditAction.REVERT,
                actor,
                label=label,
                old_fingerprint=entry.fingerprint_sha256,
                new_fingerprint=pending.fingerprint_sha256,
                detail=f"backup active until {utc(reverted_from.active_until, label=True)} "
                "added to New SAP Keys" + (" (replacing the waiting key)" if waiting else ""),
                at=now,
            )
            notifications.notify_reverted(pending, reverted_from)
        else:
            record_audit(
                tenant,
                alias,
                AuditAction.PROVISION,
                actor,
                label=label,
                old_fingerprint=entry.fingerprint_sha256,
                new_fingerprint=pending.fingerprint_sha256,
                detail=f"{pending.get_source_display()}, valid until "
                f"{utc(pending.valid_until, label=True)}"
                + (" (replacing the waiting key)" if waiting else ""),
                at=now,
            )
            notifications.notify_new_key(pending)
    return pending


def _checked_chain(
    chain: list[x509.Certificate], private_key: crypto.PrivateKey, now: datetime, alias: str
) -> list[x509.Certificate]:
    try:
        checked, _warnings = validated_chain(chain, private_key, alias=alias, now=now)
    except RenewalError:
        raise
    except KeystoreError as error:
        raise RenewalError(str(error))
    return checked


def provision_sap_key(
    tenant: Tenant,
    alias: str,
    *,
    valid_days: int | None = None,
    now: datetime | None = None,
    replace: bool = False,
    private_key: crypto.PrivateKey | None = None,
    ca: tuple[crypto.PrivateKey, list[x509.Certificate]],
) -> PendingSapKey:
    """Stand in for SAP delivering a renewed key: a new RSA-2048 key with the current
    certificate's subject, issued by the SAP CA `ca` (key, chain; keystore.sapca.sap_ca() is the
    site's stand-in), into New SAP Keys."""
    now = now or timezone.now()
    valid_days = conf.provision_valid_days() if valid_days is None else valid_days
    if not 2 <= valid_days <= 3650:
        raise RenewalError("The validity must be between 2 and 3650 days.")
    entry = _checked_sap_entry(
        KeystoreEntry.objects.filter(tenant=tenant, alias=alias).first(), tenant, alias
    )
    ca_key, ca_chain = ca
    key = private_key or crypto.generate_key_pair("rsa", 2048)
    not_before = (now - timedelta(minutes=5)).replace(microsecond=0)
    chain = crypto.issue_renewed_certificate(
        entry.certificate(),
        key,
        ca_key,
        ca_chain,
        not_before=not_before,
        not_after=not_before + timedelta(days=valid_days),
    )
    chain = _checked_chain(chain, key, now, alias)
    return _store_pending(
        tenant,
        alias,
        chain,
        key,
        source=PendingSource.PROVISIONED,
        replace=replace,
        now=now,
        label=SAP_LABEL,
    )


def import_sap_key(
    tenant: Tenant,
    alias: str,
    data: bytes,
    password: str,
    *,
    actor: Actor = None,
    replace: bool = False,
    now: datetime | None = None,
) -> PendingSapKey:
    """Take a renewed key that SAP delivered as PKCS#12 into New SAP Keys."""
    permissions.require_of_actor(
        actor, permissions.DEPLOY, tenant, RenewalError, "activate or revert keys"
    )
    now = now or timezone.now()
    try:
        item = load_key_pair_file(data, password, "a delivered SAP key is one")
    except KeystoreError as error:
        raise RenewalError(str(error))
    # keytool writes aliases in lower case; SAP aliases are lower case anyway.
    if item.alias and item.alias.lower() != alias.lower():
        raise RenewalError(
            f"The file's key pair is named {item.alias!r}, not {alias!r}; a renewed SAP key "
            "keeps its alias."
        )
    chain = _checked_chain(item.chain, item.private_key, now, alias)
    return _store_pending(
        tenant,
        alias,
        chain,
        item.private_key,
        source=PendingSource.IMPORTED,
        replace=replace,
        now=now,
        actor=actor,
        label=actor_label(actor) if actor is not None else SAP_LABEL,
    )


# -- activation ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ActivationResult:
    tenant: Tenant
    alias: str
    entry: KeystoreEntry
    backup: SapKeyBackup
    old_fingerprint: str
    new_fingerprint: str
    activated_by: str
    automatic: bool
    root_changed: bool
    at: datetime
    flows_to_restart: int = 0
    kind: str = gate.MANUAL
    #: Backends of the key's renewal plan not confirmed, verified or not affected (gate "warn").
    unsettled: tuple[str, ...] = ()
    gate_overridden: bool = False


def activate_pending_key(
    tenant: Tenant,
    alias: str,
    *,
    actor: Actor = None,
    automatic: bool = False,
    planned: bool = False,
    now: datetime | None = None,
    expected_fingerprint: str | None = None,
    override_reason: str = "",
) -> ActivationResult:
    """Activate the new SAP key of an alias, in one transaction: the current key goes to SAP
    Key History (Active Until = now), the entry takes the new key, the pending row goes, the
    audit record is written; mails go out after commit.

    Raises NothingToActivate when no key is waiting (another caller was first), and
    RenewalError when the key must not be activated; in both cases nothing changed.
    `expected_fingerprint` is the pending key the caller confirmed; if another key took its
    place meanwhile, nothing is activated. A manual or `planned` activation (the agreed
    window, renewals.plans.window) passes the renewal plan's gate and four eyes
    (renewals.plans.gate); `override_reason` overrides a "require" gate, audited.
    """
    permissions.require_of_actor(
        actor, permissions.DEPLOY, tenant, RenewalError, "activate or revert keys"
    )
    now = now or timezone.now()
    kind = gate.AUTOMATIC if automatic else gate.PLANNED if planned else gate.MANUAL
    label = AUTOMATIC if automatic else actor_label(actor)
    if planned:
        label = f"{label} (planned)"
    with transaction.atomic():
        # One statement locks the entry and then its waiting key (FOR UPDATE OF takes them in
        # this order, the order of every path); without a waiting key nothing is locked.
        pending = gate.with_unsettled_count(
            PendingSapKey.objects.select_for_update(of=("entry", "self"))
            .select_related("entry")
            .filter(tenant=tenant, entry__alias=alias)
        ).first()
        if pending is None:
            raise _nothing_waiting(tenant, alias)
        entry = pending.entry
        if expected_fingerprint and pending.fingerprint_sha256 != expected_fingerprint:
            raise RenewalError(
                f"The new SAP key waiting for {alias} changed since you reviewed it; "
                "review it again before activating."
            )
        if automatic and entry.valid_until > now + conf.auto_activate_before():
            raise NothingToActivate(
                f"The new SAP key for {alias} in {tenant.slug} is not due before "
                f"{utc(entry.valid_until - conf.auto_activate_before(), label=True)}."
            )
        if pending.valid_until <= now:
            raise RenewalError(
                f"The new SAP key for {alias} in {tenant.slug} expired on "
                f"{utc(pending.valid_until, label=True)}; it cannot be activated."
            )
        try:
            checked = gate.check_activation(
                pending, actor, kind=kind, override_reason=override_reason, now=now
            )
        except PlanError as error:
            raise RenewalError(str(error)) from error
        old_fingerprint = entry.fingerprint_sha256
        old_root = entry.root_fingerprint_sha256
        backup = SapKeyBackup(
            tenant=tenant,
            entry=entry,
            alias=entry.alias,
            active_from=entry.active_since,
            active_until=now,
            activated_by=actor,
            activated_by_label=label,
        )
        _copy_material(backup, entry)
        try:
            # No savepoint: a refusal here rolls the whole activation back anyway.
            backup.save()
        except IntegrityError:
            raise RenewalError(
                f"SAP Key History holds a backup of {alias} active until {now.isoformat()} "
                "already; try again."
            )
        entry.version += 1
        _copy_material(entry, pending)
        entry.active_since = now
        entry.modified_by = actor
        entry.modified_by_label = label
        entry.save()
        occasion = pending.material_id
        pending.delete()
        # Outbound connections cache the old key for up to a day: their flows need a restart.
        restart_marked = mark_restart_required(tenant, alias, reason=f"{alias} activated", at=now)
        record_audit(
            tenant,
            alias,
            AuditAction.ACTIVATE,
            actor,
            label=label,
            old_fingerprint=old_fingerprint,
            new_fingerprint=entry.fingerprint_sha256,
            detail=("activation" if kind == gate.MANUAL else f"{kind} activation")
            + f"; previous key kept in SAP Key History, active until {now.isoformat()}"
            + (
                f"; not settled in the plan: {', '.join(checked.unsettled)}"
                if checked.unsettled
                else ""
            )
            + (
                f"; gate overridden: {checked.plan.override_reason}"
                if checked.overridden and checked.plan
                else ""
            ),
            at=now,
        )
        notifications.notify_activated(
            tenant=tenant,
            alias=alias,
            entry=entry,
            backup=backup,
            occasion=occasion,
            activated_by=label,
            automatic=automatic,
            extra=gate.unsettled_words(checked),
        )
    return ActivationResult(
        tenant=tenant,
        alias=alias,
        entry=entry,
        backup=backup,
        old_fingerprint=old_fingerprint,
        new_fingerprint=entry.fingerprint_sha256,
        activated_by=label,
        automatic=automatic,
        root_changed=old_root != entry.root_fingerprint_sha256,
        at=now,
        flows_to_restart=restart_marked,
        kind=kind,
        unsettled=checked.unsettled,
        gate_overridden=checked.overridden,
    )


# -- revert ----------------------------------------------------------------------------------


def add_back_to_pending(
    backup: SapKeyBackup,
    *,
    actor: Actor = None,
    replace: bool = False,
    now: datetime | None = None,
) -> PendingSapKey:
    """Revert: copy a backup from SAP Key History back into New SAP Keys, from where it is
    activated like any new key. The backup stays as it is. A waiting key is replaced only
    with `replace=True` (PendingKeyExists otherwise)."""
    tenant = backup.tenant
    permissions.require_of_actor(
        actor, permissions.DEPLOY, tenant, RenewalError, "activate or revert keys"
    )
    now = now or timezone.now()
    if backup.valid_until <= now:
        raise RenewalError(
            f"The backup of {backup.alias} expired on {utc(backup.valid_until, label=True)}; "
            "an expired key cannot be activated again."
        )
    return _store_pending(
        tenant,
        backup.alias,
        backup.certificate_chain(),
        _opened(backup),
        source=PendingSource.REVERTED,
        replace=replace,
        now=now,
        actor=actor,
        label=actor_label(actor),
        reverted_from=backup,
    )
