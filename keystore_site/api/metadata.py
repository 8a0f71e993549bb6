"""`$metadata`: the service's EDMX (OData V2), made once per process from the entities' property
lists, so that OData clients (SAP's pyodata, the Cloud Integration OData adapter) can read the
service as they read Cloud Integration's."""

from __future__ import annotations

import functools
from xml.sax.saxutils import quoteattr

from keystore_site.api import entities

NAMESPACE = "com.sap.hci.api"
_INTEGERS = {"KeySize", "Version", "Index", "ActivationSequenceNumber", "Size"}
_DATES = {
    "ValidNotBefore",
    "ValidNotAfter",
    "LastModifiedTime",
    "CreatedTime",
    "ActiveFrom",
    "ActiveUntil",
}


def _property(name: str, *, key: bool = False) -> str:
    kind = "Edm.Int32" if name in _INTEGERS else "Edm.DateTime" if name in _DATES else "Edm.String"
    nullable = "false" if key else "true"
    return (
        f"<Property Name={quoteattr(name)} Type={quoteattr(kind)} Nullable={quoteattr(nullable)}/>"
    )


def _entity_type(name: str, keys: tuple[str, ...], properties: tuple[str, ...]) -> str:
    key_refs = "".join(f"<PropertyRef Name={quoteattr(key)}/>" for key in keys)
    props = "".join(_property(prop, key=prop in keys) for prop in properties)
    return f"<EntityType Name={quoteattr(name)}><Key>{key_refs}</Key>{props}</EntityType>"


@functools.cache
def document() -> bytes:
    types = [
        _entity_type("KeystoreEntry", ("Hexalias",), entities.ENTRY_PROPERTIES),
        _entity_type("HistoryKeystoreEntry", ("Hexalias",), entities.HISTORY_PROPERTIES),
        _entity_type("ChainCertificate", ("Hexalias", "Index"), entities.CHAIN_PROPERTIES),
        _entity_type("Keystore", ("Name",), ("Name", "LastModifiedBy", "LastModifiedTime", "Size")),
        _entity_type("KeystoreResource", ("Name",), ("Name", "Resource", "Password", "Aliases")),
    ]
    sets = [
        ("KeystoreEntries", "KeystoreEntry"),
        ("HistoryKeystoreEntries", "HistoryKeystoreEntry"),
        ("ChainCertificates", "ChainCertificate"),
        ("Keystores", "Keystore"),
        ("KeystoreResources", "KeystoreResource"),
    ]
    entity_sets = "".join(
        f"<EntitySet Name={quoteattr(name)} EntityType={quoteattr(f'{NAMESPACE}.{kind}')}/>"
        for name, kind in sets
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<edmx:Edmx Version="1.0" xmlns:edmx="http://schemas.microsoft.com/ado/2007/06/edmx">'
        '<edmx:DataServices m:DataServiceVersion="2.0" '
        'xmlns:m="http://schemas.microsoft.com/ado/2007/08/dataservices/metadata">'
        f'<Schema Namespace="{NAMESPACE}" '
        'xmlns="http://schemas.microsoft.com/ado/2008/09/edm">'
        + "".join(types)
        + '<EntityContainer Name="EntityContainer" m:IsDefaultEntityContainer="true">'
        + entity_sets
        + "</EntityContainer></Schema></edmx:DataServices></edmx:Edmx>"
    ).encode("utf-8")
