"""How the site writes a moment: UTC, to the minute (or second), the same on every page, mail,
command and message."""

from __future__ import annotations

from datetime import UTC, datetime


def utc(moment: datetime | None, *, seconds: bool = False, label: bool = False) -> str:
    """ "2026-12-02 04:44" ("... 04:44:09" with `seconds`, "... UTC" with `label`); "" for None."""
    if moment is None:
        return ""
    text = moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")
    return f"{text} UTC" if label else text
