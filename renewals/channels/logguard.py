"""Keep channel URLs out of the logs, and keep apprise's own words for the outbox row.

apprise logs the full webhook address at DEBUG ("JSON POST URL: http://host/path-with-token"),
and urllib3 logs each request's path at DEBUG ("POST /hook/<token> HTTP/1.1"); with
DJANGO_LOG_LEVEL=DEBUG both would reach the site's log. So: apprise's records never propagate
(this app is apprise's only user); while a channel delivery runs in this thread, urllib3's are
dropped too; and apprise's warnings of that delivery are collected, so that the failure can be
stored and logged once, with every part of the URL blanked out (`redact`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from urllib.parse import parse_qsl, unquote, urlsplit

APPRISE_LOGGER = "apprise"
URLLIB3_LOGGERS = (
    "urllib3",
    "urllib3.connectionpool",
    "urllib3.connection",
    "urllib3.poolmanager",
    "urllib3.response",
    "urllib3.util.retry",
)

_capture: ContextVar[list[str] | None] = ContextVar("channel_delivery_log", default=None)


class _AppriseRecords(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        captured = _capture.get()
        if captured is not None and record.levelno >= logging.WARNING:
            captured.append(record.getMessage())
        return False


class _DuringDelivery(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return _capture.get() is None


_APPRISE_FILTER = _AppriseRecords()
_URLLIB3_FILTER = _DuringDelivery()


def install() -> None:
    """Idempotent: a filter is added to a logger once."""
    apprise_logger = logging.getLogger(APPRISE_LOGGER)
    if _APPRISE_FILTER not in apprise_logger.filters:
        apprise_logger.addFilter(_APPRISE_FILTER)
    for name in URLLIB3_LOGGERS:
        logger = logging.getLogger(name)
        if _URLLIB3_FILTER not in logger.filters:
            logger.addFilter(_URLLIB3_FILTER)


@contextmanager
def delivery_log() -> Iterator[list[str]]:
    """apprise's warnings and errors during the block, in order (URLs not yet blanked)."""
    install()
    captured: list[str] = []
    token = _capture.set(captured)
    try:
        yield captured
    finally:
        _capture.reset(token)


MIN_SECRET_PIECE = 4


def secret_pieces(url: str) -> list[str]:
    """Every part of a channel URL that may be a credential, longest first: the URL, its user
    and password, host, path segments and query values."""
    pieces = {url}
    try:
        parts = urlsplit(url)
        pieces.update([parts.netloc, parts.username or "", parts.password or ""])
        pieces.add(parts.hostname or "")
        pieces.update(segment for segment in parts.path.split("/"))
        pieces.update(value for _name, value in parse_qsl(parts.query))
    except ValueError:
        pass
    pieces.update({unquote(piece) for piece in pieces})
    return sorted((p for p in pieces if len(p) >= MIN_SECRET_PIECE), key=len, reverse=True)


def redact(text: str, url: str, keep: str = "") -> str:
    """`text` with every secret piece of `url` replaced by "***"; `keep` (the host a person
    may see anyway) stays readable."""
    for piece in secret_pieces(url):
        if piece and piece != keep:
            text = text.replace(piece, "***")
    return text
