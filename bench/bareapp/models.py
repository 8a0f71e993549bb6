"""The baseline of the changelist benchmark: the keystore entry's columns in a plain model.

No permission logic, no custom columns, no querysets of its own: what Django admin costs to show
the same rows, in the same order, with the same filters.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone


class BareEntry(models.Model):
    tenant = models.ForeignKey("keystore.Tenant", on_delete=models.CASCADE, related_name="+")
    alias = models.CharField(max_length=250)
    entry_type = models.CharField(max_length=16, db_index=True)
    owner = models.CharField(max_length=8, db_index=True)
    chain_pem = models.TextField()
    sealed_private_key = models.BinaryField(null=True)
    kek_id = models.CharField(max_length=32, blank=True)
    material_id = models.UUIDField(default=uuid.uuid4)
    version = models.PositiveIntegerField(default=1)
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
    root_subject = models.CharField(max_length=1024, blank=True)
    root_fingerprint_sha256 = models.CharField(max_length=95, blank=True)
    chain_length = models.PositiveSmallIntegerField(default=1)
    created_at = models.DateTimeField(default=timezone.now)
    modified_at = models.DateTimeField(default=timezone.now)
    modified_by_label = models.CharField(max_length=150, blank=True)
    active_since = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["tenant__slug", "alias"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "alias"], name="bare_unique_alias_per_tenant")
        ]
        indexes = [models.Index(fields=["tenant", "valid_until"], name="bare_tenant_valid_until")]

    def __str__(self) -> str:
        return self.alias
