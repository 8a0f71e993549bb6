"""Issue 14's pages in the browser at 1366x768: the administrator imports a flow whose mail
channel has an unset parameter and a script step naming the SAP key; the import result lists the
unset parameter; the flow's page shows each usage's reason and script file and the unset
parameter to every role that may read it, without horizontal scrolling."""

from __future__ import annotations

import pytest

from tests.browser.conftest import SAP_ALIAS, expect, login, screenshot
from tests.renewals import flowfactory

pytestmark = pytest.mark.browser


def export_with_shapes() -> bytes:
    xml = flowfactory.iflw(
        flowfactory.mail_receiver_with_unset_parameter(),
        flowfactory.script_step("CallActivity_1", "Sign payment", "Sign.groovy"),
    )
    script = flowfactory.groovy_script(f'def key = keystore.getKey("{SAP_ALIAS}")')
    return flowfactory.flow_zip(
        "com.example.mail", xml, bundle_name="Mail and script", scripts={"Sign.groovy": script}
    )


def no_horizontal_scroll(page) -> None:
    overflow = page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    widest = page.evaluate(
        """[...document.querySelectorAll('body *')]
        .filter(e => e.getBoundingClientRect().right > document.documentElement.clientWidth)
        .slice(0, 5)
        .map(e => e.tagName + '.' + e.className + ' ' + e.getBoundingClientRect().right)"""
    )
    assert overflow <= 0, widest  # what sticks out, if anything


def test_unset_parameters_and_script_steps_in_the_pages(new_page, scene, tmp_path):
    from renewals.whereused.models import IntegrationFlow

    upload = tmp_path / "mail.zip"
    upload.write_bytes(export_with_shapes())
    page = new_page()
    page.set_viewport_size({"width": 1366, "height": 768})
    login(page, "admin_a")
    page.goto("/admin/whereused/integrationflow/import/")
    page.locator("input[type=file]").set_input_files(str(upload))
    page.locator("input[type=submit]").click()
    results = page.locator("#content")
    expect(results).to_contain_text("{{From email address}}")
    no_horizontal_scroll(page)
    screenshot(page, "whereused-import-unset-parameter")

    flow = IntegrationFlow.objects.get(bundle_id="com.example.mail")
    for username in ("admin_a", "reader"):
        reader_page = page if username == "admin_a" else new_page()
        if username != "admin_a":
            reader_page.set_viewport_size({"width": 1366, "height": 768})
            login(reader_page, username)
        reader_page.goto(f"/admin/whereused/integrationflow/{flow.pk}/change/")
        content = reader_page.locator("#content")
        expect(content).to_contain_text("{{From email address}}")
        expect(content).to_contain_text("Sign payment")  # the step, not the file, names the use
        expect(content).to_contain_text("Sign.groovy")
        no_horizontal_scroll(reader_page)
        screenshot(reader_page, f"whereused-flow-{username}")
