"""The channel pages in Chromium, as an administrator and a reader would use them: add a
channel through the form, see only its service and host, press Send test and find the message
at the receiver; the reader is refused."""

from __future__ import annotations

import pytest

from tests.browser.conftest import expect, login, screenshot
from tests.renewals.channels.conftest import SECRET, receiver  # noqa: F401  (fixtures
from tests.renewals.conftest import allow_test_servers  # noqa: F401  used by name)

pytestmark = pytest.mark.browser


def test_an_administrator_adds_and_tests_a_channel_and_a_reader_is_refused(
    transactional_db,
    new_page,
    receiver,  # noqa: F811
):
    from keystore.models import Tenant
    from tests.conftest import make_user

    tenant = Tenant.objects.create(name="Tenant A", slug="tenant-a")
    make_user("admin_a", tenant=tenant, role="Administrator")
    make_user("reader", tenant=tenant, role="ReadOnly")

    page = new_page()
    login(page, "admin_a")
    page.goto("/admin/channels/channel/")
    page.click("#add-channel")
    page.fill("#id_name", "ops-teams")
    page.fill("#id_url", receiver.url())
    page.check("input[name=events][value=new_key]")
    page.check("input[name=events][value=activation]")
    screenshot(page, "channel-add")
    page.click("input[type=submit][value=Add]")
    expect(page.locator(".messagelist")).to_contain_text(
        "Channel ops-teams added (JSON, 127.0.0.1)"
    )
    expect(page.locator(".field-host")).to_contain_text("127.0.0.1")
    page.click("#send-test")
    expect(page.locator(".messagelist")).to_contain_text("The test message was sent to ops-teams.")
    screenshot(page, "channel-page")
    assert SECRET not in page.content()
    [message] = receiver.messages()
    assert message["title"] == "Test message for channel ops-teams of tenant-a"

    page.click("#edit-channel")
    assert page.input_value("#id_url") == ""  # write-only: never filled in again
    assert SECRET not in page.content()

    reader = new_page()
    login(reader, "reader")
    response = reader.goto("/admin/channels/channel/")
    assert response is not None and response.status == 403
    assert "ops-teams" not in reader.content()
