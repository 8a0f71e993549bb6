"""Merging a whole keystore into a tenant's keystore: an uploaded file (PKCS#12, JKS or JCEKS) or
the tenant's server-side backup (Cloud Integration's `backup_admin_system`). Each entry is added,
overwritten or rejected on its own, and the summary says which and why; with `replace`, the
tenant-owned entries the keystore does not bring back are removed first (SAP-owned entries are
never touched).

The entries are checked in memory first; then the rows and their audit records are written in
a few statements (the per-entry write path of keystore.services, in bulk). A key pair whose
chain stops short of its root is completed from the trusted certificates of the file and the
tenant before it is stored.

The server-side backup is made here too (`make_server_backup`), and restored by the same merge
(`restore_server_backup`), so a restore writes entries exactly as an import does.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cryptography import x509
from django.db import IntegrityError, transaction
from django.utils import timezone

from keystore import crypto, permissions, sealing
from keystore.audit import actor_label, audit_event, record_audit, record_audits
from keystore.models import (
    AuditAction,
    EntryType,
    KeystoreBackup,
    KeystoreBackupEntry,
    KeystoreEntry,
    Owner,
    Tenant,
)
from keystore.services import (
    KeystoreError,
    chain_event,
    complete_chains,
    entry_to_write,
    load_keystore_file,
    refuse_overwrite,
    stored_event,
    trusted_index,
    validate_alias,
    validated_chain,
)

if TYPE_CHECKING:
    from keystore.audit import Actor


@dataclass(frozen=True)
class ImportOutcome:
    alias: str
    result: str  # "added", "overwritten", "rejected" or (replace only) "removed"
    reason: str = ""
    entry_type: str = ""
    fingerprint: str = ""
    # What an overwritten or removed entry held before: equal to `fingerprint` when an
    # overwrite brought back the same certificate (Cloud Integration reports it "unchanged").
    previous_fingerprint: str = ""


@dataclass
class ImportSummary:
    outcomes: list[ImportOutcome] = field(default_factory=list)
    # Entries (already stored or just merged) whose chain the merge's certificates extended.
    chains_completed: list[str] = field(default_factory=list)

    def _of(self, result: str) -> list[ImportOutcome]:
        return [outcome for outcome in self.outcomes if outcome.result == result]

    @property
    def added(self) -> list[ImportOutcome]:
        return self._of("added")

    @property
    def overwritten(self) -> list[ImportOutcome]:
        return self._of("overwritten")

    @property
    def rejected(self) -> list[ImportOutcome]:
        return self._of("rejected")

    @property
    def removed(self) -> list[ImportOutcome]:
        return self._of("removed")

    def as_dict(self) -> dict[str, list[str] | list[dict[str, str]]]:
        """The summary as JSON data (import_keystore --json)."""
        return {
            "added": [o.alias for o in self.added],
            "overwritten": [o.alias for o in self.overwritten],
            "rejected": [{"alias": o.alias, "reason": o.reason} for o in self.rejected],
            "removed": [o.alias for o in self.removed],
            "chains_completed": list(self.chains_completed),
        }


@dataclass(frozen=True)
class _Merged:
    """A file entry that passed its checks, to be written."""

    position: int
    alias: str
    chain: list[x509.Certificate]
    private_key: crypto.PrivateKey | None
    kind: str


def _checked_items(
    items: list[crypto.KeystoreItem],
    outcomes: list[ImportOutcome | None],
    *,
    allow_expired: bool = False,
) -> list[_Merged]:
    """The entries of the file that may be written; each refusal goes into `outcomes` at the
    entry's position."""
    merged = []
    seen: set[str] = set()
    for position, item in enumerate(items):
        alias = item.alias
        # An entry the reader could not take (item.problem) is always a key.
        is_key = item.private_key is not None or bool(item.problem)
        kind = EntryType.KEY_PAIR if is_key else EntryType.CERTIFICATE
        try:
            if item.problem:
                raise KeystoreError(item.problem)
            if not alias:
                raise KeystoreError("The entry has no alias (friendly name) in the file.")
            validate_alias(alias)
            if alias.casefold() in seen:
                raise KeystoreError("The alias appears twice in the file (aliases ignore case).")
            seen.add(alias.casefold())
            chain, _warnings = validated_chain(
                item.chain, item.private_key, alias=alias, allow_expired=allow_expired
            )
        except KeystoreError as error:
            outcomes[position] = ImportOutcome(alias or "(none)", "rejected", str(error), kind)
            continue
        merged.append(_Merged(position, alias, chain, item.private_key, kind))
    return merged


def _locked_namesakes(tenant: Tenant, aliases: list[str]) -> dict[str, KeystoreEntry]:
    """The tenant's entries with these aliases (ignoring case), locked in a fixed order, by
    their case-folded alias."""
    found = {}
    for start in range(0, len(aliases), 400):
        for entry in (
            KeystoreEntry.objects.select_for_update()
            .for_tenant(tenant)
            .with_any_alias(aliases[start : start + 400])
            .order_by("pk")
        ):
            found[entry.alias.casefold()] = entry
    return found


def _insert_entries(entries: list[KeystoreEntry]) -> set[int]:
    """Insert new rows in a few statements; returns the ids (id()) of those refused because
    another session added the same alias since it was looked up."""
    try:
        with transaction.atomic():
            KeystoreEntry.objects.bulk_create(entries)
        return set()
    except IntegrityError:
        pass
    refused = set()
    for entry in entries:
        entry.pk, entry._state.adding = None, True
        try:
            with transaction.atomic():
                entry.save()
        except IntegrityError:
            refused.add(id(entry))
    return refused


def _remove_others(tenant: Tenant, kept: set[str], actor: Actor) -> list[ImportOutcome]:
    """replace: delete the tenant-owned entries whose alias (case-folded) is not in `kept`,
    each audited as delete_entry audits it; SAP-owned entries are never among them."""
    doomed = [
        entry
        for entry in KeystoreEntry.objects.select_for_update()
        .for_tenant(tenant)
        .tenant_owned()
        .order_by("pk")
        if entry.alias.casefold() not in kept
    ]
    if not doomed:
        return []
    record_audits(
        [
            audit_event(
                tenant,
                entry.alias,
                AuditAction.DELETE,
                actor,
                old_fingerprint=entry.fingerprint_sha256,
                detail=f"{entry.get_entry_type_display()} {entry.subject} (replaced keystore)",
            )
            for entry in doomed
        ]
    )
    KeystoreEntry.objects.filter(pk__in=[entry.pk for entry in doomed]).delete()
    return [
        ImportOutcome(
            entry.alias,
            "removed",
            entry_type=entry.entry_type,
            previous_fingerprint=entry.fingerprint_sha256,
        )
        for entry in doomed
    ]


def _merge(
    tenant: Tenant,
    items: list[crypto.KeystoreItem],
    *,
    actor: Actor,
    overwrite: bool,
    replace: bool,
    allow_expired: bool = False,
) -> ImportSummary:
    """The one write path of a keystore merge, for a file and for the server-side backup alike;
    the caller has checked the actor's permission. With `replace` (which implies overwrite),
    the tenant-owned entries that the keystore does not bring back are deleted first, in the
    same transaction: any error afterwards rolls the deletions back too."""
    overwrite = overwrite or replace
    outcomes: list[ImportOutcome | None] = [None] * len(items)
    merged = _checked_items(items, outcomes, allow_expired=allow_expired)
    completed: list[str] = []
    removed: list[ImportOutcome] = []
    with transaction.atomic():
        if replace:
            # Before the trusted index is read: a removed CA must not complete a new chain.
            removed = _remove_others(tenant, {each.alias.casefold() for each in merged}, actor)
        namesakes = _locked_namesakes(tenant, [each.alias for each in merged])
        writable: list[tuple[_Merged, KeystoreEntry | None]] = []
        for each in merged:
            existing = namesakes.get(each.alias.casefold())
            if existing is not None:
                try:
                    refuse_overwrite(existing, each.alias, owner=Owner.TENANT, overwrite=overwrite)
                except KeystoreError as error:
                    reason = str(error) + ("" if overwrite else " Choose overwrite to replace it.")
                    outcomes[each.position] = ImportOutcome(
                        each.alias, "rejected", reason, each.kind
                    )
                    continue
            writable.append((each, existing))
        trusted = trusted_index(
            tenant,
            also=[cert for each, _ in writable if each.private_key is None for cert in each.chain],
            excluding=[existing.pk for _, existing in writable if existing is not None],
        )
        written = []
        for each, existing in writable:
            chain = crypto.extend_chain(each.chain, trusted)
            entry, old_fingerprint = entry_to_write(
                tenant,
                each.alias,
                chain,
                each.private_key,
                existing,
                owner=Owner.TENANT,
                actor=actor,
                label=None,
            )
            written.append((each, entry, old_fingerprint, len(chain) > len(each.chain)))
        for _, entry, old_fingerprint, _ in written:
            if old_fingerprint:
                entry.save()
        refused = _insert_entries([entry for _, entry, old, _ in written if not old])
        events = []
        for each, entry, old_fingerprint, extended in written:
            if id(entry) in refused:
                reason = f"An entry with alias {each.alias!r} exists already."
                outcomes[each.position] = ImportOutcome(
                    each.alias, "rejected", reason + " Choose overwrite to replace it.", each.kind
                )
                continue
            events.append(stored_event(entry, old_fingerprint, actor, None))
            if extended:
                events.append(chain_event(entry, actor))
                completed.append(entry.alias)
            outcomes[each.position] = ImportOutcome(
                each.alias,
                "overwritten" if old_fingerprint else "added",
                entry_type=each.kind,
                fingerprint=entry.fingerprint_sha256,
                previous_fingerprint=old_fingerprint,
            )
        record_audits(events)
        if events:
            completed += [entry.alias for entry in complete_chains(tenant, actor=actor)]
    summary = ImportSummary([outcome for outcome in outcomes if outcome is not None] + removed)
    summary.chains_completed = completed
    return summary


def import_keystore(
    tenant: Tenant,
    data: bytes,
    password: str,
    *,
    actor: Actor = None,
    overwrite: bool = False,
    replace: bool = False,
) -> ImportSummary:
    """Merge a whole PKCS#12 or JKS keystore; each entry is added, overwritten or rejected.
    With `replace`, the tenant-owned entries the file does not hold are removed in the same
    transaction (Cloud Integration's importOption=replace); SAP-owned entries stay.

    The rows and their audit records are written in a few statements. A key pair whose chain
    stops short of its root is completed from the trusted certificates of the file and the
    tenant before it is stored; then the tenant's other short chains are completed. A file
    that cannot be read (or a wrong password) is refused before anything is written."""
    permissions.require_of_actor(actor, permissions.DEPLOY, tenant, KeystoreError)
    items = load_keystore_file(data, password)
    return _merge(tenant, items, actor=actor, overwrite=overwrite, replace=replace)


# -- the server-side backup (backup_admin_system) ---------------------------------------------


class NoServerBackup(KeystoreError):
    """The tenant has no server-side backup to restore."""


class StaleConfirmation(KeystoreError):
    """The keystore changed since the confirming page was shown (a double click); nothing was
    done."""


def keystore_state(tenant: Tenant) -> str:
    """A short digest of the tenant's entries (id and version) and of its server-side backup:
    the admin's Back up and Restore forms carry it, so that a second click (or a change by
    someone else since the page was shown) is refused instead of acting twice."""
    entries = list(
        KeystoreEntry.objects.for_tenant(tenant).order_by("pk").values_list("pk", "version")
    )
    backup = KeystoreBackup.objects.filter(tenant=tenant).values_list("pk", flat=True).first()
    return hashlib.sha256(repr((entries, backup)).encode()).hexdigest()[:32]


def _lock_keystore(tenant: Tenant, expected_state: str | None) -> None:
    """Serialise the backup and restore of one tenant (the tenant row is their lock), then
    refuse if the keystore or its backup changed since the caller looked."""
    Tenant.objects.select_for_update().filter(pk=tenant.pk).first()
    if expected_state is not None and keystore_state(tenant) != expected_state:
        raise StaleConfirmation(
            "The keystore or its server-side backup changed since this page was shown (a "
            "second click, or another administrator); nothing was done. Look again and confirm."
        )


def make_server_backup(
    tenant: Tenant, *, actor: Actor = None, expected_state: str | None = None
) -> ImportSummary:
    """Back up the tenant-owned entries into the tenant's server-side backup, replacing the
    previous backup (Cloud Integration: POST /KeystoreResources {"Name": "backup_admin_system"}).
    Private keys are resealed for the backup's rows. The summary compares the new backup with
    the one it replaces: added, overwritten (same or other certificate) and removed."""
    permissions.require_of_actor(
        actor, permissions.DEPLOY, tenant, KeystoreError, "back up the keystore"
    )
    with transaction.atomic():
        _lock_keystore(tenant, expected_state)
        entries = list(KeystoreEntry.objects.for_tenant(tenant).tenant_owned().order_by("alias"))
        if not entries:
            raise KeystoreError(
                f"The keystore of tenant {tenant.slug} holds no tenant-owned entry: nothing to "
                "back up (SAP-owned entries are SAP's to restore). The existing backup is kept."
            )
        previous = {
            alias.casefold(): (alias, fingerprint)
            for alias, fingerprint in KeystoreBackupEntry.objects.filter(
                backup__tenant=tenant
            ).values_list("alias", "fingerprint_sha256")
        }
        KeystoreBackup.objects.filter(tenant=tenant).delete()
        backup = KeystoreBackup.objects.create(
            tenant=tenant,
            made_at=timezone.now(),
            made_by=actor,
            made_by_label=actor_label(actor),
        )
        rows, outcomes = [], []
        for entry in entries:
            row = KeystoreBackupEntry(
                backup=backup,
                tenant=tenant,
                alias=entry.alias,
                entry_type=entry.entry_type,
                modified_at=entry.modified_at,
                modified_by_label=entry.modified_by_label,
            )
            try:
                row.copy_material_from(entry)
            except sealing.SealingError as error:  # moved between rows, or its KEK is gone
                raise KeystoreError(f"{entry.alias} in {tenant.slug}: {error}")
            rows.append(row)
            _, before = previous.pop(entry.alias.casefold(), ("", ""))
            outcomes.append(
                ImportOutcome(
                    entry.alias,
                    "overwritten" if before else "added",
                    entry_type=entry.entry_type,
                    fingerprint=entry.fingerprint_sha256,
                    previous_fingerprint=before,
                )
            )
        KeystoreBackupEntry.objects.bulk_create(rows)
        outcomes += [
            ImportOutcome(alias, "removed", previous_fingerprint=fingerprint)
            for alias, fingerprint in previous.values()
        ]
        key_pairs = sum(1 for row in rows if row.entry_type == EntryType.KEY_PAIR)
        record_audit(
            tenant,
            "",
            AuditAction.BACKUP,
            actor,
            detail=f"server-side backup (backup_admin_system): {key_pairs} key pairs, "
            f"{len(rows) - key_pairs} certificates",
        )
    return ImportSummary(outcomes)


def restore_server_backup(
    tenant: Tenant,
    *,
    actor: Actor = None,
    replace: bool = False,
    expected_state: str | None = None,
) -> ImportSummary:
    """Bring the server-side backup back into the tenant's keystore, in one transaction, by the
    same merge as an import (Cloud Integration: PUT /KeystoreResources('system')
    ?retrieveBackup=backup_admin_system). Every backed-up entry is written over its alias
    (importOption overwrite, the default); with `replace` the tenant-owned entries added since
    the backup are removed too. SAP-owned entries are never touched. An entry that expired since
    the backup comes back as it was. NoServerBackup when there is none; then nothing changes."""
    permissions.require_of_actor(
        actor, permissions.DEPLOY, tenant, KeystoreError, "restore the keystore"
    )
    with transaction.atomic():
        _lock_keystore(tenant, expected_state)
        backup = KeystoreBackup.objects.filter(tenant=tenant).first()
        rows = list(backup.entries.order_by("alias")) if backup is not None else []
        if backup is None or not rows:
            raise NoServerBackup(
                f"Tenant {tenant.slug} has no server-side backup (backup_admin_system) of "
                "tenant-owned entries: back up first. Nothing was changed."
            )
        items = []
        for row in rows:
            try:
                key = row.open_private_key()
            except sealing.SealingError as error:
                raise KeystoreError(f"The backup of {row.alias} in {tenant.slug}: {error}")
            items.append(crypto.KeystoreItem(row.alias, key, row.certificate_chain()))
        summary = _merge(
            tenant, items, actor=actor, overwrite=True, replace=replace, allow_expired=True
        )
        record_audit(
            tenant,
            "",
            AuditAction.RESTORE,
            actor,
            detail=f"restored the server-side backup of {backup.made_at:%Y-%m-%d %H:%M} UTC "
            f"by {backup.made_by_label} ({'replace' if replace else 'overwrite'}): "
            f"{len(summary.added)} added, {len(summary.overwritten)} overwritten, "
            f"{len(summary.removed)} removed, {len(summary.rejected)} rejected",
        )
    return summary


@dataclass(frozen=True)
class RestorePreview:
    """What restoring the server-side backup would do, for the confirmation page: aliases by
    what happens to them (SAP-owned entries are never touched, so never listed)."""

    backup: KeystoreBackup
    added: list[str]  # backed up, no longer in the keystore
    changed: list[str]  # in both, with another certificate now
    unchanged: list[str]  # in both, with the same certificate
    # Tenant-owned entries made since the backup: overwrite keeps them, replace removes them.
    not_in_backup: list[str]


def restore_preview(tenant: Tenant) -> RestorePreview | None:
    """The preview of restore_server_backup for the tenant, or None without a backup. Reads
    fact columns only; nothing is unsealed or written."""
    backup = KeystoreBackup.objects.filter(tenant=tenant).first()
    if backup is None:
        return None
    current = {
        alias.casefold(): fingerprint
        for alias, fingerprint in KeystoreEntry.objects.for_tenant(tenant)
        .tenant_owned()
        .values_list("alias", "fingerprint_sha256")
    }
    added: list[str] = []
    changed: list[str] = []
    unchanged: list[str] = []
    for alias, fingerprint in backup.entries.order_by("alias").values_list(
        "alias", "fingerprint_sha256"
    ):
        now = current.pop(alias.casefold(), None)
        (added if now is None else unchanged if now == fingerprint else changed).append(alias)
    others = KeystoreEntry.objects.for_tenant(tenant).tenant_owned().order_by("alias")
    not_in_backup = [
        alias for alias in others.values_list("alias", flat=True) if alias.casefold() in current
    ]
    return RestorePreview(backup, added, changed, unchanged, not_in_backup)
