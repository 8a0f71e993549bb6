"""Pure crypto for standing in as SAP: issue the renewed certificate of an SAP-owned key pair.

No Django here. The renewed certificate keeps the current certificate's subject and subject
alternative names, gets a new key, and is signed by the SAP issuing CA (the first certificate of
`ca_chain`, whose key is `ca_key`).
"""

from __future__ import annotations

from datetime import datetime

from cryptography import x509

from keystore.crypto import PrivateKey, issue_certificate


def issue_renewed_certificate(
    current: x509.Certificate,
    new_key: PrivateKey,
    ca_key: PrivateKey,
    ca_chain: list[x509.Certificate],
    *,
    not_before: datetime,
    not_after: datetime,
) -> list[x509.Certificate]:
    """The new chain (leaf first): a certificate for `new_key` with `current`'s subject."""
    try:
        alternative_names = current.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value
    except x509.ExtensionNotFound:
        alternative_names = None
    certificate = issue_certificate(
        current.subject,
        new_key,
        issuer=(ca_chain[0], ca_key),
        not_before=not_before,
        not_after=not_after,
        server_auth=True,
        alternative_names=alternative_names,
    )
    return [certificate, *ca_chain]
