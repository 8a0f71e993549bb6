"""What the where-used operations tell the operator when they refuse or a step fails.

Shared by importing, the renewal pack and restart, so that each speaks with one error type and
puts a failure on one line (messages end up in admin messages, command output and result rows).
"""

from __future__ import annotations

from keystore.services import KeystoreError


class WhereUsedError(KeystoreError):
    """A where-used operation was refused; the message is for the operator."""


def one_line(value: object, limit: int = 300) -> str:
    """`value` as one line of at most `limit` characters (errors carry line breaks)."""
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
