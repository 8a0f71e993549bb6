"""The password that protects a private key leaving the site: a PKCS#12 export or a keystore
backup.

The file travels and can be attacked offline for as long as anyone keeps it, so its password
must pass Django's password validators (AUTH_PASSWORD_VALIDATORS: a common password or
``12345678`` is refused), on top of the services' own minimum length. The export form, the
backup form and the backup_keystore command all ask here before the file is written.
"""

from __future__ import annotations

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError

from keystore.services import MIN_EXPORT_PASSWORD_LENGTH


def export_password_problems(password: str, user=None) -> list[str]:
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
