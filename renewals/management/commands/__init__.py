"""Renewal commands: thin callers of renewals.activation.

Every refused operation, and every command that finds nothing to do, ends in one CommandError
line (exit status 1, no traceback). Times are printed and read as ISO-8601; a time without a
zone is UTC.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import overload

from django.core.management.base import CommandError

from keystore.management.commands import get_tenant  # noqa: F401  (shared look-up)

_FRACTION = re.compile(r"T?\d{2}:\d{2}:\d{2}[.,]\d+")
_SECONDS = re.compile(r"\d{2}:\d{2}:\d{2}")


@overload
def iso(moment: datetime) -> str: ...
@overload
def iso(moment: None) -> None: ...
def iso(moment: datetime | None) -> str | None:
    """The moment in ISO-8601, UTC; None stays None (null in JSON output)."""
    return moment.astimezone(UTC).isoformat() if moment is not None else None


def parse_instant(text: str, option: str) -> tuple[datetime, timedelta | None]:
    """An ISO-8601 time (UTC if no zone is given) and how precisely it was written: None for an
    exact time with fractions of a second, one second or one minute otherwise."""
    value = text.strip()
    try:
        moment = datetime.fromisoformat(value.replace(" ", "T", 1) if " " in value else value)
    except ValueError:
        raise CommandError(
            f"{option} {text!r} is not an ISO-8601 time such as 2025-06-30T12:00:00Z."
        )
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if _FRACTION.search(value):
        precision = None
    elif _SECONDS.search(value):
        precision = timedelta(seconds=1)
    else:
        precision = timedelta(minutes=1)
    return moment.astimezone(UTC), precision


def pending_row(pending) -> dict:
    return {
        "alias": pending.alias,
        "tenant": pending.tenant.slug,
        "source": pending.source,
        "provided_at": iso(pending.provided_at),
        "valid_from": iso(pending.valid_from),
        "valid_until": iso(pending.valid_until),
        "current_valid_until": iso(pending.entry.valid_until),
        "auto_activation_at": iso(pending.auto_activation_at),
        "fingerprint_sha256": pending.fingerprint_sha256,
        "subject": pending.subject,
        "issuer": pending.issuer,
        "root_subject": pending.root_subject,
    }


def backup_row(backup) -> dict:
    return {
        "alias": backup.alias,
        "tenant": backup.tenant.slug,
        "active_from": iso(backup.active_from),
        "active_until": iso(backup.active_until),
        "activated_by": backup.activated_by_label,
        "fingerprint_sha256": backup.fingerprint_sha256,
        "valid_from": iso(backup.valid_from),
        "valid_until": iso(backup.valid_until),
    }
