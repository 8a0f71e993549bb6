"""/metrics counts channel deliveries per channel kind: sent, failed attempts, given up."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from renewals import outbox
from tests.renewals.channels.conftest import SECRET

pytestmark = pytest.mark.django_db

TOKEN = "channel-metrics-token-1234567890"


def metrics(settings) -> dict[str, float]:
    settings.METRICS_TOKEN = TOKEN
    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    text = response.content.decode()
    assert SECRET not in text
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("renewals_channel_")
    }


def test_sent_failed_and_given_up_per_channel_kind(
    sap_entry, provide, receiver, second_receiver, add_channel, settings
):
    settings.CHANNELS_RETRY_BACKOFF = timedelta(0)
    settings.CHANNELS_MAX_ATTEMPTS = 2
    add_channel("good", receiver.url(), "new_key")
    add_channel("bad", second_receiver.url(), "new_key")
    assert metrics(settings) == {}
    second_receiver.statuses = [500, 500]
    provide(sap_entry.tenant)
    outbox.deliver_unsent()
    outbox.deliver_unsent(timezone.now() + timedelta(minutes=1))
    assert metrics(settings) == {
        'renewals_channel_messages_sent_total{kind="json"}': 1,
        'renewals_channel_delivery_failures_total{kind="json"}': 2,
        'renewals_channel_messages_given_up_total{kind="json"}': 1,
    }
