"""Sending one message to one channel through apprise: the URL is opened from its seal, the
host checked against the address rules, the site's limits forced on the plugin, and a failure
raised as ChannelDeliveryError whose words never contain the URL.

The outbox (renewals.outbox.deliver) calls `send_message` for a channel's row; the
Send test button and test_channel call it through services.send_test.
"""

from __future__ import annotations

from apprise import NotifyType

from keystore.sealing import SealingError
from renewals.channels import destinations, logguard
from renewals.channels.models import Channel


class ChannelDeliveryError(Exception):
    """The message did not reach the channel; the text is safe to store, show and log."""


def send_message(channel: Channel, title: str, text: str) -> None:
    """Deliver `text` (with `title`) to the channel, or raise ChannelDeliveryError."""
    try:
        url = channel.open_url()
    except SealingError as error:
        raise ChannelDeliveryError(str(error)) from None
    try:
        destination = destinations.checked(url)
    except destinations.DestinationError as error:
        raise ChannelDeliveryError(str(error)) from None
    with logguard.delivery_log() as said:
        try:
            sent = destination.plugin.notify(body=text, title=title, notify_type=NotifyType.INFO)
        except Exception as error:  # a plugin's bug must not end the delivery loop
            said.append(f"{type(error).__name__}: {error}")
            sent = False
    if not sent:
        reason = " ".join(said[-2:]) or f"{destination.service_name} did not take the message."
        raise ChannelDeliveryError(
            logguard.redact(reason, url, keep=destination.host)[:450]
        ) from None
