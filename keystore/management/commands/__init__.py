"""Keystore commands: thin callers of keystore.services, keystore.permissions and keystore.demo.

Every refused operation ends in one CommandError line (exit status 1, no traceback). The small
look-ups the commands share live here.
"""

from __future__ import annotations

import os
from pathlib import Path

from django.core.management.base import CommandError

#: Larger than any keystore or certificate the services accept; they give the precise limit.
MAX_INPUT_BYTES = 4 * 1024 * 1024


def get_tenant(slug: str):
    from keystore.models import Tenant

    tenant = Tenant.objects.filter(slug=slug).first()
    if tenant is None:
        raise CommandError(f"Unknown tenant {slug!r}.")
    return tenant


def get_entry(tenant, alias: str):
    from keystore.models import KeystoreEntry

    entry = KeystoreEntry.objects.filter(tenant=tenant, alias=alias).first()
    if entry is None:
        raise CommandError(f"No entry with alias {alias!r} in tenant {tenant.slug!r}.")
    return entry


def read_input_file(name: str) -> bytes:
    path = Path(name)
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_INPUT_BYTES + 1)
    except OSError as error:
        raise CommandError(f"Cannot read {name}: {error.strerror or error}.")
    if len(data) > MAX_INPUT_BYTES:
        raise CommandError(f"{name} is too large to be a certificate or keystore file.")
    return data


def write_output(command, name: str, content: bytes) -> None:
    """Write a command's file output to `name` and report it on the command's stdout."""
    target = Path(name)
    try:
        target.write_bytes(content)
    except OSError as error:
        raise CommandError(f"Cannot write {target}: {error.strerror or error}.")
    command.stdout.write(f"Wrote {target} ({len(content)} bytes).")


def password_from_env(variable: str) -> str:
    """A password named by --password-env: never on the command line, where `ps` shows it."""
    password = os.environ.get(variable, "")
    if not password:
        raise CommandError(f"The environment variable {variable} is not set or empty.")
    return password
