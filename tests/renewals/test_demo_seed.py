"""The demo holds one new SAP key: seed_pending_key provides it once."""

from __future__ import annotations

import pytest

from renewals.demo import seed_pending_key
from renewals.models import PendingSapKey


@pytest.fixture
def demo_ca(monkeypatch, sap_ca):
    import keystore.sapca

    monkeypatch.setattr(keystore.sapca, "sap_ca", lambda *args, **kwargs: sap_ca)


def test_seed_pending_key_is_idempotent(sap_entry, demo_ca):
    seed_pending_key(sap_entry.tenant)
    first = PendingSapKey.objects.get()
    seed_pending_key(sap_entry.tenant)
    assert list(PendingSapKey.objects.all()) == [first]
    assert first.issuer == sap_entry.issuer
    assert (first.valid_until - first.valid_from).days == 385


def test_seed_pending_key_needs_the_sap_key_pair(tenant, demo_ca):
    seed_pending_key(tenant)
    assert not PendingSapKey.objects.exists()
