"""Merging a whole keystore file (PKCS#12, JKS or JCEKS) into a tenant's keystore: each entry is
added, overwritten or rejected on its own, and the summary says which and why.

The entries are checked in memory first; then the rows and their audit records are written in
a few statements (the per-entry write path of keystore.services, in bulk). A key pair whose
chain stops short of its root is completed from the trusted certificates of the file and the
tenant before it is stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cryptography import x509
from django.db import IntegrityError, transaction

from keystore import crypto, permissions
from keystore.audit import record_audits
from keystore.models import EntryType, KeystoreEntry, Owner, Tenant
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
    result: str  # "added", "overwritten" or "rejected"
    reason: str = ""
    entry_type: str = ""
    fingerprint: str = ""


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

    def as_dict(self) -> dict[str, list[str] | list[dict[str, str]]]:
        """The summary as JSON data (import_keystore --json)."""
        return {
            "added": [o.alias for o in self.added],
            "overwritten": [o.alias for o in self.overwritten],
            "rejected": [{"alias": o.alias, "reason": o.reason} for o in self.rejected],
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
    items: list[crypto.KeystoreItem], outcomes: list[ImportOutcome | None]
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
            chain, _warnings = validated_chain(item.chain, item.private_key, alias=alias)
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


def import_keystore(
    tenant: Tenant,
    data: bytes,
    password: str,
    *,
    actor: Actor = None,
    overwrite: bool = False,
) -> ImportSummary:
    """Merge a whole PKCS#12 or JKS keystore; each entry is added, overwritten or rejected.

    The rows and their audit records are written in a few statements. A key pair whose chain
    stops short of its root is completed from the trusted certificates of the file and the
    tenant before it is stored; then the tenant's other short chains are completed."""
    permissions.require_of_actor(actor, permissions.DEPLOY, tenant, KeystoreError)
    items = load_keystore_file(data, password)
    outcomes: list[ImportOutcome | None] = [None] * len(items)
    merged = _checked_items(items, outcomes)
    completed: list[str] = []
    with transaction.atomic():
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
            )
        record_audits(events)
        if events:
            completed += [entry.alias for entry in complete_chains(tenant, actor=actor)]
    summary = ImportSummary([outcome for outcome in outcomes if outcome is not None])
    summary.chains_completed = completed
    return summary
