"""Login lockouts (django-axes) in the audit log.

A lockout is about a user name and an address, not a tenant: it is recorded as a site event
(no tenant), which superusers see in the audit log, and superusers are the ones who unlock.
"""

from __future__ import annotations

import logging

from axes.signals import user_locked_out
from django.conf import settings
from django.dispatch import receiver

from keystore.audit import record_audit
from keystore.models import AuditAction

logger = logging.getLogger(__name__)


@receiver(user_locked_out, dispatch_uid="keystore.audit_lockout")
def audit_lockout(sender, request=None, username=None, ip_address=None, **kwargs) -> None:
    # axes signals every refused attempt while the lockout lasts; the audit log wants the one
    # failure that locked.
    if getattr(request, "axes_failures_since_start", None) != settings.AXES_FAILURE_LIMIT:
        return
    record_audit(
        None,
        "",
        AuditAction.LOCKOUT,
        label=(username or "")[:150] or "(no user name)",
        detail=f"Login locked for user name {username!r} from {ip_address} after repeated "
        "failures.",
    )
    logger.warning("Login locked for user name %r from %s", username, ip_address)
