"""add_channel, list_channels and test_channel: the URL comes from an environment variable,
and no output ever prints it; the logs of deliveries and failures never hold it either."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from renewals import outbox
from renewals.channels.models import Channel
from tests.renewals.channels.conftest import SECRET

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    from io import StringIO

    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_add_list_and_test_a_channel(tenant, other_tenant, receiver, monkeypatch):
    monkeypatch.setenv("OPS_HOOK_URL", receiver.url())
    added = run(
        "add_channel",
        "ops-hook",
        "--tenant",
        "tenant-a",
        "--url-env",
        "OPS_HOOK_URL",
        "--events",
        "new_key,activation",
    )
    assert "Channel ops-hook added to tenant tenant-a: JSON at 127.0.0.1" in added
    monkeypatch.setenv("B_URL", receiver.url("/b/" + SECRET))
    run("add_channel", "b-hook", "--tenant", "tenant-b", "--url-env", "B_URL", "--events", "all")

    listing = run("list_channels")
    assert "tenant-a  ops-hook  JSON  127.0.0.1  events=new_key,activation  active" in listing
    assert "tenant-b  b-hook" in listing
    only_a = json.loads(run("list_channels", "--tenant", "tenant-a", "--json"))
    assert [(row["name"], row["kind"], row["host"], row["events"]) for row in only_a] == [
        ("ops-hook", "json", "127.0.0.1", ["new_key", "activation"])
    ]
    tested = run("test_channel", "ops-hook", "--tenant", "tenant-a")
    assert tested.strip() == "The test message was sent to ops-hook."
    assert len(receiver.messages()) == 1
    for output in (added, listing, json.dumps(only_a), tested):
        assert SECRET not in output and str(receiver.port) not in output


def test_the_url_is_never_an_argument(tenant, monkeypatch):
    with pytest.raises(CommandError, match="OPS_HOOK_URL is not set"):
        call_command(
            "add_channel",
            "x",
            "--tenant",
            "tenant-a",
            "--url-env",
            "OPS_HOOK_URL",
            "--events",
            "all",
        )
    with pytest.raises(CommandError):  # argparse: there is no --url
        call_command("add_channel", "x", "--tenant", "tenant-a", "--url", "json://h/x")
    assert not Channel.objects.exists()


def test_a_failing_test_channel_exits_with_the_reason_and_no_url(
    tenant, receiver, add_channel, capsys
):
    add_channel("ops-hook", receiver.url(), "all")
    receiver.statuses = [500]
    with pytest.raises(CommandError) as failed:
        call_command("test_channel", "ops-hook", "--tenant", "tenant-a")
    assert "did not reach ops-hook" in str(failed.value) and "error=500" in str(failed.value)
    assert SECRET not in str(failed.value)
    with pytest.raises(CommandError, match="No channel named 'nope'"):
        call_command("test_channel", "nope", "--tenant", "tenant-a")


def test_no_url_in_the_logs_even_at_debug(
    sap_entry, provide, receiver, add_channel, settings, caplog
):
    """apprise logs the webhook's address at DEBUG and urllib3 the request's path: with every
    logger at DEBUG, neither a delivery nor a failure, a retry or a test leaves the token in a
    log record."""
    settings.CHANNELS_RETRY_BACKOFF = timedelta(0)
    caplog.set_level(logging.DEBUG)
    channel = add_channel("ops-hook", receiver.url(), "all")
    receiver.statuses = [500]
    provide(sap_entry.tenant)
    outbox.deliver_unsent()  # fails: 500
    outbox.deliver_unsent()  # delivered
    from renewals.channels import services

    services.send_test(channel)
    assert len(receiver.messages()) == 2
    text = "\n".join(
        f"{record.name} {record.getMessage()} {record.args!r}" for record in caplog.records
    )
    assert "could not be sent (attempt 1 of 8)" in text and "ops-hook" in text
    assert SECRET not in text
    assert f"127.0.0.1:{receiver.port}/hook" not in text
