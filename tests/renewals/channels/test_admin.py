"""The channel pages: the tenant's administrators add, change, test and remove channels; a
reader of the tenant, an administrator of another tenant and a user without a role are
refused, also when they POST directly. The URL is on no page, for anyone, ever."""

from __future__ import annotations

import pytest
from django.urls import reverse

from keystore.models import AuditEvent
from renewals.channels.models import Channel
from tests.conftest import client_for
from tests.renewals.channels.conftest import SECRET

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:channels_channel_changelist"


def url(name: str, channel=None) -> str:
    args = [channel.pk] if channel is not None else []
    return reverse(f"admin:channels_channel_{name}", args=args)


@pytest.fixture
def channel(receiver, add_channel):
    return add_channel("ops-hook", receiver.url(), "new_key,activation")


def page(response) -> str:
    return response.content.decode()


# -- who sees what -------------------------------------------------------------------------------

# (role, list, change page, edit page, remove page): the answers to a GET.
GETS = {
    "Administrator": (200, 200, 200, 200),
    "ReadOnly": (403, 403, 403, 403),
    "IntegrationDeveloper": (403, 403, 403, 403),
    "other_admin": (200, 404, 404, 404),  # its own (empty) list; tenant A's rows are missing
    "none": (403, 404, 404, 404),  # sees no tenant: a channel of A is like a missing one
}


@pytest.mark.parametrize("role", GETS)
def test_the_role_matrix_of_the_pages(users, channel, role):
    client = client_for(users[role])
    answers = tuple(
        client.get(address).status_code
        for address in (
            reverse(CHANGELIST),
            url("change", channel),
            url("edit", channel),
            url("remove", channel),
        )
    )
    assert answers == GETS[role]
    for address in (reverse(CHANGELIST), url("change", channel), url("edit", channel)):
        response = client.get(address)
        assert SECRET not in page(response)
        if role != "Administrator":
            assert "ops-hook" not in page(response)


def test_the_administrator_sees_service_and_host_only(users, channel, receiver):
    client = client_for(users["Administrator"])
    listing = page(client.get(reverse(CHANGELIST)))
    assert "ops-hook" in listing and "JSON" in listing and "127.0.0.1" in listing
    detail = page(client.get(url("change", channel)))
    assert "127.0.0.1" in detail and "JSON" in detail
    assert 'id="send-test"' in detail and url("test", channel) in detail
    for shown in (listing, detail, page(client.get(url("edit", channel)))):
        assert SECRET not in shown
        assert receiver.url() not in shown and f":{receiver.port}/" not in shown


@pytest.mark.parametrize("role", ["ReadOnly", "IntegrationDeveloper", "other_admin", "none"])
def test_posts_of_other_roles_are_refused_and_change_nothing(users, channel, receiver, role):
    client = client_for(users[role])
    expected = {"other_admin": 404, "ReadOnly": 403, "IntegrationDeveloper": 403, "none": 404}
    before = list(Channel.objects.values_list("name", "events", "sealed_url", "removed_at"))
    for address, data in (
        (url("test", channel), {}),
        (url("edit", channel), {"name": "stolen", "events": ["all"], "url": "json://x.test/"}),
        (url("remove", channel), {"post": "yes"}),
    ):
        assert client.post(address, data).status_code == expected[role], address
    forged = client.post(
        url("create"),
        {"tenant": channel.tenant_id, "name": "mine", "url": receiver.url(), "events": ["all"]},
    )
    assert forged.status_code == 403
    assert receiver.messages() == []
    assert list(Channel.objects.values_list("name", "events", "sealed_url", "removed_at")) == (
        before
    )


def test_send_test_is_post_only(users, channel):
    assert client_for(users["Administrator"]).get(url("test", channel)).status_code == 405


# -- what the administrator does -----------------------------------------------------------------


def test_the_administrator_adds_a_channel_and_never_sees_its_url_again(users, tenant, receiver):
    client = client_for(users["Administrator"])
    form = page(client.get(url("create")))
    assert 'type="password"' in form and "new_key" in form
    response = client.post(
        url("create"),
        {"tenant": tenant.pk, "name": "teams", "url": receiver.url(), "events": ["all"]},
        follow=True,
    )
    assert response.status_code == 200
    shown = page(response)
    assert "Channel teams added (JSON, 127.0.0.1)" in shown and SECRET not in shown
    channel = Channel.objects.get(name="teams")
    assert channel.open_url() == receiver.url() and channel.event_names == ("all",)
    audit = AuditEvent.objects.filter(tenant=tenant, detail__startswith="Channel teams added")
    assert audit.count() == 1 and SECRET not in audit.get().detail


def test_a_refused_url_is_not_sent_back_in_the_form(users, tenant, settings):
    settings.CONNECTIVITY_ALLOWED_NETWORKS = []
    client = client_for(users["Administrator"])
    secret_url = f"json://127.0.0.1:9/hook/{SECRET}"
    response = client.post(
        url("create"),
        {"tenant": tenant.pk, "name": "local", "url": secret_url, "events": ["expiry"]},
    )
    assert response.status_code == 200
    assert "loopback" in page(response) and SECRET not in page(response)
    assert not Channel.objects.exists()


def test_send_test_reports_success_and_failure(users, channel, receiver):
    client = client_for(users["Administrator"])
    response = client.post(url("test", channel), follow=True)
    assert "The test message was sent to ops-hook." in page(response)
    [message] = receiver.messages()
    assert message["title"] == "Test message for channel ops-hook of tenant-a"
    assert "Sent by admin_a" in message["message"]

    receiver.statuses = [500]
    response = client.post(url("test", channel), follow=True)
    shown = page(response)
    assert "The test message did not reach ops-hook" in shown and "error=500" in shown
    assert SECRET not in shown


def test_the_administrator_changes_events_keeps_the_url_and_removes(
    users, channel, receiver, second_receiver
):
    client = client_for(users["Administrator"])
    client.post(url("edit", channel), {"name": "ops-hook", "events": ["expiry"], "url": ""})
    channel.refresh_from_db()
    assert channel.event_names == ("expiry",) and channel.open_url() == receiver.url()
    client.post(
        url("edit", channel),
        {"name": "ops-hook", "events": ["expiry"], "url": second_receiver.url()},
    )
    channel.refresh_from_db()
    assert channel.open_url() == second_receiver.url()

    confirm = page(client.get(url("remove", channel)))
    assert "Yes, remove" in confirm and SECRET not in confirm
    client.post(url("remove", channel), {"post": "yes"})
    channel.refresh_from_db()
    assert channel.removed_at is not None and channel.sealed_url is None
    detail = page(client.get(url("change", channel)))
    assert "removed" in detail and 'id="send-test"' not in detail


def test_the_channel_page_shows_its_latest_messages_without_the_url(
    users, channel, receiver, sap_entry, provide
):
    from renewals import outbox

    receiver.statuses = [500]
    provide(sap_entry.tenant)
    outbox.deliver_unsent()
    shown = page(client_for(users["Administrator"]).get(url("change", channel)))
    assert 'id="channel-messages"' in shown and "New SAP key for sap_" in shown
    assert "1 attempt failed, next at" in shown and "error=500" in shown
    assert SECRET not in shown


def test_the_outbox_page_names_the_channel_never_its_url(
    users, pending, receiver, add_channel, django_capture_on_commit_callbacks
):
    """The administrators' list of mails shows a channel's messages by the channel's name."""
    from django.urls import reverse

    from renewals.activation import activate_pending_key
    from tests.conftest import client_for
    from tests.renewals.channels.conftest import SECRET
    from tests.renewals.conftest import SAP_ALIAS

    add_channel("ops-chat", receiver.url())
    with django_capture_on_commit_callbacks(execute=True):
        activate_pending_key(pending.tenant, SAP_ALIAS, actor=users["Administrator"])
    page = client_for(users["Administrator"]).get(
        reverse("admin:renewals_sentnotification_changelist")
    )
    html = page.content.decode()
    assert "ops-chat" in html and SECRET not in html and str(receiver.port) not in html
