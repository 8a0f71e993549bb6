"""Channel URLs are secrets: sealed at rest under the KEYSTORE_KEK, bound to their row,
resealed by rotate_kek, and a delivery after the rotation still works."""

from __future__ import annotations

import base64
import os

import pytest
from django.core.management import call_command
from django.db import connection

from keystore import sealing
from renewals.channels.models import Channel
from tests.renewals.channels.conftest import SECRET

pytestmark = pytest.mark.django_db


def raw_rows(table: str) -> str:
    """Every column of every row of a table as the database holds it, bytes decoded loosely."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608
        values = [value for row in cursor.fetchall() for value in row]
    return " ".join(
        bytes(value).decode("latin-1") if isinstance(value, bytes | memoryview) else str(value)
        for value in values
    )


def test_the_url_is_not_in_the_database_in_clear(receiver, add_channel, sap_entry, provide):
    channel = add_channel("hook", receiver.url(), "all")
    provide(sap_entry.tenant)  # an event recorded for the channel too
    stored = raw_rows(Channel._meta.db_table) + raw_rows("renewals_sentnotification")
    assert SECRET not in stored
    assert f"127.0.0.1:{receiver.port}" not in stored  # not the URL's address either
    assert channel.kek_id == sealing.current_kek_id()
    assert (channel.service, channel.service_name, channel.host) == ("json", "JSON", "127.0.0.1")
    assert Channel.objects.get(pk=channel.pk).open_url() == receiver.url()


def test_a_sealed_url_does_not_open_in_another_row(receiver, add_channel, other_tenant):
    one = add_channel("one", receiver.url(), "all")
    two = add_channel("two", receiver.url("/other"), "all", on=other_tenant)
    two.sealed_url, two.kek_id = one.sealed_url, one.kek_id
    with pytest.raises(sealing.SealingError):
        two.open_url()


def test_rotate_kek_reseals_channel_urls_and_delivery_still_works(
    settings, receiver, add_channel, capsys
):
    from renewals.channels import services

    channel = add_channel("hook", receiver.url(), "all")
    before = bytes(channel.sealed_url)
    old = list(settings.KEYSTORE_KEK)
    new = base64.urlsafe_b64encode(os.urandom(32)).decode()
    settings.KEYSTORE_KEK = [new, *old]
    call_command("rotate_kek")
    out = capsys.readouterr().out
    assert "Resealed 1 channel URLs; 0 were already sealed" in out
    channel.refresh_from_db()
    assert channel.kek_id == sealing.current_kek_id() and bytes(channel.sealed_url) != before

    settings.KEYSTORE_KEK = [new]  # the old KEK is gone
    assert services.send_test(channel).ok
    assert len(receiver.messages()) == 1
    call_command("rotate_kek")
    assert "Resealed 0 channel URLs; 1 were already" in capsys.readouterr().out


def test_replacing_the_url_seals_a_new_version(receiver, second_receiver, add_channel):
    from renewals.channels import services

    channel = add_channel("hook", receiver.url(), "all")
    old_blob = bytes(channel.sealed_url)
    changed = services.change_channel(channel, url=second_receiver.url())
    assert changed.url_version == 2
    changed.sealed_url = old_blob  # the old ciphertext no longer opens for this row
    with pytest.raises(sealing.SealingError):
        changed.open_url()
