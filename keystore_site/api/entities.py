"""The API's entities, as Cloud Integration fills them: keystore entries of the four keystores
(`system`: the tenant's entries, `KeyRenewal`: New SAP Keys, `KeyHistory`: SAP Key History,
`backup_admin_system`: the server-side backup) and chain certificates, made from the stored
fact columns (read with `values()`, no certificate is parsed for a list).

Values follow the API description's examples: Type "Key Pair" or "Certificate", Owner "SAP" or
"Tenant Administrator", SerialNumber "0x" and upper-case hex, Java signature algorithm names,
distinguished names with ", " between their parts, Status "unchanged".
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from cryptography import x509

from keystore import crypto
from keystore.models import EntryType, KeystoreBackupEntry, KeystoreEntry, Owner, Tenant
from keystore_site.api.odata import Row, date, hexalias
from renewals.models import PendingSapKey, SapKeyBackup

SYSTEM, KEY_RENEWAL, KEY_HISTORY = "system", "KeyRenewal", "KeyHistory"
BACKUP = "backup_admin_system"

#: KeystoreEntry's properties in the description's order.
ENTRY_PROPERTIES = (
    "Hexalias",
    "Alias",
    "KeyType",
    "KeySize",
    "ValidNotBefore",
    "ValidNotAfter",
    "SerialNumber",
    "SignatureAlgorithm",
    "EllipticCurve",
    "Validity",
    "SubjectDN",
    "IssuerDN",
    "Version",
    "FingerprintSha1",
    "FingerprintSha256",
    "FingerprintSha512",
    "Type",
    "Owner",
    "LastModifiedBy",
    "LastModifiedTime",
    "CreatedBy",
    "CreatedTime",
    "Status",
)
HISTORY_PROPERTIES = (
    *ENTRY_PROPERTIES,
    "ActivatedBy",
    "ActiveFrom",
    "DeactivatedBy",
    "ActiveUntil",
    "ActivationSequenceNumber",
    "OriginalAlias",
)
CHAIN_PROPERTIES = (
    "Hexalias",
    "Alias",
    "Index",
    "Validity",
    "KeyType",
    "KeySize",
    "ValidNotBefore",
    "ValidNotAfter",
    "SubjectDN",
    "IssuerDN",
    "SerialNumber",
    "SignatureAlgorithm",
    "Version",
    "FingerprintSha1",
    "FingerprintSha256",
    "FingerprintSha512",
)

_JAVA_SIGNATURES = {
    "sha1WithRSAEncryption": "SHA1withRSA",
    "sha224WithRSAEncryption": "SHA224withRSA",
    "sha256WithRSAEncryption": "SHA256withRSA",
    "sha384WithRSAEncryption": "SHA384withRSA",
    "sha512WithRSAEncryption": "SHA512withRSA",
    "md5WithRSAEncryption": "MD5withRSA",
    "ecdsa-with-SHA1": "SHA1withECDSA",
    "ecdsa-with-SHA224": "SHA224withECDSA",
    "ecdsa-with-SHA256": "SHA256withECDSA",
    "ecdsa-with-SHA384": "SHA384withECDSA",
    "ecdsa-with-SHA512": "SHA512withECDSA",
    "rsassaPss": "RSASSA-PSS",
    "ed25519": "Ed25519",
    "ed448": "Ed448",
    "dsa-with-sha1": "SHA1withDSA",
    "dsa-with-sha256": "SHA256withDSA",
}
_RDN_SEPARATOR = re.compile(r"(?<!\\),")

# The columns every entity is made of (one values() query per list).
FACT_COLUMNS = (
    "alias",
    "key_type",
    "key_size",
    "valid_from",
    "valid_until",
    "serial",
    "signature_algorithm",
    "elliptic_curve",
    "subject",
    "issuer",
    "fingerprint_sha1",
    "fingerprint_sha256",
    "fingerprint_sha512",
)


def java_signature(name: str) -> str:
    return _JAVA_SIGNATURES.get(name, name)


def java_dn(rfc4514: str) -> str:
    """ "CN=a,O=b" as Java writes it: "CN=a, O=b"."""
    return _RDN_SEPARATOR.sub(", ", rfc4514)


def _facts(row: dict[str, Any], alias: str) -> Row:
    return {
        "Hexalias": hexalias(alias),
        "Alias": alias,
        "KeyType": row["key_type"],
        "KeySize": row["key_size"],
        "ValidNotBefore": date(row["valid_from"]),
        "ValidNotAfter": date(row["valid_until"]),
        "SerialNumber": "0x" + row["serial"],
        "SignatureAlgorithm": java_signature(row["signature_algorithm"]),
        "EllipticCurve": row["elliptic_curve"] or None,
        "Validity": None,
        "SubjectDN": java_dn(row["subject"]),
        "IssuerDN": java_dn(row["issuer"]),
        "Version": 3,
        "FingerprintSha1": row["fingerprint_sha1"],
        "FingerprintSha256": row["fingerprint_sha256"],
        "FingerprintSha512": row["fingerprint_sha512"],
    }


def _entry_row(
    row: dict[str, Any],
    alias: str,
    *,
    key_pair: bool,
    sap: bool,
    modified_by: str,
    modified_at: datetime | None,
    created_by: str,
    created_at: datetime | None,
) -> Row:
    entity = _facts(row, alias)
    entity.update(
        {
            "Type": "Key Pair" if key_pair else "Certificate",
            "Owner": "SAP" if sap else "Tenant Administrator",
            "LastModifiedBy": modified_by,
            "LastModifiedTime": date(modified_at),
            "CreatedBy": created_by,
            "CreatedTime": date(created_at),
            "Status": "unchanged",
        }
    )
    return entity


#: What a keystore entry's entity is made of (also the benchmark's bare baseline's columns).
SYSTEM_COLUMNS = (
    *FACT_COLUMNS,
    "entry_type",
    "owner",
    "modified_by_label",
    "modified_at",
    "created_by__username",
    "created_at",
)


def system_entries(tenant: Tenant, alias: str | None = None) -> list[Row]:
    """The tenant keystore's entries (one of them with `alias`, matched ignoring case)."""
    rows = KeystoreEntry.objects.for_tenant(tenant)
    if alias is not None:
        rows = rows.with_alias(alias)
    values = rows.order_by("alias").values(*SYSTEM_COLUMNS)
    return [
        _entry_row(
            row,
            row["alias"],
            key_pair=row["entry_type"] == EntryType.KEY_PAIR,
            sap=row["owner"] == Owner.SAP,
            modified_by=row["modified_by_label"],
            modified_at=row["modified_at"],
            created_by=row["created_by__username"] or row["modified_by_label"],
            created_at=row["created_at"],
        )
        for row in values
    ]


def renewal_entries(tenant: Tenant, alias: str | None = None) -> list[Row]:
    """New SAP Keys: each waiting key under its alias."""
    rows = PendingSapKey.objects.for_tenant(tenant)
    if alias is not None:
        rows = rows.filter(alias__iexact=alias)
    values = rows.order_by("alias").values(*FACT_COLUMNS, "provided_by_label", "provided_at")
    return [
        _entry_row(
            row,
            row["alias"],
            key_pair=True,
            sap=True,
            modified_by=row["provided_by_label"] or "SAP",
            modified_at=row["provided_at"],
            created_by=row["provided_by_label"] or "SAP",
            created_at=row["provided_at"],
        )
        for row in values
    ]


def backup_entries(tenant: Tenant, alias: str | None = None) -> list[Row]:
    """The server-side backup (backup_admin_system): each backed-up entry as it was, created
    by the backup."""
    rows = KeystoreBackupEntry.objects.for_tenant(tenant)
    if alias is not None:
        rows = rows.filter(alias__iexact=alias)
    values = rows.order_by("alias").values(
        *FACT_COLUMNS,
        "entry_type",
        "modified_at",
        "modified_by_label",
        "backup__made_at",
        "backup__made_by_label",
    )
    return [
        _entry_row(
            row,
            row["alias"],
            key_pair=row["entry_type"] == EntryType.KEY_PAIR,
            sap=False,
            modified_by=row["modified_by_label"],
            modified_at=row["modified_at"],
            created_by=row["backup__made_by_label"],
            created_at=row["backup__made_at"],
        )
        for row in values
    ]


def history_alias(number: int, alias: str) -> str:
    """SAP Key History's alias of a backup: "[<activation sequence number>]_<alias>"."""
    return f"[{number}]_{alias}"


def history_entries(tenant: Tenant) -> list[Row]:
    """SAP Key History: each backup under "[n]_alias", n counting the alias's activations."""
    values = (
        SapKeyBackup.objects.for_tenant(tenant)
        .order_by("alias", "active_until", "pk")
        .values(*FACT_COLUMNS, "pk", "active_from", "active_until", "activated_by_label")
    )
    entities: list[Row] = []
    numbers: dict[str, int] = {}
    for row in values:
        original = row["alias"]
        number = numbers[original] = numbers.get(original, 0) + 1
        entity = _entry_row(
            row,
            history_alias(number, original),
            key_pair=True,
            sap=True,
            modified_by=row["activated_by_label"],
            modified_at=row["active_until"],
            created_by="SAP",
            created_at=row["active_from"],
        )
        entity.update(
            {
                "ActivatedBy": "SAP",
                "ActiveFrom": date(row["active_from"]),
                "DeactivatedBy": row["activated_by_label"],
                "ActiveUntil": date(row["active_until"]),
                "ActivationSequenceNumber": number,
                "OriginalAlias": original,
                "_pk": row["pk"],
            }
        )
        entities.append(entity)
    return entities


def chain_certificates(alias: str, chain: list[x509.Certificate]) -> list[Row]:
    """The entry's chain, each certificate with its own facts, the top CA at Index 0 and the
    entry's own certificate last (as in the description's example, and as a PKI path)."""
    rows = []
    for index, cert in enumerate(reversed(chain)):
        facts = crypto.certificate_facts(cert)
        row = _facts(
            {
                "key_type": facts.key_type,
                "key_size": facts.key_size,
                "valid_from": facts.not_before,
                "valid_until": facts.not_after,
                "serial": facts.serial,
                "signature_algorithm": facts.signature_algorithm,
                "elliptic_curve": facts.elliptic_curve,
                "subject": facts.subject,
                "issuer": facts.issuer,
                "fingerprint_sha1": facts.fingerprint_sha1,
                "fingerprint_sha256": facts.fingerprint_sha256,
                "fingerprint_sha512": facts.fingerprint_sha512,
            },
            alias,
        )
        row.pop("EllipticCurve")
        row["Index"] = index
        rows.append({name: row[name] for name in CHAIN_PROPERTIES})
    return rows
