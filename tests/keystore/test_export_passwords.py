"""The password of a PKCS#12 export or a keystore backup passes Django's password validators:
a common password or 12345678 is refused with the validator's message, and nothing is written
or audited."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from keystore.models import AuditEvent
from keystore.passwords import export_password_problems
from tests.conftest import client_for
from tests.keystore.test_admin import form_errors, state, url

WEAK = ["12345678", "password123", "qwertyuiop"]
TOO_COMMON = "This password is too common."


@pytest.mark.parametrize("password", WEAK)
def test_a_common_password_is_refused(password):
    assert export_password_problems(password) == [TOO_COMMON]


def test_the_length_rule_comes_first_and_a_good_password_passes():
    assert export_password_problems("Short-1") == ["Choose a password of at least 8 characters."]
    assert export_password_problems("Export-Pass-1") == []


@pytest.mark.parametrize("password", WEAK)
def test_the_export_page_refuses_a_common_password(password, admin_client, key_pair_entry):
    before = state()

    response = admin_client.post(
        url("keystoreentry_export", key_pair_entry.pk),
        {"password1": password, "password2": password},
    )

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert TOO_COMMON in form_errors(response)
    assert password.encode() not in response.content
    assert state() == before


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("12345678", TOO_COMMON),
        # The form knows who backs up: a password made of the user's e-mail address is refused.
        ("admin_a@example.test", "The password is too similar to the email address."),
    ],
)
def test_the_backup_page_refuses_a_weak_password(password, message, users, key_pair_entry):
    client = client_for(users["Administrator"])
    before = state()

    response = client.post(
        url("keystoreentry_backup"),
        {"tenant": key_pair_entry.tenant.pk, "password1": password, "password2": password},
    )

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert message in form_errors(response)
    assert state() == before


def test_the_backup_command_refuses_a_common_password(key_pair_entry, tmp_path, monkeypatch):
    monkeypatch.setenv("BACKUP_PW", "12345678")
    target = tmp_path / "backup.p12"
    events = AuditEvent.objects.count()

    with pytest.raises(CommandError) as refused:
        call_command(
            "backup_keystore", "--tenant", key_pair_entry.tenant.slug,
            "--password-env", "BACKUP_PW", "-o", str(target), stdout=io.StringIO(),
        )  # fmt: skip

    assert str(refused.value) == f"The password in BACKUP_PW: {TOO_COMMON}"
    assert "12345678" not in str(refused.value)
    assert not target.exists()
    assert AuditEvent.objects.count() == events
