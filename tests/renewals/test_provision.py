"""Providing a new SAP key: provision (SAP stands in) and import of a delivered PKCS#12."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, pkcs12
from django.core import mail

from keystore import crypto
from keystore.models import AuditAction, AuditEvent, KeystoreEntry, Owner
from renewals import activation, outbox
from renewals.activation import PendingKeyExists, RenewalError, import_sap_key
from renewals.models import NotificationKind, PendingSapKey, PendingSource, SentNotification
from tests import pki as pki_factory
from tests.renewals.conftest import SAP_ALIAS


def delivered_p12(sap_pki, *, alias=SAP_ALIAS, password="delivery-pw", expired=False):
    """A renewed SAP key as SAP would deliver it: issued by the SAP CA, with its chain."""
    key = pki_factory.make_key()
    now = datetime.now(UTC)
    span = (now - timedelta(days=30), now - timedelta(days=1)) if expired else (None, None)
    leaf = pki_factory.make_cert(
        "SAP Leaf",
        key,
        sap_pki.inter,
        sap_pki.inter_key,
        days=385,
        not_before=span[0],
        not_after=span[1],
    )
    return pki_factory.make_pkcs12_single(alias, key, [leaf, sap_pki.inter, sap_pki.root], password)


def test_provision_makes_a_key_for_the_same_subject_from_the_sap_ca(sap_entry, provide, sap_pki):
    pending = provide(sap_entry.tenant)

    assert pending.alias == SAP_ALIAS
    assert pending.entry == sap_entry
    assert pending.source == PendingSource.PROVISIONED
    assert pending.subject == sap_entry.subject
    assert pending.issuer == sap_entry.issuer == crypto.certificate_facts(sap_pki.inter).subject
    assert pending.root_fingerprint_sha256 == sap_entry.root_fingerprint_sha256
    assert pending.fingerprint_sha256 != sap_entry.fingerprint_sha256
    chain = pending.certificate_chain()
    crypto.verify_chain(chain)
    assert crypto.private_key_matches(pending.open_private_key(), chain[0])
    assert (pending.valid_until - pending.valid_from).days == 385
    # The current key is untouched until activation.
    entry = KeystoreEntry.objects.get(pk=sap_entry.pk)
    assert entry.fingerprint_sha256 == sap_entry.fingerprint_sha256
    assert entry.version == sap_entry.version
    audit = AuditEvent.objects.get(action=AuditAction.PROVISION)
    assert audit.new_fingerprint == pending.fingerprint_sha256
    assert audit.actor_label == "SAP"


def test_provision_generates_a_fresh_rsa_key_when_none_is_given(sap_entry, sap_ca):
    pending = activation.provision_sap_key(sap_entry.tenant, SAP_ALIAS, valid_days=30, ca=sap_ca)
    assert (pending.key_type, pending.key_size) == ("RSA", 2048)
    assert crypto.private_key_matches(pending.open_private_key(), pending.certificate())


def test_provision_mails_the_administrators_once(
    sap_entry, provide, users, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        pending = provide(sap_entry.tenant)
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["admin_a@example.test"]
    assert SAP_ALIAS in message.subject and "tenant-a" in message.subject
    activation_day = f"{pending.auto_activation_at:%Y-%m-%d %H:%M} UTC"
    assert activation_day in message.subject and activation_day in message.body
    assert pending.fingerprint_sha256 in message.body
    assert "-----BEGIN" not in message.body  # no key material in mails
    # Rerunning delivery (as every scan does) sends nothing twice.
    assert outbox.deliver_unsent() == 0
    assert len(mail.outbox) == 1
    row = SentNotification.objects.get(kind=NotificationKind.NEW_KEY)
    assert row.sent_at is not None and row.recipient_list == ["admin_a@example.test"]


def test_a_second_key_replaces_the_waiting_one_only_when_asked(sap_entry, provide):
    first = provide(sap_entry.tenant)
    with pytest.raises(PendingKeyExists, match="waiting for sap_cloudintegrationcertificate"):
        provide(sap_entry.tenant)
    assert list(PendingSapKey.objects.values_list("pk", flat=True)) == [first.pk]

    second = provide(sap_entry.tenant, replace=True)
    assert list(PendingSapKey.objects.values_list("pk", flat=True)) == [second.pk]
    assert second.fingerprint_sha256 != first.fingerprint_sha256


def test_provision_refuses_what_sap_does_not_renew(tenant, sap_entry, provide, key_pair_entry):
    with pytest.raises(RenewalError, match="not an SAP alias"):
        provide(tenant, "client_key")
    with pytest.raises(RenewalError, match="has no key pair 'sap_other'"):
        provide(tenant, "sap_other")
    # An entry under an SAP alias that is not SAP-owned (e.g. from before the rule existed).
    KeystoreEntry.objects.filter(pk=sap_entry.pk).update(owner=Owner.TENANT)
    with pytest.raises(RenewalError, match="not an SAP-owned key pair"):
        provide(tenant)
    with pytest.raises(RenewalError, match="between 2 and 3650"):
        provide(tenant, valid_days=1)
    assert not PendingSapKey.objects.exists()


def test_import_takes_a_delivered_pkcs12(sap_entry, sap_pki, admin_user):
    data = delivered_p12(sap_pki)
    pending = import_sap_key(sap_entry.tenant, SAP_ALIAS, data, "delivery-pw", actor=admin_user)

    assert pending.source == PendingSource.IMPORTED
    assert pending.provided_by == admin_user
    items = crypto.load_pkcs12(data, "delivery-pw")
    assert crypto.to_der(pending.certificate()) == crypto.to_der(items[0].chain[0])
    assert crypto.private_key_to_der(pending.open_private_key()) == crypto.private_key_to_der(
        items[0].private_key
    )
    assert pending.chain_length == 3


@pytest.mark.parametrize(
    ("make", "password", "message"),
    [
        (lambda pki: delivered_p12(pki), "wrong-pw", "password"),
        (lambda pki: delivered_p12(pki, alias="sap_other"), "delivery-pw", "named 'sap_other'"),
        (lambda pki: delivered_p12(pki, expired=True), "delivery-pw", "expired"),
        (
            lambda pki: pkcs12.serialize_key_and_certificates(
                SAP_ALIAS.encode(),
                pki_factory.make_key(fresh=True),
                None,
                [pki.leaf, pki.inter, pki.root],
                BestAvailableEncryption(b"delivery-pw"),
            ),
            "delivery-pw",
            "no matching certificate",
        ),
        (lambda pki: b"not a pkcs12 file", "delivery-pw", "PKCS#12"),
    ],
    ids=["wrong-password", "other-alias", "expired", "mismatched-key", "garbage"],
)
def test_import_refuses_bad_files_and_changes_nothing(sap_entry, sap_pki, make, password, message):
    with pytest.raises(RenewalError, match=message):
        import_sap_key(sap_entry.tenant, SAP_ALIAS, make(sap_pki), password)
    assert not PendingSapKey.objects.exists()
    assert not SentNotification.objects.exists()


def test_import_refuses_the_active_key_and_missing_or_foreign_entries(
    tenant, sap_entry, sap_pki, key_pair_entry, users
):
    active = pki_factory.make_pkcs12_single(SAP_ALIAS, sap_pki.leaf_key, sap_pki.chain, "pw")
    with pytest.raises(RenewalError, match="active key"):
        import_sap_key(tenant, SAP_ALIAS, active, "pw")
    with pytest.raises(RenewalError, match="no key pair 'sap_missing'"):
        import_sap_key(
            tenant, "sap_missing", delivered_p12(sap_pki, alias="sap_missing"), "delivery-pw"
        )
    with pytest.raises(RenewalError, match="not an SAP alias"):
        import_sap_key(
            tenant, "client_key", delivered_p12(sap_pki, alias="client_key"), "delivery-pw"
        )
    with pytest.raises(RenewalError, match="not allowed"):
        import_sap_key(
            tenant, SAP_ALIAS, delivered_p12(sap_pki), "delivery-pw", actor=users["ReadOnly"]
        )
    assert not PendingSapKey.objects.exists()
