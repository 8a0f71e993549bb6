"""Keystore operations: import, create a key pair and get it signed (signing request, signed
response), rename, delete, export, back up and public downloads.

Each operation is one function here; admin views, actions and management commands call it. An
operation either completes and writes its audit record in the same transaction, or raises
KeystoreError with a message for the operator and changes nothing.

`actor` is the user who acts (their tenant permissions are checked here too) or None for the
system itself (management commands run by the operator, the scheduler, the demo seed).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from cryptography import x509
from django.db import IntegrityError, transaction
from django.utils import timezone

from keystore import crypto, permissions, sealing
from keystore.audit import actor_label, audit_event, record_audit, record_audits
from keystore.models import (
    ALIAS_MAX_LENGTH,
    AuditAction,
    AuditEvent,
    EntryType,
    KeyMaterial,
    KeystoreBackupEntry,
    KeystoreEntry,
    Owner,
    Tenant,
    is_sap_alias,
    looks_like_sap_alias,
)
from keystore.passwords import export_password_problems

if TYPE_CHECKING:
    from django.db.models import QuerySet

    from keystore.audit import Actor


class KeystoreError(Exception):
    """An operation was refused; the message is meant for the operator and names no secret."""


# -- validation ------------------------------------------------------------------------------


def validate_alias(alias: str, *, owner: str = Owner.TENANT) -> str:
    if not isinstance(alias, str) or not alias:
        raise KeystoreError("The alias is empty.")
    if len(alias) > ALIAS_MAX_LENGTH:
        raise KeystoreError(f"The alias is longer than {ALIAS_MAX_LENGTH} characters.")
    if any(unicodedata.category(char) in {"Cc", "Cf", "Zl", "Zp"} for char in alias):
        raise KeystoreError("The alias contains control characters.")
    if alias != alias.strip():
        raise KeystoreError("The alias starts or ends with white space.")
    if owner == Owner.TENANT and looks_like_sap_alias(alias):
        raise KeystoreError(
            f"The alias {alias!r} is reserved for SAP, or reads like a reserved one: aliases "
            "starting with 'sap_' or 'hcicertificate', in any letters that look alike, cannot "
            "be uploaded or used by the tenant."
        )
    return alias


def validated_chain(
    certificates: list[x509.Certificate],
    private_key: crypto.PrivateKey | None = None,
    *,
    alias: str | None = None,
    now: datetime | None = None,
    allow_expired: bool = False,
) -> tuple[list[x509.Certificate], list[str]]:
    """Order, verify and check a chain (and its key); returns the chain and warnings. Refusals
    about the leaf name it by `alias`, as the operator knows it."""
    try:
        chain = crypto.order_chain(certificates)
        crypto.verify_chain(chain)
        warnings = crypto.check_strength(chain, leaf_name=alias)
    except crypto.CryptoError as error:
        raise KeystoreError(str(error))
    if private_key is not None and not crypto.private_key_matches(private_key, chain[0]):
        raise KeystoreError("The private key does not match the certificate.")
    now = now or timezone.now()
    leaf = chain[0]
    if not allow_expired and leaf.not_valid_after_utc <= now:
        raise KeystoreError(
            f"The certificate expired on {leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC; "
            "an expired certificate cannot be added."
        )
    if leaf.not_valid_before_utc > now:
        warnings.append(
            f"The certificate is not valid before {leaf.not_valid_before_utc:%Y-%m-%d %H:%M} UTC."
        )
    return chain, warnings


# -- writing entries -------------------------------------------------------------------------


def refuse_overwrite(existing: KeystoreEntry, alias: str, *, owner: str, overwrite: bool) -> None:
    """Refuse to write `alias` over `existing` (the same alias, perhaps in other letter case)
    unless the operator chose overwrite and SAP does not own it."""
    same = repr(alias) if existing.alias == alias else f"{existing.alias!r} (case ignored)"
    if not overwrite:
        raise KeystoreError(f"An entry with alias {same} exists already.")
    if existing.owner == Owner.SAP and owner != Owner.SAP:
        raise KeystoreError(f"{same} is owned by SAP and cannot be overwritten.")


def entry_to_write(
    tenant: Tenant,
    alias: str,
    chain: list[x509.Certificate],
    private_key: crypto.PrivateKey | None,
    existing: KeystoreEntry | None,
    *,
    owner: str,
    actor: Actor,
    label: str | None,
) -> tuple[KeystoreEntry, str]:
    """The unsaved entry for `alias`: `existing` (locked, checked by refuse_overwrite) with its
    next version, or a new row. Returns it with the fingerprint it replaces ("" for a new row).
    An alias that differs from an existing one only in case is the same alias: the entry keeps
    its stored spelling."""
    if existing is not None:
        entry, old_fingerprint = existing, existing.fingerprint_sha256
        entry.version += 1
    else:
        entry, old_fingerprint = KeystoreEntry(tenant=tenant, alias=alias, created_by=actor), ""
    entry.owner = owner
    entry.entry_type = EntryType.KEY_PAIR if private_key is not None else EntryType.CERTIFICATE
    entry.modified_by = actor
    entry.modified_by_label = label or actor_label(actor)
    entry.set_material(chain, private_key)
    entry.active_since = timezone.now()
    return entry, old_fingerprint


def stored_event(
    entry: KeystoreEntry, old_fingerprint: str, actor: Actor, label: str | None, detail: str = ""
) -> AuditEvent:
    return audit_event(
        entry.tenant,
        entry.alias,
        AuditAction.OVERWRITE if old_fingerprint else AuditAction.ADD,
        actor,
        label=label,
        old_fingerprint=old_fingerprint,
        new_fingerprint=entry.fingerprint_sha256,
        detail=detail or f"{entry.get_entry_type_display()} {entry.subject}",
    )


def _store(
    tenant: Tenant,
    alias: str,
    chain: list[x509.Certificate],
    private_key: crypto.PrivateKey | None,
    *,
    owner: str,
    actor: Actor,
    overwrite: bool,
    label: str | None = None,
    detail: str = "",
) -> tuple[KeystoreEntry, bool]:
    """Insert or overwrite one entry with its audit record; returns (entry, overwritten)."""
    existing = (
        KeystoreEntry.objects.select_for_update().filter(tenant=tenant).with_alias(alias).first()
    )
    if existing is not None:
        refuse_overwrite(existing, alias, owner=owner, overwrite=overwrite)
    entry, old_fingerprint = entry_to_write(
        tenant, alias, chain, private_key, existing, owner=owner, actor=actor, label=label
    )
    try:
        with transaction.atomic():
            entry.save()
    except IntegrityError:
        raise KeystoreError(f"An entry with alias {alias!r} exists already.")
    record_audits([stored_event(entry, old_fingerprint, actor, label, detail)])
    return entry, existing is not None


def import_certificate(
    tenant: Tenant,
    alias: str,
    data: bytes,
    *,
    actor: Actor = None,
    overwrite: bool = False,
    allow_expired: bool = False,
) -> KeystoreEntry:
    """Add a trusted certificate (PEM or DER; a PEM bundle is stored as one ordered chain)."""
    permissions.require_of_actor(actor, permissions.DEPLOY, tenant, KeystoreError)
    alias = validate_alias(alias)
    try:
        certificates = crypto.load_certificates(data)
    except crypto.CryptoError as error:
        raise KeystoreError(str(error))
    chain, _warnings = validated_chain(certificates, alias=alias, allow_expired=allow_expired)
    with transaction.atomic():
        entry, _ = _store(
            tenant, alias, chain, None, owner=Owner.TENANT, actor=actor, overwrite=overwrite
        )
        complete_chains(tenant, actor=actor)
    return entry


def import_key_pair(
    tenant: Tenant,
    alias: str,
    data: bytes,
    password: str,
    *,
    actor: Actor = None,
    overwrite: bool = False,
) -> KeystoreEntry:
    """Add a key pair from a PKCS#12 file holding exactly one private key."""
    permissions.require_of_actor(actor, permissions.DEPLOY, tenant, KeystoreError)
    alias = validate_alias(alias)
    item = load_key_pair_file(data, password, "upload it as a keystore instead")
    chain, _warnings = validated_chain(item.chain, item.private_key, alias=alias)
    with transaction.atomic():
        entry, _ = _store(
            tenant,
            alias,
            chain,
            item.private_key,
            owner=Owner.TENANT,
            actor=actor,
            overwrite=overwrite,
        )
    return entry


# -- key pairs made here: create, signing request, signed response -----------------------------

#: The key types a key pair can be created with: (crypto.generate_key_pair kind, size).
KEY_TYPES = {
    "rsa-2048": ("rsa", 2048),
    "rsa-3072": ("rsa", 3072),
    "rsa-4096": ("rsa", 4096),
    "ec-256": ("ec", 256),
    "ec-384": ("ec", 384),
}
MAX_CREATED_VALID_DAYS = 3650


def create_key_pair(
    tenant: Tenant,
    alias: str,
    subject: str,
    *,
    key_type: str = "rsa-2048",
    valid_days: int = 365,
    actor: Actor = None,
) -> KeystoreEntry:
    """Create a key pair in the tenant's keystore: a new private key with a self-signed
    certificate for `subject` (an RFC 4514 distinguished name). Get it signed by a certificate
    authority with `signing_request` and `apply_signing_response`."""
    permissions.require_of_actor(actor, permissions.DEPLOY, tenant, KeystoreError)
    alias = validate_alias(alias)
    if key_type not in KEY_TYPES:
        raise KeystoreError("Choose a key type: " + ", ".join(KEY_TYPES) + ".")
    if not 1 <= valid_days <= MAX_CREATED_VALID_DAYS:
        raise KeystoreError(f"The validity must be 1 to {MAX_CREATED_VALID_DAYS} days.")
    try:
        name = crypto.parse_subject(subject)
    except crypto.CryptoError as error:
        raise KeystoreError(str(error))
    if KeystoreEntry.objects.filter(tenant=tenant).with_alias(alias).exists():
        # Checked before the key is generated (an RSA-4096 key takes a while); _store checks
        # again under the lock.
        raise KeystoreError(f"An entry with alias {alias!r} exists already.")
    key = crypto.generate_key_pair(*KEY_TYPES[key_type])
    return _self_signed_key_pair(
        tenant,
        alias,
        key,
        name,
        valid_days,
        actor=actor,
        overwrite=False,
        made=f"key pair created ({key_type}, self-signed, {valid_days} days)",
    )


def _self_signed_key_pair(
    tenant: Tenant,
    alias: str,
    key: crypto.PrivateKey,
    name: x509.Name,
    valid_days: int,
    *,
    actor: Actor,
    overwrite: bool,
    made: str,
    uploaded: bool = False,
) -> KeystoreEntry:
    now = timezone.now()
    certificate = crypto.issue_certificate(
        name, key, not_before=now - timedelta(minutes=5), not_after=now + timedelta(days=valid_days)
    )
    if uploaded:
        # An uploaded RSA key was loaded without cryptography's validation (too dear for
        # hostile files); one signature proves it works before anything relies on it.
        try:
            crypto.prove_key(key, certificate, "The SSH key")
        except crypto.CryptoError as error:
            raise KeystoreError(str(error))
    with transaction.atomic():
        entry, _ = _store(
            tenant,
            alias,
            [certificate],
            key,
            owner=Owner.TENANT,
            actor=actor,
            overwrite=overwrite,
            detail=f"{made} {name.rfc4514_string()}",
        )
    return entry


def import_ssh_key(
    tenant: Tenant,
    alias: str,
    data: bytes,
    password: str | None,
    subject: str,
    *,
    valid_days: int = 365,
    overwrite: bool = False,
    actor: Actor = None,
) -> KeystoreEntry:
    """An SSH key pair entry: the private key of an OpenSSH or PEM key file, with a self-signed
    certificate for `subject` (Cloud Integration keeps SSH keys as key pairs, for SFTP)."""
    permissions.require_of_actor(actor, permissions.DEPLOY, tenant, KeystoreError)
    alias = validate_alias(alias)
    if not 1 <= valid_days <= MAX_CREATED_VALID_DAYS:
        raise KeystoreError(f"The validity must be 1 to {MAX_CREATED_VALID_DAYS} days.")
    try:
        name = crypto.parse_subject(subject)
        key = crypto.load_ssh_private_key(data, password)
    except crypto.CryptoError as error:
        raise KeystoreError(str(error))
    entry = _self_signed_key_pair(
        tenant,
        alias,
        key,
        name,
        valid_days,
        actor=actor,
        overwrite=overwrite,
        made=f"SSH key imported (self-signed certificate, {valid_days} days)",
        uploaded=True,
    )
    return entry


def _own_key_pair(entry: KeystoreEntry) -> None:
    if entry.entry_type != EntryType.KEY_PAIR:
        raise KeystoreError(
            f"{entry.alias!r} is a certificate entry: only key pairs have a private key to "
            "sign a request with."
        )
    if entry.owner == Owner.SAP:
        raise KeystoreError(f"{entry.alias!r} is owned by SAP; SAP renews it through New SAP Keys.")


def signing_request(entry: KeystoreEntry, *, actor: Actor = None) -> Download:
    """A PKCS#10 certificate signing request (PEM) for a tenant key pair: its subject and
    alternative names, signed with its private key. Nothing is stored; the key pair keeps its
    certificate until the signed response is applied."""
    permissions.require_of_actor(actor, permissions.DEPLOY, entry.tenant, KeystoreError)
    _own_key_pair(entry)
    try:
        key = entry.open_key_pair_key()
    except sealing.SealingError as error:
        raise KeystoreError(f"{entry.alias} in {entry.tenant.slug}: {error}")
    leaf = entry.certificate_chain()[0]
    try:
        names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        names = None
    request = crypto.certificate_signing_request(key, leaf.subject, names)
    return Download(f"{_file_stem(entry.alias)}.csr", "application/pkcs10", request)


def trusted_index(
    tenant: Tenant,
    *,
    also: Iterable[x509.Certificate] = (),
    excluding: Iterable[int] = (),
) -> crypto.IssuerIndex:
    """The tenant's trusted certificates (those of its certificate entries, less the rows
    `excluding` names, plus `also`) by the names that make them issuers."""
    pems = (
        KeystoreEntry.objects.for_tenant(tenant)
        .certificates()
        .exclude(pk__in=list(excluding))
        .values_list("chain_pem", flat=True)
    )
    stored = [cert for pem in pems for cert in x509.load_pem_x509_certificates(pem.encode())]
    return crypto.IssuerIndex([*stored, *also])


def chain_event(entry: KeystoreEntry, actor: Actor) -> AuditEvent:
    return audit_event(
        entry.tenant,
        entry.alias,
        AuditAction.CHAIN,
        actor,
        old_fingerprint=entry.fingerprint_sha256,
        new_fingerprint=entry.fingerprint_sha256,
        detail=f"chain completed up to {entry.root_subject}"
        + ("" if entry.root_known else " (its root is still not known)"),
    )


def complete_chains(tenant: Tenant, *, actor: Actor = None) -> list[KeystoreEntry]:
    """Extend every chain of the tenant that stops short of its root with the tenant's trusted
    certificates: called whenever a certificate is added, so a signed response imported before
    its CA was trusted gets its root. The leaf and the private key stay as they are."""
    candidates = list(
        KeystoreEntry.objects.select_for_update()
        .for_tenant(tenant)
        .filter(root_known=False)
        .order_by("pk")
    )
    if not candidates:
        return []
    trusted = trusted_index(tenant)
    completed = []
    for entry in candidates:
        chain = entry.certificate_chain()
        longer = crypto.extend_chain(chain, trusted)
        if len(longer) == len(chain):
            continue
        entry.set_chain(longer)
        entry.save()
        completed.append(entry)
    record_audits([chain_event(entry, actor) for entry in completed])
    return completed


def apply_signing_response(
    entry: KeystoreEntry, data: bytes, *, actor: Actor = None
) -> tuple[KeystoreEntry, list[str]]:
    """Replace a tenant key pair's certificate with the one a certificate authority signed for
    it (the answer to `signing_request`): PEM, DER or PKCS#7, with or without its chain. The
    chain is completed from the tenant's trusted certificates where the file stops short. The
    private key stays; the certificate must carry its public half and be valid. Returns the
    entry and warnings (weak algorithms, a chain that does not reach a root)."""
    permissions.require_of_actor(actor, permissions.DEPLOY, entry.tenant, KeystoreError)
    _own_key_pair(entry)
    try:
        certificates = crypto.load_certificate_response(data)
    except crypto.CryptoError as error:
        raise KeystoreError(str(error))
    with transaction.atomic():
        locked = _locked_tenant_entry(entry)
        _own_key_pair(locked)
        try:
            key = locked.open_key_pair_key()
        except sealing.SealingError as error:
            raise KeystoreError(f"{locked.alias} in {locked.tenant.slug}: {error}")
        if not any(crypto.private_key_matches(key, cert) for cert in certificates):
            raise KeystoreError(
                f"No certificate in the file belongs to the private key of {locked.alias!r}: "
                "it answers another signing request, or holds only the CA's certificates."
            )
        try:
            ordered = crypto.order_chain(certificates)
        except crypto.CryptoError as error:
            raise KeystoreError(str(error))
        if not crypto.private_key_matches(key, ordered[0]):
            raise KeystoreError(
                "The certificate of this key pair must be the one at the bottom of the chain; "
                "the file holds certificates issued by it."
            )
        completed = crypto.extend_chain(ordered, trusted_index(locked.tenant))
        chain, warnings = validated_chain(completed, key, alias=locked.alias)
        leaf = crypto.certificate_facts(chain[0])
        if leaf.fingerprint_sha256 == locked.fingerprint_sha256:
            raise KeystoreError(
                f"This certificate is the certificate of {locked.alias!r} already; nothing changed."
            )
        if not crypto.certificate_facts(chain[-1]).self_signed:
            warnings.append(
                "The chain ends without a root: its top certificate was issued by "
                f"'{chain[-1].issuer.rfc4514_string()}', which is neither in the file nor among "
                "the tenant's trusted certificates. Add that CA's certificate (up to its root) "
                "to the keystore so that partners can be given the whole chain."
            )
        old_fingerprint = locked.fingerprint_sha256
        locked.version += 1
        locked.set_material(chain, key)
        locked.modified_by = actor
        locked.modified_by_label = actor_label(actor)
        locked.save()
        record_audit(
            locked.tenant,
            locked.alias,
            AuditAction.OVERWRITE,
            actor,
            old_fingerprint=old_fingerprint,
            new_fingerprint=locked.fingerprint_sha256,
            detail=f"signed certificate applied: {leaf.subject}, issued by {leaf.issuer}",
        )
    return locked, warnings


def load_keystore_file(
    data: bytes, password: str, *, pkcs12_only: bool = False
) -> list[crypto.KeystoreItem]:
    """The entries of an uploaded keystore file (PKCS#12, or with `pkcs12_only` False also JKS
    and JCEKS), each refusal a KeystoreError for the operator."""
    if not password:
        raise KeystoreError("The password is missing.")
    try:
        if pkcs12_only:
            if len(data) > crypto.MAX_KEYSTORE_BYTES:
                raise crypto.CryptoError("The file is larger than 1 MiB.")
            return crypto.load_pkcs12(data, password)
        return crypto.load_keystore(data, password)
    except crypto.CryptoError as error:
        raise KeystoreError(str(error))


@dataclass(frozen=True)
class KeyPairFile:
    """The one key pair of an uploaded PKCS#12 file (see load_key_pair_file)."""

    alias: str
    private_key: crypto.PrivateKey
    chain: list[x509.Certificate]


def load_key_pair_file(data: bytes, password: str, many: str) -> KeyPairFile:
    """The one key pair of an uploaded PKCS#12 file; `many` tells the operator what to do with a
    file that holds several."""
    items = load_keystore_file(data, password, pkcs12_only=True)
    pairs = [
        KeyPairFile(item.alias, item.private_key, item.chain)
        for item in items
        if item.private_key is not None
    ]
    if not pairs:
        raise KeystoreError("The PKCS#12 file holds no private key.")
    if len(pairs) > 1:
        raise KeystoreError(f"The PKCS#12 file holds {len(pairs)} key pairs; {many}.")
    return pairs[0]


def create_sap_entry(
    tenant: Tenant,
    alias: str,
    private_key: crypto.PrivateKey,
    chain: list[x509.Certificate],
    *,
    label: str = "SAP",
) -> KeystoreEntry:
    """SAP's own delivery of a key pair (demo seed and tests); never reachable by tenant users."""
    validate_alias(alias, owner=Owner.SAP)
    if not is_sap_alias(alias):
        raise KeystoreError("SAP-owned aliases start with 'sap_' or 'hcicertificate'.")
    chain, _warnings = validated_chain(chain, private_key, alias=alias, allow_expired=True)
    with transaction.atomic():
        entry, _ = _store(
            tenant,
            alias,
            chain,
            private_key,
            owner=Owner.SAP,
            actor=None,
            overwrite=False,
            label=label,
        )
    return entry


def _locked_tenant_entry(entry: KeystoreEntry) -> KeystoreEntry:
    locked = KeystoreEntry.objects.select_for_update().filter(pk=entry.pk).first()
    if locked is None:
        raise KeystoreError(f"The entry {entry.alias!r} no longer exists.")
    if locked.owner == Owner.SAP:
        raise KeystoreError(
            f"{locked.alias!r} is owned by SAP; it changes only through New SAP Keys."
        )
    return locked


def rename_entry(entry: KeystoreEntry, new_alias: str, *, actor: Actor = None) -> KeystoreEntry:
    permissions.require_of_actor(actor, permissions.DEPLOY, entry.tenant, KeystoreError)
    new_alias = validate_alias(new_alias)
    with transaction.atomic():
        locked = _locked_tenant_entry(entry)
        old_alias = locked.alias
        if new_alias == old_alias:
            raise KeystoreError("The new alias is the same as the old one.")
        twin = (
            KeystoreEntry.objects.filter(tenant=locked.tenant)
            .with_alias(new_alias)
            .exclude(pk=locked.pk)
            .first()
        )
        if twin is not None:
            raise KeystoreError(f"An entry with alias {twin.alias!r} exists already.")
        locked.reseal(new_alias=new_alias, new_version=locked.version + 1)
        locked.modified_by = actor
        locked.modified_by_label = actor_label(actor)
        try:
            with transaction.atomic():
                locked.save()
        except IntegrityError:
            raise KeystoreError(f"An entry with alias {new_alias!r} exists already.")
        record_audit(
            locked.tenant,
            new_alias,
            AuditAction.RENAME,
            actor,
            old_fingerprint=locked.fingerprint_sha256,
            new_fingerprint=locked.fingerprint_sha256,
            detail=f"renamed from {old_alias!r}",
        )
    return locked


def delete_entry(entry: KeystoreEntry, *, actor: Actor = None) -> None:
    permissions.require_of_actor(actor, permissions.DEPLOY, entry.tenant, KeystoreError)
    with transaction.atomic():
        locked = _locked_tenant_entry(entry)
        record_audit(
            locked.tenant,
            locked.alias,
            AuditAction.DELETE,
            actor,
            old_fingerprint=locked.fingerprint_sha256,
            detail=f"{locked.get_entry_type_display()} {locked.subject}",
        )
        locked.delete()


def _check_export_password(password: str, actor: Actor) -> None:
    problems = export_password_problems(password or "", actor)
    if problems:
        raise KeystoreError(" ".join(problems))


def export_pkcs12(entry: KeystoreEntry, password: str, *, actor: Actor = None) -> bytes:
    """A key pair as PKCS#12 (AES-256), for holders of NodeManager.readsecuritycontent only."""
    permissions.require_of_actor(actor, permissions.READ_SECURITY, entry.tenant, KeystoreError)
    if not entry.has_private_key:
        raise KeystoreError("Only key pairs can be exported as PKCS#12.")
    _check_export_password(password, actor)
    try:
        private_key = entry.open_key_pair_key()
    except sealing.SealingError as error:  # moved between rows, or its KEK is gone
        raise KeystoreError(f"{entry.alias} in {entry.tenant.slug}: {error}")
    content = crypto.to_pkcs12(entry.alias, private_key, entry.certificate_chain(), password)
    record_audit(
        entry.tenant,
        entry.alias,
        AuditAction.EXPORT,
        actor,
        old_fingerprint=entry.fingerprint_sha256,
        detail="PKCS#12 export",
    )
    return content


def public_keystore(tenant: Tenant, *, actor: Actor = None, backup: bool = False) -> Download:
    """The public content of the tenant's keystore (or, with `backup`, of its server-side
    backup) as a JKS file (every certificate, no private key; chains split into alias, alias_1,
    ...; an empty store password), for every reader."""
    permissions.require_of_actor(actor, permissions.READ, tenant, KeystoreError)
    rows: QuerySet[KeystoreBackupEntry] | QuerySet[KeystoreEntry] = (
        KeystoreBackupEntry.objects.for_tenant(tenant)
        if backup
        else KeystoreEntry.objects.for_tenant(tenant)
    )
    entries = [
        (entry.alias, entry.certificate_chain())
        for entry in rows.order_by("alias").only("alias", "chain_pem")
    ]
    return Download(
        f"{_file_stem(tenant.slug)}{'_backup' if backup else ''}_public.jks",
        "application/octet-stream",
        crypto.public_jks(entries),
    )


def backup_keystore(tenant: Tenant, password: str, *, actor: Actor = None) -> Download:
    """The tenant's whole keystore as one password-protected PKCS#12 file (AES-256): every key
    pair with its chain and every trusted certificate, under their aliases; for holders of
    NodeManager.readsecuritycontent only. keytool and openssl read it; "Add keystore" (with
    overwrite) restores its tenant-owned entries, SAP-owned ones come back only from SAP."""
    permissions.require_of_actor(actor, permissions.READ_SECURITY, tenant, KeystoreError)
    _check_export_password(password, actor)
    entries = list(KeystoreEntry.objects.for_tenant(tenant).order_by("alias"))
    if not entries:
        raise KeystoreError(f"The keystore of tenant {tenant.slug} is empty: nothing to back up.")
    items = []
    for entry in entries:
        try:
            key = entry.open_private_key() if entry.has_private_key else None
        except sealing.SealingError as error:  # moved between rows, or its KEK is gone
            raise KeystoreError(f"{entry.alias} in {tenant.slug}: {error}")
        items.append(crypto.KeystoreItem(entry.alias, key, entry.certificate_chain()))
    try:
        content = crypto.to_pkcs12_keystore(items, password)
    except crypto.CryptoError as error:
        raise KeystoreError(str(error))
    key_pairs = sum(1 for item in items if item.private_key is not None)
    record_audit(
        tenant,
        "",
        AuditAction.EXPORT,
        actor,
        detail=f"keystore backup: {key_pairs} key pairs, {len(items) - key_pairs} certificates",
    )
    stamp = timezone.now().strftime("%Y%m%d-%H%M")
    return Download(
        f"{_file_stem(tenant.slug)}-keystore-{stamp}.p12", "application/x-pkcs12", content
    )


# -- public downloads ------------------------------------------------------------------------


@dataclass(frozen=True)
class Download:
    filename: str
    content_type: str
    content: bytes


PUBLIC_FORMATS = ("cer", "root", "p7b", "pem", "ssh")


def _file_stem(alias: str) -> str:
    # Path separators would make browsers and tools write elsewhere or refuse the name.
    return alias.replace("/", "_").replace("\\", "_") or "entry"


def public_download(material: KeyMaterial, kind: str) -> Download:
    """Public content of an entry, a pending key or a backup; never a private key."""
    chain = material.certificate_chain()
    stem = _file_stem(material.alias)
    if kind == "cer":
        return Download(f"{stem}.cer", "application/pkix-cert", crypto.to_der(chain[0]))
    if kind == "root":
        if not material.root_known:
            top = chain[-1]
            raise KeystoreError(
                f"The root certificate of {material.alias!r} is not known: its chain ends at "
                f"{top.subject.rfc4514_string()}, issued by {top.issuer.rfc4514_string()}, "
                "which is not in the keystore. Add that CA certificate to the keystore (the "
                "chain is then completed), or download the certificate chain for what is known."
            )
        root = crypto.root_certificate(chain)
        return Download(f"{stem}_rootCA.cer", "application/pkix-cert", crypto.to_der(root))
    if kind == "p7b":
        return Download(f"{stem}.p7b", "application/x-pkcs7-certificates", crypto.to_p7b(chain))
    if kind == "pem":
        return Download(f"{stem}.pem", "application/x-pem-file", crypto.to_pem_chain(chain))
    if kind == "ssh":
        # The key pair's public key for SSH servers (SFTP backends): never a trusted certificate.
        if getattr(material, "entry_type", EntryType.KEY_PAIR) != EntryType.KEY_PAIR:
            raise KeystoreError(f"{material.alias!r} is a certificate, not a key pair.")
        try:
            line = crypto.openssh_public_key(chain[0], material.alias)
        except crypto.CryptoError as error:
            raise KeystoreError(str(error))
        return Download(f"{stem}.pub", "text/plain", line)
    raise KeystoreError(f"Unknown download format {kind!r}; choose cer, root, p7b, pem or ssh.")


# -- key-encryption key rotation -------------------------------------------------------------


@dataclass(frozen=True)
class ResealResult:
    resealed: int
    already_current: int


def reseal_all_private_keys(*, batch_size: int = 200) -> ResealResult:
    """Re-encrypt every sealed private key (entries, pending keys, history) under the first KEK.

    Rows are locked and rewritten in small transactions, so the site keeps running; a row that an
    activation changed in between is simply resealed on its new material. Afterwards only the first
    KEK is needed and the others can be removed from KEYSTORE_KEK.
    """
    from django.apps import apps

    from keystore import sealing

    current = sealing.current_kek_id()
    resealed = already = 0
    for model in apps.get_models():
        if not issubclass(model, KeyMaterial):
            continue
        already += model._default_manager.filter(
            sealed_private_key__isnull=False, kek_id=current
        ).count()
        while True:
            with transaction.atomic():
                batch = list(
                    model._default_manager.select_for_update()
                    .filter(sealed_private_key__isnull=False)
                    .exclude(kek_id=current)
                    .order_by("pk")[:batch_size]
                )
                for row in batch:
                    row.reseal()
                    row.save(update_fields=["sealed_private_key", "kek_id"])
            resealed += len(batch)
            if len(batch) < batch_size:
                break
    return ResealResult(resealed=resealed, already_current=already)
