"""Pure cryptography for the tenant keystore: parse, check, order and write keys and certificates.

Nothing here knows about Django, tenants or the database, so it can be tested and benchmarked
alone. Everything that reads untrusted bytes (``load_*``) raises :class:`CryptoError` and nothing
else; its message is a short sentence for an operator and never contains a password or key bytes.
Every key derivation and every signature check an uploaded file asks for is priced before it is
made, and a file that asks too much is refused with one line naming the limit.

One module per job; callers use the names below (``from keystore import crypto``):

==================  ============================================================================
errors              CryptoError, the size check before parsing
facts               certificate facts (subject, validity, key, fingerprint, self-signed)
signatures          whether one certificate signed another, and what a check costs
certfiles           certificate files: PEM, DER (.cer), PKCS#7 (.p7b), a CA's response
chains              ordering and verifying chains; finding issuers at a capped price
keys                private keys: types, matching, storing, generating, proving uploads cheap
strength            weak keys and signature hashes in a chain
kdf                 key-derivation pricing and caps, and the derivations themselves
pbe                 password-based decryption cryptography does not offer (PKCS#12 safes)
items               KeystoreItem, what every keystore reader returns
pkcs12_import       reading PKCS#12 keystores
pkcs12_export       writing PKCS#12 exports and backups
jks_import          reading JKS and JCEKS keystores (pyjks)
keystores           load_keystore: either kind of keystore upload
issuing             certificates, renewed SAP certificates and signing requests
asn1                pyasn1 decoding shared by the password-based readers
==================  ============================================================================
"""

from __future__ import annotations

# cryptography's PKCS#12 module: tests replace its writers through this name.
from cryptography.hazmat.primitives.serialization import pkcs12

from keystore.crypto.certfiles import (
    MAX_CERTIFICATE_BYTES,
    load_certificate_response,
    load_certificates,
    load_p7b,
    to_der,
    to_p7b,
    to_pem_chain,
)
from keystore.crypto.chains import (
    MAX_SIGNATURE_WORK,
    IssuerIndex,
    extend_chain,
    order_chain,
    root_certificate,
    verify_chain,
)
from keystore.crypto.errors import CryptoError
from keystore.crypto.facts import CertificateFacts, certificate_facts
from keystore.crypto.issuing import (
    MAX_SUBJECT_LENGTH,
    certificate_signing_request,
    issue_certificate,
    issue_renewed_certificate,
    parse_subject,
)
from keystore.crypto.items import MAX_KEYSTORE_BYTES, KeystoreItem
from keystore.crypto.jks_import import JCEKS_MAGIC, JKS_MAGIC, load_jks
from keystore.crypto.kdf import (
    MAX_KDF_ITERATIONS,
    MAX_KDF_WORK,
    MAX_SCRYPT_MEMORY,
)
from keystore.crypto.kdf import KdfBudget as _KdfBudget
from keystore.crypto.keys import (
    MAX_RSA_KEY_BITS,
    MIN_RSA_KEY_BITS,
    PrivateKey,
    generate_key_pair,
    openssh_public_key,
    private_key_from_der,
    private_key_matches,
    private_key_to_der,
    prove_key,
)
from keystore.crypto.keystores import load_keystore
from keystore.crypto.pkcs12_export import (
    MIN_BACKUP_KDF_ROUNDS,
    PKCS12_KDF_ROUNDS,
    to_pkcs12,
    to_pkcs12_keystore,
)
from keystore.crypto.pkcs12_export import backup_kdf_cost as _backup_kdf_cost
from keystore.crypto.pkcs12_export import backup_rounds as _backup_rounds
from keystore.crypto.pkcs12_import import load_pkcs12
from keystore.crypto.pkcs12_import import pfx_parts as _pfx_parts
from keystore.crypto.pkcs12_import import plain_bags as _plain_bags
from keystore.crypto.public_store import public_jks
from keystore.crypto.signatures import is_self_signed
from keystore.crypto.sshkeys import load_ssh_private_key
from keystore.crypto.strength import check_strength

__all__ = [
    "JCEKS_MAGIC",
    "JKS_MAGIC",
    "MAX_CERTIFICATE_BYTES",
    "MAX_KDF_ITERATIONS",
    "MAX_KDF_WORK",
    "MAX_KEYSTORE_BYTES",
    "MAX_RSA_KEY_BITS",
    "MAX_SCRYPT_MEMORY",
    "MAX_SIGNATURE_WORK",
    "MAX_SUBJECT_LENGTH",
    "MIN_BACKUP_KDF_ROUNDS",
    "MIN_RSA_KEY_BITS",
    "PKCS12_KDF_ROUNDS",
    "CertificateFacts",
    "CryptoError",
    "IssuerIndex",
    "KeystoreItem",
    "PrivateKey",
    "certificate_facts",
    "certificate_signing_request",
    "check_strength",
    "extend_chain",
    "generate_key_pair",
    "is_self_signed",
    "issue_certificate",
    "issue_renewed_certificate",
    "load_certificate_response",
    "load_certificates",
    "load_jks",
    "load_keystore",
    "load_p7b",
    "load_pkcs12",
    "load_ssh_private_key",
    "openssh_public_key",
    "order_chain",
    "parse_subject",
    "pkcs12",
    "public_jks",
    "private_key_from_der",
    "private_key_matches",
    "private_key_to_der",
    "prove_key",
    "root_certificate",
    "to_der",
    "to_p7b",
    "to_pem_chain",
    "to_pkcs12",
    "to_pkcs12_keystore",
    "verify_chain",
    # read by the backup tests, which inspect a backup's structure and what reading it spends
    "_KdfBudget",
    "_backup_kdf_cost",
    "_backup_rounds",
    "_pfx_parts",
    "_plain_bags",
]
