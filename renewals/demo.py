"""The renewals part of the demo: one new SAP key waiting for activation.

`keystore.demo.seed()` calls `seed_pending_key(tenant)`; it is idempotent.
"""

from __future__ import annotations

from keystore import sapca
from keystore.models import KeystoreEntry, Owner, Tenant
from renewals.activation import provision_sap_key
from renewals.models import PendingSapKey

DEMO_ALIAS = "sap_cloudintegrationcertificate"
# A renewed key outlives its predecessor by about the 20 days the demo's current key has left.
DEMO_VALID_DAYS = 365 + 20


def seed_pending_key(tenant: Tenant) -> None:
    """Provide a new SAP key for the tenant's SAP key pair unless one is waiting already."""
    entry = KeystoreEntry.objects.filter(tenant=tenant, alias=DEMO_ALIAS, owner=Owner.SAP).first()
    if entry is None or PendingSapKey.objects.filter(entry=entry).exists():
        return
    provision_sap_key(tenant, DEMO_ALIAS, valid_days=DEMO_VALID_DAYS, ca=sapca.sap_ca())
