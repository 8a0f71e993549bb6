"""Logging filters, loaded by the LOGGING setting before the apps are ready (no model imports)."""

from __future__ import annotations

import logging


class RefusalRecordFilter(logging.Filter):
    """Drops django.request's record of a 403 (a warning with the whole traceback): the refusal
    is logged once, as one line, by keystore_site.refusals.permission_denied."""

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, "status_code", None) != 403
