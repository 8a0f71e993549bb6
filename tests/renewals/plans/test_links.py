"""Renewal plans, step 2 of issue 17: Inform backends mails each contact a signed link through
the outbox; the backend administrator's page opens without a login, offers the renewal pack of
that backend and Confirm imported (audited with the client's address); tampered, expired,
revoked and foreign-salt links get the refusal page and change nothing."""

from __future__ import annotations

import io
import zipfile
from datetime import timedelta
from io import StringIO

import pytest
from django.core import mail, signing
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from keystore.models import AuditEvent
from renewals.models import NotificationKind, SentNotification
from renewals.plans import backendlinks, services, tokens
from renewals.plans.models import BackendStatus, PlanBackend
from tests.conftest import client_for
from tests.renewals.conftest import SAP_ALIAS

pytestmark = pytest.mark.django_db

SITE = "https://keystore.example.com"


@pytest.fixture
def informed(plan, settings, django_capture_on_commit_callbacks):
    """The plan with a contact for ERP_PROD (none for CRM), informed once."""
    settings.RENEWALS_SITE_URL = SITE
    services.save_contact(plan.tenant, "ERP_PROD", "Eva Berg", "eva@erp.example")
    with django_capture_on_commit_callbacks(execute=True):
        result = backendlinks.inform_backends(plan.tenant, SAP_ALIAS, base_url=SITE)
    [(erp, address)] = result.informed
    assert address == "eva@erp.example"
    assert [backend.system for backend in result.without_contact] == ["CRM"]
    return erp


def page_path(backend: PlanBackend) -> str:
    backend.refresh_from_db()
    return tokens.link_path(backend)


def state(backend: PlanBackend) -> tuple:
    backend.refresh_from_db()
    return (backend.status, backend.confirmed_at, backend.confirmed_by, backend.link_nonce)


def test_inform_mails_the_contact_a_link_through_the_outbox(informed):
    assert informed.status == BackendStatus.INFORMED
    [sent] = mail.outbox
    assert sent.to == ["eva@erp.example"]
    assert SITE + page_path(informed) in sent.body
    assert "Hello Eva Berg" in sent.body and "not agreed yet" in sent.body
    row = SentNotification.objects.get(kind=NotificationKind.BACKEND_LINK)
    assert row.sent_at is not None and row.recipient_list == ["eva@erp.example"]
    crm = PlanBackend.objects.get(system="CRM")
    assert crm.status == BackendStatus.TO_INFORM  # no contact, no mail


def test_inform_again_sends_nothing_new_and_says_why(informed):
    with pytest.raises(services.PlanError, match="CRM has no contact"):
        backendlinks.inform_backends(informed.plan.tenant, SAP_ALIAS, base_url=SITE)
    assert SentNotification.objects.filter(kind=NotificationKind.BACKEND_LINK).count() == 1


def test_inform_needs_the_sites_address(plan):
    services.save_contact(plan.tenant, "ERP_PROD", "Eva", "eva@erp.example")
    with pytest.raises(services.PlanError, match="RENEWALS_SITE_URL"):
        backendlinks.inform_backends(plan.tenant, SAP_ALIAS, base_url="")
    assert PlanBackend.objects.filter(status=BackendStatus.INFORMED).count() == 0


def test_inform_is_refused_to_a_reader(plan, users):
    with pytest.raises(services.PlanError, match="not allowed to inform backends"):
        backendlinks.inform_backends(
            plan.tenant, SAP_ALIAS, base_url=SITE, actor=users["IntegrationDeveloper"]
        )


def test_the_page_opens_without_login_and_confirm_is_audited_with_the_address(informed):
    client = Client(REMOTE_ADDR="192.0.2.44")
    path = page_path(informed)
    page = client.get(path)
    assert page.status_code == 200
    html = page.content.decode()
    assert "ERP_PROD" in html and "Confirm imported" in html and "not agreed yet" in html
    assert page["Cache-Control"].startswith("max-age=0") or "no-cache" in page["Cache-Control"]
    assert page["Referrer-Policy"] == "same-origin"
    confirm = reverse("plans_backend_confirm", args=[path.split("/")[-2]])
    answer = client.post(confirm, {"name": "  ", "comment": "done"})
    assert answer.status_code == 400
    assert "Give your name" in answer.content.decode()
    assert state(informed)[0] == BackendStatus.INFORMED
    answer = client.post(confirm, {"name": "Eva Berg", "comment": "imported in STRUST"})
    assert answer.status_code == 302
    informed.refresh_from_db()
    assert (informed.status, informed.confirmed_by, informed.confirmed_from) == (
        BackendStatus.CONFIRMED,
        "Eva Berg",
        "192.0.2.44",
    )
    event = AuditEvent.objects.get(detail__contains="confirmed imported")
    assert "from 192.0.2.44: imported in STRUST" in event.detail
    assert event.actor_label == "backend:ERP_PROD"
    page = client.get(answer["Location"])
    assert "Confirmed imported by <strong>Eva Berg</strong>" in page.content.decode()
    # A second confirmation changes nothing.
    client.post(confirm, {"name": "Mallory"})
    assert state(informed)[2] == "Eva Berg"


def test_the_pack_holds_the_certificates_and_this_backends_instructions(informed):
    token = page_path(informed).split("/")[-2]
    answer = Client().get(reverse("plans_backend_pack", args=[token]))
    assert answer.status_code == 200
    names = zipfile.ZipFile(io.BytesIO(answer.content)).namelist()
    assert f"{SAP_ALIAS}.cer" in names and "INSTRUCTIONS.txt" in names
    sheet = zipfile.ZipFile(io.BytesIO(answer.content)).read("INSTRUCTIONS.txt").decode()
    assert "ERP_PROD" in sheet and "CRM" not in sheet
    assert b"PRIVATE KEY" not in answer.content


def refused(client: Client, path: str) -> str:
    answer = client.get(path)
    assert answer.status_code == 403
    html = answer.content.decode()
    assert "Nothing was changed." in html
    return html


def test_tampered_link_is_refused(informed):
    path = page_path(informed)
    token = path.split("/")[-2]
    before = state(informed)
    # Another backend id in the payload, the signature kept: the signature no longer fits.
    forged = signing.Signer(salt="other").sign_object({"p": 1, "b": 2, "n": "x", "e": 2**31})
    for bad in (token[:-2] + ("AA" if not token.endswith("AA") else "BB"), forged, "1"):
        assert "changed or cut short" in refused(
            Client(), reverse("plans_backend_page", args=[bad])
        )
        answer = Client().post(reverse("plans_backend_confirm", args=[bad]), {"name": "X"})
        assert answer.status_code == 403
    assert state(informed) == before


def test_a_link_signed_for_another_purpose_is_refused(informed):
    token = tokens.token_for(informed)
    payload = tokens.unsign(token)
    other = signing.Signer(salt="renewals.plans.something-else").sign_object(payload)
    assert "changed or cut short" in refused(Client(), reverse("plans_backend_page", args=[other]))


def test_expired_link_is_refused(informed):
    path = page_path(informed)
    with pytest.raises(backendlinks.LinkRefused, match="expired"):
        backendlinks.open_link(path.split("/")[-2], now=timezone.now() + timedelta(days=31))
    PlanBackend.objects.filter(pk=informed.pk).update(
        link_expires_at=timezone.now() - timedelta(minutes=1)
    )
    # The row's expiry counts as well as the token's.
    assert "This link expired on" in refused(Client(), path)
    answer = Client().post(
        reverse("plans_backend_confirm", args=[page_path(informed).split("/")[-2]]),
        {"name": "Eva"},
    )
    assert answer.status_code == 403
    assert state(informed)[1] is None


def test_revoked_link_is_refused_and_inform_sends_a_new_one(
    informed, admin_user, django_capture_on_commit_callbacks
):
    old_path = page_path(informed)
    client = client_for(admin_user)
    client.post(
        reverse("admin:plans_renewalplan_backend", args=[informed.plan_id]),
        {"backend": informed.pk, "action": "revoke"},
    )
    assert "was revoked" in refused(Client(), old_path)
    assert state(informed)[0] == BackendStatus.INFORMED
    services.save_contact(informed.plan.tenant, "CRM", "Carl", "carl@crm.example")
    with django_capture_on_commit_callbacks(execute=True):
        page = client.post(
            reverse("admin:plans_renewalplan_inform", args=[informed.plan_id]), follow=True
        )
    html = page.content.decode()
    assert "informed ERP_PROD (eva@erp.example), CRM (carl@crm.example)." in html, [
        str(m) for m in page.context["messages"]
    ]
    new_path = page_path(informed)
    assert new_path != old_path
    assert Client().get(new_path).status_code == 200
    assert "was revoked" in refused(Client(), old_path)
    assert sorted(m.to[0] for m in mail.outbox) == [
        "carl@crm.example",
        "eva@erp.example",
        "eva@erp.example",
    ]


def test_a_link_of_an_activated_key_is_refused(informed, admin_user):
    from renewals.activation import activate_pending_key

    path = page_path(informed)
    activate_pending_key(informed.plan.tenant, SAP_ALIAS, actor=admin_user)
    assert "This renewal is over" in refused(Client(), path)


def test_renewal_plan_json_prints_the_confirm_url(informed):
    out = StringIO()
    call_command(
        "renewal_plan", SAP_ALIAS, "--tenant", informed.plan.tenant.slug, "--json", stdout=out
    )
    import json

    backends = {b["system"]: b for b in json.loads(out.getvalue())["backends"]}
    assert backends["ERP_PROD"]["confirm_url"] == SITE + page_path(informed)
    assert backends["ERP_PROD"]["status"] == "informed"
    assert backends["CRM"]["confirm_url"] is None


def test_inform_backends_command(plan, settings):
    with pytest.raises(CommandError, match="RENEWALS_SITE_URL"):
        call_command("inform_backends", SAP_ALIAS, "--tenant", plan.tenant.slug)
    settings.RENEWALS_SITE_URL = SITE
    with pytest.raises(CommandError, match="have no contact"):
        call_command("inform_backends", SAP_ALIAS, "--tenant", plan.tenant.slug)
    services.save_contact(plan.tenant, "CRM", "Carl", "carl@crm.example")
    out = StringIO()
    call_command("inform_backends", SAP_ALIAS, "--tenant", plan.tenant.slug, stdout=out)
    assert out.getvalue().splitlines() == [
        "informed CRM: link mailed to carl@crm.example",
        "no contact for ERP_PROD: not informed",
    ]


def test_admin_bulk_action_informs_only_where_the_user_may(informed, users):
    client = client_for(users["ReadOnly"])
    answer = client.post(
        reverse("admin:plans_renewalplan_changelist"),
        {"action": "inform_backends", "_selected_action": [informed.plan_id]},
    )
    # The action is not offered to a reader: Django answers the list again, nothing sent.
    assert answer.status_code in (200, 302)
    assert SentNotification.objects.filter(kind=NotificationKind.BACKEND_LINK).count() == 1
