"""How API client secrets are stored: salted SHA-256.

A client secret is 256 random bits made here (keystore_site.api.clients), not a password a person
chose, so key stretching adds no protection, while Django's default PBKDF2 (a million rounds,
about 0.3 s) would make every call with HTTP Basic credentials that slow and hand attackers a way
to make us burn CPU. django-oauth-toolkit hashes with the hasher given as CLIENT_SECRET_HASHER
(an instance, so that PASSWORD_HASHERS, the hashers of people's passwords, stays as it is), and
keystore_site.api.validators checks secrets with `check_client_secret` only.
"""

from __future__ import annotations

import hashlib
import secrets

from django.contrib.auth.hashers import BasePasswordHasher, mask_hash
from django.utils.crypto import constant_time_compare


class ClientSecretHasher(BasePasswordHasher):
    algorithm = "sha256_client_secret"

    def salt(self) -> str:
        return secrets.token_hex(16)

    def encode(self, password: str, salt: str) -> str:
        if password is None or not salt or "$" in salt:
            raise ValueError("A client secret and a salt without '$' are needed.")
        digest = hashlib.sha256(f"{salt}${password}".encode()).hexdigest()
        return f"{self.algorithm}${salt}${digest}"

    def decode(self, encoded: str) -> dict:
        algorithm, salt, digest = encoded.split("$", 2)
        assert algorithm == self.algorithm
        return {"algorithm": algorithm, "hash": digest, "salt": salt}

    def verify(self, password: str, encoded: str) -> bool:
        decoded = self.decode(encoded)
        return constant_time_compare(encoded, self.encode(password, decoded["salt"]))

    def safe_summary(self, encoded: str) -> dict:
        decoded = self.decode(encoded)
        return {"algorithm": decoded["algorithm"], "hash": mask_hash(decoded["hash"])}

    def harden_runtime(self, password: str, encoded: str) -> None:
        pass


def check_client_secret(secret: str, stored: str) -> bool:
    """Whether `secret` is the one `stored` was made from; anything not made here is refused."""
    hasher = ClientSecretHasher()
    if not isinstance(secret, str) or not stored.startswith(hasher.algorithm + "$"):
        return False
    return hasher.verify(secret, stored)
