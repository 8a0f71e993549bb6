"""django-oauth-toolkit's request validator with one change: client secrets are checked with
keystore_site.api.hashers only (its default looks the hasher up in PASSWORD_HASHERS and, failing
that, compares the secret with the stored text as if it were not hashed)."""

from __future__ import annotations

from oauth2_provider.oauth2_validators import OAuth2Validator

from keystore_site.api.hashers import check_client_secret


class ClientSecretValidator(OAuth2Validator):
    def _check_secret(self, provided_secret: str, stored_secret: str) -> bool:
        return check_client_secret(provided_secret, stored_secret)
