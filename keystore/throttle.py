"""Failed-login throttling for the admin login.

Failures are counted per user name and per client address in the cache (Redis when REDIS_URL is
set, so every web worker on every host shares the count). Once either count reaches the limit, the
login form refuses further attempts with a clear message until the lockout window has passed, even
with the right password, so guessing gains nothing.
"""

from __future__ import annotations

import hashlib

from django.contrib.admin.forms import AdminAuthenticationForm
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.http import HttpRequest

from keystore import conf


def _client_address(request: HttpRequest | None) -> str:
    if request is None:
        return "unknown"
    return request.META.get("REMOTE_ADDR", "unknown")


def _keys(request: HttpRequest | None, username: str | None) -> list[str]:
    name = hashlib.sha256((username or "").strip().lower().encode()).hexdigest()[:32]
    return [f"login-fail:user:{name}", f"login-fail:addr:{_client_address(request)}"]


def is_locked(request: HttpRequest | None, username: str | None) -> bool:
    limit = conf.login_failure_limit()
    return any((cache.get(key) or 0) >= limit for key in _keys(request, username))


def record_failure(request: HttpRequest | None, username: str | None) -> None:
    timeout = conf.login_lockout_seconds()
    for key in _keys(request, username):
        if cache.add(key, 1, timeout):
            continue
        try:
            cache.incr(key)
        except ValueError:
            cache.set(key, 1, timeout)


def reset(request: HttpRequest | None, username: str | None) -> None:
    cache.delete_many(_keys(request, username))


class ThrottledAdminAuthenticationForm(AdminAuthenticationForm):
    def clean(self):
        username = self.cleaned_data.get("username")
        if is_locked(self.request, username):
            minutes = max(1, conf.login_lockout_seconds() // 60)
            raise ValidationError(
                f"Too many failed logins. Try again in {minutes} minutes.", code="throttled"
            )
        try:
            cleaned = super().clean()
        except ValidationError:
            record_failure(self.request, username)
            raise
        reset(self.request, username)
        return cleaned
