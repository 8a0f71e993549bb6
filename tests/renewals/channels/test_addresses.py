"""The connectivity test's address rules (#9) apply to channel URLs: at save time and before
each delivery. Loopback is refused unless CONNECTIVITY_ALLOWED_NETWORKS allows it; so are the
metadata address and names resolving to refused addresses; redirects are not followed."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from renewals import outbox
from renewals.channels import services
from renewals.models import SentNotification

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "url, words",
    [
        ("json://127.0.0.1:8080/hook", "127.0.0.1 is a loopback address"),
        ("jsons://[::1]/hook", "::1 is a loopback address"),
        ("json://169.254.169.254/latest", "the cloud metadata address"),
        ("json://0.0.0.0:80/", "an unspecified address"),
    ],
)
def test_refused_addresses_cannot_be_saved(tenant, settings, url, words):
    settings.CONNECTIVITY_ALLOWED_NETWORKS = []
    with pytest.raises(services.ChannelError, match=words) as refused:
        services.add_channel(tenant, "hook", url, "all")
    assert "CONNECTIVITY_ALLOWED_NETWORKS" in str(refused.value)
    assert "/hook" not in str(refused.value) and "/latest" not in str(refused.value)


def test_a_name_resolving_to_loopback_is_refused(tenant, settings, fake_dns):
    settings.CONNECTIVITY_ALLOWED_NETWORKS = []
    fake_dns({"hooks.example.test": ["203.0.113.7", "127.0.0.1"]})
    with pytest.raises(services.ChannelError, match="hooks.example.test resolves to a loopback"):
        services.add_channel(tenant, "hook", "json://hooks.example.test/x", "all")


def test_the_setting_allows_loopback(tenant, receiver, add_channel):
    """The receiver fixture allows 127.0.0.1/32 as the tests' deployment would."""
    channel = add_channel("hook", receiver.url(), "all")
    assert services.send_test(channel).ok


def test_the_rules_are_checked_again_before_each_delivery(
    sap_entry, provide, receiver, add_channel, settings
):
    channel = add_channel("hook", receiver.url(), "new_key")
    provide(sap_entry.tenant)  # recorded; delivered below
    settings.CONNECTIVITY_ALLOWED_NETWORKS = []  # the deployment takes its allowance back
    outbox.deliver_unsent()
    row = SentNotification.objects.get(channel=channel)
    assert row.sent_at is None and row.attempts == 1
    assert "loopback" in row.last_error and "CONNECTIVITY_ALLOWED_NETWORKS" in row.last_error
    assert receiver.messages() == []
    result = services.send_test(channel)
    assert not result.ok and "loopback" in result.message


def test_redirects_are_not_followed(
    sap_entry, provide, receiver, second_receiver, add_channel, settings
):
    """A webhook answering 302 to another address would pass by the address check."""
    settings.CHANNELS_RETRY_BACKOFF = timedelta(0)
    channel = add_channel("hook", receiver.url(), "new_key")
    receiver.statuses = [302]
    receiver.redirect_to = second_receiver.url("/elsewhere")
    provide(sap_entry.tenant)
    outbox.deliver_unsent()
    row = SentNotification.objects.get(channel=channel)
    assert row.sent_at is None and row.attempts == 1
    assert second_receiver.messages() == []
    # The receiver answers 200 again: the retry is delivered where the URL says.
    assert outbox.deliver_unsent(timezone.now() + timedelta(minutes=1)) == 1
    assert len(receiver.messages()) == 1


def test_an_unknown_service_is_refused_without_quoting_the_url(tenant):
    with pytest.raises(services.ChannelError, match="apprise cannot send to this nope:// URL"):
        services.add_channel(tenant, "hook", "nope://token-abcdef/x", "all")
    with pytest.raises(services.ChannelError, match="Unknown event nonsense"):
        services.add_channel(tenant, "hook", "json://203.0.113.7/x", "new_key,nonsense")


def test_services_that_act_on_the_server_itself_are_refused(tenant):
    with pytest.raises(services.ChannelError, match="acts on the site's own server"):
        services.add_channel(tenant, "local", "syslog://", "all")
    # The desktop ones are not even loaded on a server (apprise disables them).
    for url in ("dbus://", "gnome://", "windows://", "macosx://"):
        with pytest.raises(services.ChannelError):
            services.add_channel(tenant, "local", url, "all")


@pytest.mark.parametrize(
    "url, service, host",
    [
        ("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ", "Slack", "slack.com"),
        ("discord://4174216298/JHMHI8qBe7bk2ZwO5U711o3dV_js", "Discord", "discord.com"),
        ("ntfy://alerts-topic-4411", "ntfy", "ntfy.sh"),
        ("jsons://user:pa55word@hooks.example.test/in/4411", "JSON", "hooks.example.test"),
    ],
)
def test_the_shown_host_is_never_a_token(tenant, fake_dns, url, service, host):
    """Slack's and Discord's tokens stand where a host would: the page shows the service's
    domain instead, and the address rules apply only to a host the URL really names."""
    fake_dns({"hooks.example.test": ["203.0.113.9"]})
    channel = services.add_channel(tenant, "hook", url, "all")
    assert (channel.service_name, channel.host) == (service, host)
    facts = str(services.channel_facts(channel))
    for secret in ("TIiajkdnlazkcOXrIdevi7FQ", "JHMHI8qBe7bk2ZwO5U711o3dV_js", "pa55word"):
        assert secret not in facts and secret not in channel.host
