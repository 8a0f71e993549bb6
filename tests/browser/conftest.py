"""Fixtures of the browser tests: one Chromium for the folder (Debian's, never a downloaded
browser), a fresh context per test against pytest-django's live server, logins through the real
login form, screenshots into the git-ignored `screenshots/` folder, and the renewal scene the
tests walk through (an SAP key pair, a new SAP key waiting for it, an integration flow using it).

The folder is skipped as a whole when Playwright or /usr/bin/chromium is missing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import pki as pki_factory
from tests.conftest import make_user
from tests.renewals import flowfactory

CHROMIUM = Path("/usr/bin/chromium")

try:
    from playwright import sync_api
except ImportError:
    sync_api = None

if sync_api is None:
    SKIP_REASON = "Playwright is not installed (pip install -r requirements.txt)"
elif not CHROMIUM.exists():
    SKIP_REASON = f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
else:
    SKIP_REASON = ""

SCREENSHOTS = Path(__file__).resolve().parents[2] / "screenshots"
SAP_ALIAS = "sap_cloudintegrationcertificate"
FLOW_NAME = "Orders to ERP"
TIMEOUT_MS = 10_000
ASYNC_UNSAFE = "DJANGO_ALLOW_ASYNC_UNSAFE"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def pytest_collection_modifyitems(config, items):
    """Skip every test of this folder, with the reason, when the browser cannot run. (A skip
    raised while this conftest is imported would abort pytest when the folder is named on the
    command line, since pytest then loads this file before collecting.)"""
    if not SKIP_REASON:
        return
    here = Path(__file__).resolve().parent
    for item in items:
        if here in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.skip(reason=SKIP_REASON))


def expect(target):
    """Playwright's auto-waiting assertions (imported here so the test modules import without
    Playwright and are skipped, not broken, when it is missing)."""
    return sync_api.expect(target)


def password_of(username: str) -> str:
    """The password tests.conftest.make_user gives every user."""
    return f"pw-{username}-123!"


@pytest.fixture(scope="package")
def browser():
    """One Chromium for all the browser tests, stopped after the last of them.

    Playwright's sync API keeps an event loop running in the test thread while it is started,
    and Django refuses database access from a thread with a running loop ("async unsafe"). The
    test bodies' access is synchronous and single-threaded, so it is allowed, but only while
    Playwright runs: the rest of the suite keeps Django's check.
    """
    previous = os.environ.get(ASYNC_UNSAFE)
    os.environ[ASYNC_UNSAFE] = "true"
    try:
        with sync_api.sync_playwright() as playwright:
            chromium = playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
            )
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            os.environ.pop(ASYNC_UNSAFE, None)
        else:
            os.environ[ASYNC_UNSAFE] = previous


@pytest.fixture
def new_page(browser, live_server):
    """new_page() -> a page in a fresh context (its own cookies) on the live server.

    Every page's console is watched: a Content-Security-Policy violation on any page a test
    visits fails that test, so the policy is proven on every page the browser tests walk."""
    contexts = []
    violations: list[str] = []

    def watch(message) -> None:
        if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text:
            violations.append(f"{message.page.url if message.page else '?'}: {message.text}")

    def open_page():
        context = browser.new_context(
            accept_downloads=True,
            base_url=live_server.url,
            viewport={"width": 1920, "height": 1080},
        )
        context.set_default_timeout(TIMEOUT_MS)
        context.on("console", watch)
        contexts.append(context)
        return context.new_page()

    yield open_page
    for context in contexts:
        context.close()
    assert not violations, "Content-Security-Policy violations:\n" + "\n".join(violations)


def login(page, username: str) -> None:
    """Log in through the admin's login form, as a person would."""
    page.goto("/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", password_of(username))
    page.click("input[type=submit]")
    expect(page.locator("#user-tools")).to_contain_text(username, ignore_case=True)


def screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def csrf_post(page, url: str, form: dict):
    """POST like a hand-made request from the logged-in browser: the session's cookies and a
    valid CSRF token, so only the view's own permission check can refuse it."""
    token = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    return page.request.post(
        url,
        form=form,
        headers={"X-CSRFToken": token, "Referer": page.url},
        max_redirects=0,
    )


@dataclass
class Scene:
    tenant: object
    admin: object
    reader: object
    entry: object  # the SAP key pair in the keystore
    pending: object  # the new SAP key waiting for it
    tenant_entry: object  # a tenant-owned key pair (renamable, deletable, exportable)
    sap_pki: object


@pytest.fixture
def scene(transactional_db, sap_pki, pki) -> Scene:
    """Tenant A with an administrator and a read-only user, its SAP key pair (20 days left), a
    new SAP key for it, a tenant key pair, and one imported flow whose SOAP receiver channel
    authenticates with the SAP key."""
    from keystore import services
    from keystore.models import Tenant
    from renewals.activation import provision_sap_key
    from renewals.whereused.importing import import_flow_exports

    tenant = Tenant.objects.create(name="Tenant A", slug="tenant-a")
    admin = make_user("admin_a", tenant=tenant, role="Administrator")
    reader = make_user("reader", tenant=tenant, role="ReadOnly")
    entry = services.create_sap_entry(tenant, SAP_ALIAS, sap_pki.leaf_key, sap_pki.chain)
    pending = provision_sap_key(
        tenant,
        SAP_ALIAS,
        valid_days=385,
        private_key=pki_factory.make_key(),
        ca=(sap_pki.inter_key, [sap_pki.inter, sap_pki.root]),
    )
    p12 = pki_factory.make_pkcs12_single("client", pki.leaf_key, pki.chain, "secret-pw")
    tenant_entry = services.import_key_pair(tenant, "client_key", p12, "secret-pw")

    xml = flowfactory.iflw(
        flowfactory.channel(
            "MessageFlow_1",
            "To ERP",
            "SOAP",
            props={"authentication": "Client Certificate", "privateKeyAlias": SAP_ALIAS},
            receiver="ERP_PROD",
        )
    )
    export = flowfactory.flow_zip("com.example.orders", xml, bundle_name=FLOW_NAME)
    [result] = import_flow_exports(tenant, [("orders.zip", export)])
    assert result.ok, result.message
    return Scene(tenant, admin, reader, entry, pending, tenant_entry, sap_pki)
