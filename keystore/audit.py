"""The audit log's one writer: every change to a tenant's keystore (and every site event, such
as a login lockout) is recorded here, in the transaction of the change it reports.

`record_audit` writes one record; `record_audits` writes many in one statement (a flow import
records one per flow). Neither is ever called to record a read.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from django.utils import timezone

from keystore.models import AuditEvent, Tenant

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    #: Who acts: a user (the site's user model is Django's), or None for the system itself.
    Actor = User | None

#: Longer details are cut: the log is for people, and a hostile file must not bloat it.
MAX_DETAIL = 4000


def actor_label(actor: Actor) -> str:
    """How the log names who acted: the user name, or "system" for the scheduler and commands."""
    return actor.get_username() if actor is not None else "system"


def audit_event(
    tenant: Tenant | None,
    alias: str,
    action: str,
    actor: Actor = None,
    *,
    label: str | None = None,
    old_fingerprint: str = "",
    new_fingerprint: str = "",
    detail: str = "",
    at: datetime | None = None,
) -> AuditEvent:
    """An unsaved record (for `record_audits`); `tenant` None is a site event."""
    return AuditEvent(
        tenant=tenant,
        alias=alias,
        action=action,
        actor=actor,
        actor_label=label or actor_label(actor),
        at=at or timezone.now(),
        old_fingerprint=old_fingerprint,
        new_fingerprint=new_fingerprint,
        detail=detail[:MAX_DETAIL],
    )


def record_audit(
    tenant: Tenant | None,
    alias: str,
    action: str,
    actor: Actor = None,
    *,
    label: str | None = None,
    old_fingerprint: str = "",
    new_fingerprint: str = "",
    detail: str = "",
    at: datetime | None = None,
) -> AuditEvent:
    event = audit_event(
        tenant,
        alias,
        action,
        actor,
        label=label,
        old_fingerprint=old_fingerprint,
        new_fingerprint=new_fingerprint,
        detail=detail,
        at=at,
    )
    event.save()
    return event


def record_audits(events: Sequence[AuditEvent]) -> list[AuditEvent]:
    """Many records in one statement (made with `audit_event`)."""
    for event in events:
        event.detail = event.detail[:MAX_DETAIL]
    return AuditEvent.objects.bulk_create(events)
