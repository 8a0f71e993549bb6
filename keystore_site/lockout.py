"""The page a locked-out login gets (django-axes' AXES_LOCKOUT_CALLABLE): in the site's frame,
with the time left and who can unlock, instead of axes' bare text."""

from __future__ import annotations

from axes.helpers import get_cool_off
from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials=None
) -> HttpResponse:
    cool_off = get_cool_off(request)
    minutes = max(1, int(cool_off.total_seconds() // 60)) if cool_off else 15
    context = {**admin.site.each_context(request), "title": "Login locked", "minutes": minutes}
    return render(request, "admin/login_locked.html", context, status=429)
