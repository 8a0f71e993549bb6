"""The record of every TLS connectivity test that was attempted: who, where, with which key, and
what happened; and the claims of the tests running right now (see limits.py).

A run is written once, after the handshake, and never changed. It holds public facts only: the
fingerprint of the client certificate that was used, never its private key; the server's
certificates are public and are kept (DER, base64) so the result page can offer them for download
and their root for adding to the keystore without connecting again.
"""

from __future__ import annotations

import base64
from datetime import datetime

from django.conf import settings
from django.db import models

from keystore.models import ALIAS_MAX_LENGTH, Tenant
from keystore.querysets import TenantScopedQuerySet
from renewals.connectivity.probe import Outcome


class KeyUsed(models.TextChoices):
    NONE = "none", "No client certificate"
    CURRENT = "current", "Current key"
    PENDING = "pending", "New SAP key (pending)"


OUTCOME_CHOICES = [(outcome.value, outcome.value.capitalize()) for outcome in Outcome]


class ConnectivityTestRunQuerySet(TenantScopedQuerySet):
    """`visible_to(user, READ_CREDENTIALS)`: the runs of the tenants where the user may test."""


class ConnectivityTestRun(models.Model):
    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, related_name="connectivity_test_runs"
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    actor_label = models.CharField("run by", max_length=150)
    started_at = models.DateTimeField(db_index=True)

    host = models.CharField(max_length=255)
    port = models.PositiveIntegerField()
    timeout = models.FloatField(help_text="Seconds.")
    verify_server = models.BooleanField("validate server certificate")
    use_system_trust = models.BooleanField("also trust the system trust store")

    alias = models.CharField(max_length=ALIAS_MAX_LENGTH, blank=True)  # "" = no client cert
    include_pending = models.BooleanField("new SAP key asked for", default=False)
    key_used = models.CharField(max_length=8, choices=KeyUsed.choices)
    key_fingerprint = models.CharField("client certificate SHA-256", max_length=95, blank=True)

    outcome = models.CharField(max_length=48, choices=OUTCOME_CHOICES, db_index=True)
    message = models.TextField()
    tls_version = models.CharField("TLS version", max_length=16, blank=True)
    cipher = models.CharField(max_length=128, blank=True)
    # [{subject, issuer, not_before, not_after, fingerprint_sha256, self_signed, der_b64}], leaf
    # first, as the server sent it; times are ISO-8601 UTC.
    server_chain = models.JSONField(default=list, blank=True)
    client_certificate_requested = models.BooleanField(null=True)  # None = unknown
    acceptable_ca_names = models.JSONField(default=list, blank=True)
    client_certificate_sent = models.BooleanField(default=False)
    client_certificate_accepted = models.BooleanField(null=True)
    elapsed_ms = models.PositiveIntegerField(default=0)

    objects = ConnectivityTestRunQuerySet.as_manager()

    class Meta:
        verbose_name = "connectivity test"
        verbose_name_plural = "connectivity tests"
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["tenant", "started_at"])]

    def __str__(self) -> str:
        return f"{self.target} at {self.started_at:%Y-%m-%d %H:%M:%S} ({self.outcome})"

    @property
    def succeeded(self) -> bool:
        return self.outcome == Outcome.SUCCESS.value

    @property
    def target(self) -> str:
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return f"{host}:{self.port}"

    @property
    def key_note(self) -> str:
        """Which key authenticated, in a sentence (the issue's "say which was used")."""
        if self.key_used == KeyUsed.PENDING:
            return f"The new SAP key of {self.alias} (waiting in New SAP Keys) was used."
        if self.key_used == KeyUsed.CURRENT and self.include_pending:
            return f"No new SAP key is waiting for {self.alias}; its current key was used."
        if self.key_used == KeyUsed.CURRENT:
            return f"The current key of {self.alias} was used."
        return "No client certificate was configured for this test."

    def server_certificate_der(self, index: int) -> bytes | None:
        if not 0 <= index < len(self.server_chain):
            return None
        return base64.b64decode(self.server_chain[index]["der_b64"])

    def server_certificates(self) -> list[dict]:
        """The stored chain with times as datetimes, for display."""
        return [
            {
                **cert,
                "index": index,
                "not_before": datetime.fromisoformat(cert["not_before"]),
                "not_after": datetime.fromisoformat(cert["not_after"]),
            }
            for index, cert in enumerate(self.server_chain)
        ]

    def as_dict(self) -> dict:
        """Everything about the run in JSON types (the server certificates without their DER)."""
        return {
            "id": self.pk,
            "tenant": self.tenant.slug,
            "started_at": self.started_at.isoformat(),
            "run_by": self.actor_label,
            "host": self.host,
            "port": self.port,
            "timeout": self.timeout,
            "verify_server": self.verify_server,
            "use_system_trust": self.use_system_trust,
            "alias": self.alias,
            "include_pending": self.include_pending,
            "key_used": self.key_used,
            "key_fingerprint": self.key_fingerprint,
            "success": self.succeeded,
            "outcome": self.outcome,
            "message": self.message,
            "tls_version": self.tls_version,
            "cipher": self.cipher,
            "server_chain": [
                {key: value for key, value in cert.items() if key != "der_b64"}
                for cert in self.server_chain
            ],
            "client_certificate_requested": self.client_certificate_requested,
            "acceptable_ca_names": self.acceptable_ca_names,
            "client_certificate_sent": self.client_certificate_sent,
            "client_certificate_accepted": self.client_certificate_accepted,
            "elapsed_ms": self.elapsed_ms,
        }


class RunningConnectivityTest(models.Model):
    """A test that is running now, holding one of the site's slots and one of its user's.

    The unique slot numbers make a claim a plain insert that only one worker can win, on SQLite
    and PostgreSQL alike, without locking a table. The row is deleted when the test ends; a row
    left behind by a killed worker expires (limits.STALE_AFTER).
    """

    site_slot = models.PositiveSmallIntegerField(unique=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    user_slot = models.PositiveSmallIntegerField()
    claimed_at = models.DateTimeField(db_index=True)

    class Meta:
        verbose_name = "running connectivity test"
        constraints = [
            models.UniqueConstraint(
                fields=["user", "user_slot"], name="connectivity_running_one_per_user_slot"
            )
        ]

    def __str__(self) -> str:
        return f"slot {self.site_slot} since {self.claimed_at:%Y-%m-%d %H:%M:%S}"
