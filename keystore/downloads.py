"""HTTP responses for file downloads, with a Content-Disposition that is safe for any alias."""

from __future__ import annotations

from django.http import HttpResponse
from django.utils.http import content_disposition_header

from keystore.services import Download


def file_response(download: Download) -> HttpResponse:
    response = HttpResponse(download.content, content_type=download.content_type)
    # Django quotes ASCII names and uses RFC 5987 filename* for anything else.
    response["Content-Disposition"] = content_disposition_header(True, download.filename)
    response["Content-Length"] = str(len(download.content))
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "no-store"
    return response
