"""The password that protects a private key leaving the site: a PKCS#12 export or a keystore
backup.

The file travels and can be attacked offline for as long as anyone keeps it, so its password
must pass Django's password validators (AUTH_PASSWORD_VALIDATORS: a common password or
``12345678`` is refused), on top of a minimum length. The services refuse such a password
(keystore.services.export_pkcs12 and backup_keystore); the forms and the backup_keystore
command ask here first, to show the reason beside the field or name the variable.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError

if TYPE_CHECKING:
    from django.contrib.auth.models import User

MIN_EXPORT_PASSWORD_LENGTH = 8


def export_password_problems(password: str, user: User | None = None) -> list[str]:
    """Why `password` may not protect an exported private key; empty when it may.

    `user` (the person exporting) lets the validators refuse a password that resembles the
    user's name or e-mail address.
    """
    if len(password) < MIN_EXPORT_PASSWORD_LENGTH:
        return [f"Choose a password of at least {MIN_EXPORT_PASSWORD_LENGTH} characters."]
    try:
        validate_password(password, user)
    except ValidationError as error:
        return list(error.messages)
    return []
