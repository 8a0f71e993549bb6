"""The state of a tenant keystore: tenants, entries, key material sealed at rest, and the audit log.

Certificate facts are columns written together with the material, so lists and filters never parse
a certificate. Private keys exist only sealed (see sealing.py); no model method returns them in a
form that could end up in a page.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from cryptography import x509
from django.conf import settings
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone

from keystore import aliases, crypto, sealing
from keystore.querysets import (
    AuditQuerySet,
    EntryQuerySet,
    TenantQuerySet,
    TenantScopedQuerySet,
)
from keystore.rolemodels import (  # noqa: F401  Django finds an app's models in its models module
    TenantGroupObjectPermission,
    TenantRole,
    TenantUserObjectPermission,
)

ALIAS_MAX_LENGTH = 250
SAP_ALIAS_PREFIXES = ("sap_", "hcicertificate")


def is_sap_alias(alias: str) -> bool:
    return alias.lower().startswith(SAP_ALIAS_PREFIXES)


def looks_like_sap_alias(alias: str) -> bool:
    """Reads like a reserved alias, whatever look-alike letters spell it (keystore.aliases)."""
    return is_sap_alias(alias) or aliases.looks_like(alias, SAP_ALIAS_PREFIXES)


class Tenant(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["slug"]
        permissions = [
            ("NodeManager.read", "See entries and download public content"),
            (
                "NodeManager.deploysecuritycontent",
                "Add, change, delete, activate and revert keystore content",
            ),
            ("NodeManager.readsecuritycontent", "Export key pairs and whole keystores"),
            ("NodeManager.readcredentials", "Run connectivity tests"),
        ]

    def __str__(self) -> str:
        return self.slug


class EntryType(models.TextChoices):
    KEY_PAIR = "key_pair", "Key pair"
    CERTIFICATE = "certificate", "Certificate"


class Owner(models.TextChoices):
    SAP = "sap", "SAP"
    TENANT = "tenant", "Tenant"


class KeyMaterial(models.Model):
    """A certificate chain (leaf first), an optional sealed private key, and the leaf's facts."""

    SEALING_LABEL = "material"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    alias = models.CharField(max_length=ALIAS_MAX_LENGTH)
    chain_pem = models.TextField(editable=False)
    sealed_private_key = models.BinaryField(null=True, editable=False)
    kek_id = models.CharField(max_length=32, blank=True, editable=False)
    material_id = models.UUIDField(default=uuid.uuid4, editable=False)
    version = models.PositiveIntegerField(default=1, editable=False)

    subject = models.CharField(max_length=1024, db_index=True)
    issuer = models.CharField(max_length=1024, db_index=True)
    subject_cn = models.CharField(max_length=255, blank=True)
    issuer_cn = models.CharField(max_length=255, blank=True)
    serial = models.CharField(max_length=64, db_index=True)
    valid_from = models.DateTimeField()
    valid_until = models.DateTimeField(db_index=True)
    key_type = models.CharField(max_length=16)
    key_size = models.PositiveIntegerField()
    signature_algorithm = models.CharField(max_length=64)
    fingerprint_sha256 = models.CharField(max_length=95, db_index=True)
    # Reported by the Cloud Integration API (keystore_site.api) for every entry.
    fingerprint_sha1 = models.CharField(max_length=59, blank=True, editable=False)
    fingerprint_sha512 = models.CharField(max_length=191, blank=True, editable=False)
    elliptic_curve = models.CharField(max_length=32, blank=True, editable=False)
    root_subject = models.CharField(max_length=1024, blank=True)
    root_fingerprint_sha256 = models.CharField(max_length=95, blank=True)
    chain_length = models.PositiveSmallIntegerField(default=1)
    # False while the chain stops short of a self-signed root (a signed response imported
    # before its CA was trusted): its "root" download is refused, and adding the CA completes it.
    root_known = models.BooleanField(default=True)

    class Meta:
        abstract = True

    # -- writing -----------------------------------------------------------------------------

    def sealing_context(self) -> bytes:
        return "|".join(
            [
                self.SEALING_LABEL,
                str(self.tenant_id),
                self.alias,
                str(self.material_id),
                str(self.version),
            ]
        ).encode("utf-8")

    def set_material(
        self, chain: list[x509.Certificate], private_key: crypto.PrivateKey | None
    ) -> None:
        """Store chain and key, sealing the key for this row; refreshes the fact columns."""
        self.set_chain(chain)
        self._seal(private_key)

    def set_chain(self, chain: list[x509.Certificate]) -> None:
        """Store the chain and refresh the fact columns; the sealed key stays as it is (a chain
        completed towards its root keeps its leaf and key)."""
        leaf = chain[0]
        facts = crypto.certificate_facts(leaf)
        root = crypto.root_certificate(chain)
        root_facts = crypto.certificate_facts(root) if root is not leaf else facts
        self.chain_pem = crypto.to_pem_chain(chain).decode("ascii")
        self.chain_length = len(chain)
        self.subject = facts.subject[:1024]
        self.issuer = facts.issuer[:1024]
        self.subject_cn = facts.subject_cn[:255]
        self.issuer_cn = facts.issuer_cn[:255]
        self.serial = facts.serial[:64]
        self.valid_from = facts.not_before
        self.valid_until = facts.not_after
        self.key_type = facts.key_type
        self.key_size = facts.key_size
        self.signature_algorithm = facts.signature_algorithm[:64]
        self.fingerprint_sha256 = facts.fingerprint_sha256
        self.fingerprint_sha1 = facts.fingerprint_sha1
        self.fingerprint_sha512 = facts.fingerprint_sha512
        self.elliptic_curve = facts.elliptic_curve
        self.root_subject = root_facts.subject[:1024]
        self.root_fingerprint_sha256 = root_facts.fingerprint_sha256
        self.root_known = root_facts.self_signed

    def _seal(self, private_key: crypto.PrivateKey | None) -> None:
        if private_key is None:
            self.sealed_private_key = None
            self.kek_id = ""
            return
        self.kek_id, self.sealed_private_key = sealing.seal(
            crypto.private_key_to_der(private_key), self.sealing_context()
        )

    def copy_material_from(self, other: KeyMaterial) -> None:
        """Take over another row's chain and key; the key is resealed for this row."""
        self.set_material(other.certificate_chain(), other.open_private_key())

    def reseal(self, *, new_alias: str | None = None, new_version: int | None = None) -> None:
        """Re-encrypt for a changed row identity (rename, KEK rotation)."""
        key = self.open_private_key()
        if new_alias is not None:
            self.alias = new_alias
        if new_version is not None:
            self.version = new_version
        self._seal(key)

    # -- reading -----------------------------------------------------------------------------

    @property
    def has_private_key(self) -> bool:
        return self.sealed_private_key is not None

    def certificate_chain(self) -> list[x509.Certificate]:
        return x509.load_pem_x509_certificates(self.chain_pem.encode("ascii"))

    def certificate(self) -> x509.Certificate:
        return self.certificate_chain()[0]

    def open_key_pair_key(self) -> crypto.PrivateKey:
        """The private key of a key pair (SealingError when the row holds none, a trusted
        certificate); for crypto operations in memory only, never render or log it."""
        key = self.open_private_key()
        if key is None:
            raise sealing.SealingError(f"{self.alias} holds no private key.")
        return key

    def open_private_key(self) -> crypto.PrivateKey | None:
        """The private key, for crypto operations in memory only; never render or log it."""
        if self.sealed_private_key is None:
            return None
        der = sealing.unseal(self.kek_id, bytes(self.sealed_private_key), self.sealing_context())
        return crypto.private_key_from_der(der)

    def is_expired(self, now: datetime) -> bool:
        return self.valid_until <= now


class KeystoreEntry(KeyMaterial):
    SEALING_LABEL = "keystore-entry"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="entries")
    entry_type = models.CharField(max_length=16, choices=EntryType.choices, db_index=True)
    owner = models.CharField(max_length=8, choices=Owner.choices, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    modified_at = models.DateTimeField(auto_now=True)
    modified_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    modified_by_label = models.CharField("modified by", max_length=150, blank=True)
    # When the current key material became active (creation, overwrite or activation).
    active_since = models.DateTimeField(default=timezone.now)

    objects = EntryQuerySet.as_manager()

    class Meta:
        verbose_name = "keystore entry"
        verbose_name_plural = "keystore entries"
        ordering = ["tenant__slug", "alias"]
        constraints = [
            # Java keystores and Cloud Integration treat aliases case-insensitively.
            models.UniqueConstraint(
                Lower("alias"), "tenant", name="unique_alias_per_tenant_ignoring_case"
            ),
        ]
        indexes = [models.Index(fields=["tenant", "valid_until"])]

    def __str__(self) -> str:
        return f"{self.tenant.slug}/{self.alias}" if self.tenant_id else self.alias

    @property
    def is_sap_owned(self) -> bool:
        return self.owner == Owner.SAP


class KeystoreBackup(models.Model):
    """The server-side backup of a tenant's keystore, Cloud Integration's `backup_admin_system`:
    a copy of the tenant-owned entries (SAP-owned ones are SAP's to restore). One per tenant;
    the next backup replaces it."""

    tenant = models.OneToOneField(Tenant, on_delete=models.CASCADE, related_name="server_backup")
    made_at = models.DateTimeField()
    made_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    made_by_label = models.CharField("made by", max_length=150, blank=True)

    class Meta:
        verbose_name = "server-side keystore backup"

    def __str__(self) -> str:
        return f"{self.tenant.slug} backup of {self.made_at:%Y-%m-%d %H:%M}"


class KeystoreBackupEntry(KeyMaterial):
    """One entry of a server-side backup, its private key sealed for this row (so rotate_kek
    reseals it with every other KeyMaterial)."""

    SEALING_LABEL = "keystore-backup-entry"

    backup = models.ForeignKey(KeystoreBackup, on_delete=models.CASCADE, related_name="entries")
    entry_type = models.CharField(max_length=16, choices=EntryType.choices)
    # The backed-up entry's last change, as the backup keystore's listing reports it.
    modified_at = models.DateTimeField()
    modified_by_label = models.CharField("modified by", max_length=150, blank=True)

    objects = TenantScopedQuerySet["KeystoreBackupEntry"].as_manager()

    class Meta:
        verbose_name = "server-side backup entry"
        verbose_name_plural = "server-side backup entries"
        ordering = ["alias"]
        constraints = [
            models.UniqueConstraint(
                Lower("alias"), "backup", name="unique_alias_per_backup_ignoring_case"
            ),
        ]

    def __str__(self) -> str:
        return f"backup of {self.alias}"


class AuditAction(models.TextChoices):
    ADD = "add", "Added"
    OVERWRITE = "overwrite", "Overwritten"
    RENAME = "rename", "Renamed"
    DELETE = "delete", "Deleted"
    EXPORT = "export", "Exported (PKCS#12)"
    PROVISION = "provision", "New SAP key provided"
    ACTIVATE = "activate", "Activated"
    REVERT = "revert", "Added back to New SAP Keys"
    ROLE = "role", "Role assigned"
    LOCKOUT = "lockout", "Login locked"
    CHAIN = "chain", "Chain completed"
    FLOW_IMPORT = "flow_import", "Flow imported"
    FLOW_REMOVE = "flow_remove", "Flow removed"
    FLOW_RESTART = "flow_restart", "Flow restarted"
    API_CLIENT = "api_client", "API client"
    BACKUP = "backup", "Backed up on the server"
    RESTORE = "restore", "Restored from the server backup"
    OTHER = "other", "Other"


class AuditEvent(models.Model):
    # No tenant: a site event (a login lockout), seen by superusers only.
    tenant = models.ForeignKey(
        Tenant, null=True, blank=True, on_delete=models.CASCADE, related_name="audit_events"
    )
    alias = models.CharField(max_length=ALIAS_MAX_LENGTH, blank=True)
    action = models.CharField(max_length=16, choices=AuditAction.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    actor_label = models.CharField("actor", max_length=150, blank=True)
    at = models.DateTimeField(db_index=True)
    old_fingerprint = models.CharField(max_length=95, blank=True)
    new_fingerprint = models.CharField(max_length=95, blank=True)
    detail = models.TextField(blank=True)

    objects = AuditQuerySet.as_manager()

    class Meta:
        ordering = ["-at", "-id"]
        # Plain B-trees: db_index on a CharField adds a second (LIKE pattern) index on
        # PostgreSQL that no query here uses, and every audit record would write it.
        indexes = [
            models.Index(fields=["alias"], name="keystore_audit_alias"),
            models.Index(fields=["action"], name="keystore_audit_action"),
        ]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.actor_label} {self.action} {self.alias}"
