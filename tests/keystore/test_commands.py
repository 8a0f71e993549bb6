"""The keystore management commands: real files in and out, clear one-line errors, exit codes."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs7
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError

from keystore import crypto, permissions
from keystore import services as keystore_services
from keystore.management.commands import run_demo
from keystore.models import AuditEvent, KeystoreEntry, Owner, Tenant
from tests import pki as pki_factory
from tests.conftest import make_user

BASE_DIR = Path(django_settings.BASE_DIR)


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def run(*args, **options) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO(), **options)
    return out.getvalue()


def entry_count(tenant) -> int:
    return KeystoreEntry.objects.filter(tenant=tenant).count()


# -- list_keys -------------------------------------------------------------------------------


def test_list_keys_prints_a_table_of_the_tenant_entries_only(
    tmp_path, tenant, other_tenant, sap_entry, key_pair_entry, cert_entry
):
    other_root = pki_factory.make_cert("Other Tenant Root", pki_factory.make_key(), ca=True)
    run(
        "import_cert",
        _write(other_root, directory=tmp_path),
        tenant=other_tenant.slug,
        alias="b_only",
    )
    lines = run("list_keys", tenant=tenant.slug).splitlines()
    assert lines[0].split() == ["alias", "type", "owner", "valid", "until", "subject", "CN"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == {"client_key", "partner_root", "sap_cloudintegrationcertificate"}
    assert "Key pair" in rows["client_key"] and "Tenant" in rows["client_key"]
    assert "Certificate" in rows["partner_root"] and "Test Root CA" in rows["partner_root"]
    assert " SAP " in rows["sap_cloudintegrationcertificate"]
    assert f"{sap_entry.valid_until:%Y-%m-%d %H:%M}" in rows["sap_cloudintegrationcertificate"]


def test_list_keys_json_has_every_fact_as_stored(tenant, key_pair_entry, cert_entry, pki):
    items = json.loads(run("list_keys", tenant=tenant.slug, json=True))
    assert [item["alias"] for item in items] == ["client_key", "partner_root"]
    item = items[0]
    assert set(item) == {
        "alias",
        "type",
        "owner",
        "subject",
        "issuer",
        "serial",
        "valid_from",
        "valid_until",
        "key_type",
        "key_size",
        "fingerprint_sha256",
        "signature_algorithm",
    }
    facts = crypto.certificate_facts(pki.leaf)
    assert item["type"] == "key_pair" and item["owner"] == "tenant"
    assert item["subject"] == facts.subject and item["issuer"] == facts.issuer
    assert item["serial"] == facts.serial
    assert datetime.fromisoformat(item["valid_from"]) == facts.not_before
    assert datetime.fromisoformat(item["valid_until"]) == facts.not_after
    assert (item["key_type"], item["key_size"]) == ("RSA", 2048)
    assert item["fingerprint_sha256"] == facts.fingerprint_sha256
    assert item["signature_algorithm"] == facts.signature_algorithm
    assert items[1]["type"] == "certificate"


def test_list_keys_of_an_empty_keystore(tenant):
    assert json.loads(run("list_keys", tenant=tenant.slug, json=True)) == []
    assert "empty" in run("list_keys", tenant=tenant.slug)


def test_list_keys_unknown_tenant(db):
    with pytest.raises(CommandError, match="Unknown tenant 'nope'"):
        run("list_keys", tenant="nope")


# -- export_cert -----------------------------------------------------------------------------


def export(tmp_path, alias, tenant, fmt) -> bytes:
    target = tmp_path / f"out.{fmt}"
    out = run("export_cert", alias, tenant=tenant.slug, format=fmt, output=str(target))
    assert str(target) in out
    return target.read_bytes()


def test_export_cer_is_the_entry_certificate(tmp_path, tenant, key_pair_entry, pki):
    data = export(tmp_path, "client_key", tenant, "cer")
    assert x509.load_der_x509_certificate(data) == pki.leaf


def test_export_root_is_the_self_signed_root(tmp_path, tenant, key_pair_entry, pki):
    root = x509.load_der_x509_certificate(export(tmp_path, "client_key", tenant, "root"))
    assert root == pki.root
    assert root.subject == root.issuer
    root.verify_directly_issued_by(root)


def test_export_p7b_holds_the_whole_chain(tmp_path, tenant, key_pair_entry, pki):
    certs = pkcs7.load_der_pkcs7_certificates(export(tmp_path, "client_key", tenant, "p7b"))
    assert set(certs) == set(pki.chain) and len(certs) == 3


def test_export_pem_parses_into_the_chain(tmp_path, tenant, key_pair_entry, pki):
    data = export(tmp_path, "client_key", tenant, "pem")
    assert b"PRIVATE KEY" not in data
    assert x509.load_pem_x509_certificates(data) == pki.chain


def test_export_to_stdout_writes_the_bytes_only(tenant, key_pair_entry, pki):
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="utf-8")
    call_command(
        "export_cert", "client_key", tenant=tenant.slug, format="cer", output="-", stdout=stream
    )
    stream.flush()
    assert x509.load_der_x509_certificate(raw.getvalue()) == pki.leaf


@pytest.mark.parametrize(
    ("alias", "slug", "fmt", "message"),
    [
        ("missing", "tenant-a", "cer", "No entry with alias 'missing' in tenant 'tenant-a'"),
        ("client_key", "nope", "cer", "Unknown tenant 'nope'"),
        ("client_key", "tenant-a", "p12", "invalid choice"),
    ],
)
def test_export_errors(tmp_path, key_pair_entry, alias, slug, fmt, message):
    target = tmp_path / "out"
    with pytest.raises(CommandError, match=message):
        run("export_cert", alias, tenant=slug, format=fmt, output=str(target))
    assert not target.exists()


def test_export_entry_of_another_tenant_is_not_found(tmp_path, other_tenant, key_pair_entry):
    with pytest.raises(CommandError, match="No entry with alias 'client_key'"):
        run(
            "export_cert",
            "client_key",
            tenant=other_tenant.slug,
            format="cer",
            output=str(tmp_path / "x"),
        )


def test_export_to_an_unwritable_place(tmp_path, tenant, key_pair_entry):
    with pytest.raises(CommandError, match="Cannot write"):
        run(
            "export_cert",
            "client_key",
            tenant=tenant.slug,
            format="cer",
            output=str(tmp_path / "no-such-dir" / "x.cer"),
        )


# -- import_cert -----------------------------------------------------------------------------


def _write(cert_or_bytes, name: str = "cert.cer", *, directory: Path) -> str:
    data = (
        crypto.to_der(cert_or_bytes)
        if isinstance(cert_or_bytes, x509.Certificate)
        else cert_or_bytes
    )
    path = directory / name
    path.write_bytes(data)
    return str(path)


def test_import_cert_der_and_pem(tmp_path, tenant, pki):
    out = run(
        "import_cert",
        _write(pki.root, directory=tmp_path),
        tenant=tenant.slug,
        alias="partner_root",
    )
    entry = KeystoreEntry.objects.get(tenant=tenant, alias="partner_root")
    assert entry.certificate() == pki.root and not entry.has_private_key
    assert entry.owner == Owner.TENANT
    assert entry.fingerprint_sha256 in out
    run(
        "import_cert",
        _write(pki_factory.pem(pki.inter), "inter.pem", directory=tmp_path),
        tenant=tenant.slug,
        alias="partner_inter",
    )
    assert KeystoreEntry.objects.get(tenant=tenant, alias="partner_inter").certificate() == (
        pki.inter
    )
    assert AuditEvent.objects.filter(tenant=tenant, action="add").count() == 2


def test_import_cert_overwrite_only_when_asked(tmp_path, tenant, cert_entry, pki):
    other = pki_factory.make_cert("Replacement Root", pki_factory.make_key(), ca=True)
    path = _write(other, directory=tmp_path)
    with pytest.raises(CommandError, match="exists already"):
        run("import_cert", path, tenant=tenant.slug, alias="partner_root")
    assert KeystoreEntry.objects.get(pk=cert_entry.pk).certificate() == pki.root
    run("import_cert", path, tenant=tenant.slug, alias="partner_root", overwrite=True)
    entry = KeystoreEntry.objects.get(pk=cert_entry.pk)
    assert entry.certificate() == other and entry.version == 2


def test_import_cert_cannot_overwrite_an_sap_entry(tmp_path, tenant, sap_entry, pki):
    with pytest.raises(CommandError, match="reserved for SAP"):
        run(
            "import_cert",
            _write(pki.root, directory=tmp_path),
            tenant=tenant.slug,
            alias="sap_cloudintegrationcertificate",
            overwrite=True,
        )
    assert KeystoreEntry.objects.get(pk=sap_entry.pk).fingerprint_sha256 == (
        sap_entry.fingerprint_sha256
    )


@pytest.mark.parametrize(
    ("content", "alias", "message"),
    [
        (None, "x", "Cannot read"),
        (b"this is not a certificate", "x", "Not a certificate"),
        (b"", "x", "empty"),
        ("expired", "x", "expired"),
        ("root", "sap_mine", "reserved for SAP"),
        ("root", "", "alias is empty"),
    ],
)
def test_import_cert_errors_change_nothing(tmp_path, tenant, pki, content, alias, message):
    if content is None:
        path = str(tmp_path / "missing.cer")
    elif content == "expired":
        key = pki_factory.make_key()
        expired = pki_factory.make_cert(
            "Expired",
            key,
            ca=True,
            not_before=datetime(2020, 1, 1, tzinfo=UTC),
            not_after=datetime(2021, 1, 1, tzinfo=UTC),
        )
        path = _write(expired, directory=tmp_path)
    elif content == "root":
        path = _write(pki.root, directory=tmp_path)
    else:
        path = _write(content, directory=tmp_path)
    with pytest.raises(CommandError, match=message):
        run("import_cert", path, tenant=tenant.slug, alias=alias)
    assert entry_count(tenant) == 0


def test_import_cert_unknown_tenant(tmp_path, db, pki):
    with pytest.raises(CommandError, match="Unknown tenant"):
        run("import_cert", _write(pki.root, directory=tmp_path), tenant="nope", alias="x")


def test_import_cert_directory_is_unreadable(tmp_path, tenant):
    with pytest.raises(CommandError, match="Cannot read"):
        run("import_cert", str(tmp_path), tenant=tenant.slug, alias="x")


# -- import_keystore -------------------------------------------------------------------------


@pytest.fixture
def keystore_password(monkeypatch):
    monkeypatch.setenv("DEMO_KS_PW", "store-pass-1")
    return "DEMO_KS_PW"


def two_pkis():
    return pki_factory.make_pki("Alpha"), pki_factory.make_pki("Beta")


def test_import_keystore_jks(tmp_path, tenant, keystore_password):
    alpha, beta = two_pkis()
    data = pki_factory.make_jks(
        [("alpha_key", alpha.leaf_key, alpha.chain), ("beta_root", None, [beta.root])],
        "store-pass-1",
    )
    out = run(
        "import_keystore",
        _write(data, "store.jks", directory=tmp_path),
        tenant=tenant.slug,
        password_env=keystore_password,
    )
    assert "Added (2):" in out and "Rejected (0):" in out
    key_entry = KeystoreEntry.objects.get(tenant=tenant, alias="alpha_key")
    assert key_entry.certificate_chain() == alpha.chain
    assert crypto.private_key_matches(key_entry.open_private_key(), alpha.leaf)
    cert_entry = KeystoreEntry.objects.get(tenant=tenant, alias="beta_root")
    assert cert_entry.certificate() == beta.root and not cert_entry.has_private_key


@pytest.mark.skipif(pki_factory.KEYTOOL is None, reason="keytool is not installed")
def test_import_keystore_multi_entry_pkcs12_json(tmp_path, tenant, keystore_password):
    alpha, beta = two_pkis()
    data = pki_factory.make_multi_pkcs12(
        tmp_path,
        [
            ("alpha_key", alpha.leaf_key, alpha.chain),
            ("beta_key", beta.leaf_key, beta.chain),
            ("alpha_root", None, [alpha.root]),
        ],
        "store-pass-1",
    )
    out = run(
        "import_keystore",
        _write(data, "store.p12", directory=tmp_path),
        tenant=tenant.slug,
        password_env=keystore_password,
        json=True,
    )
    summary = json.loads(out)
    assert sorted(summary["added"]) == ["alpha_key", "alpha_root", "beta_key"]
    assert summary["overwritten"] == [] and summary["rejected"] == []
    for alias, expected in (("alpha_key", alpha), ("beta_key", beta)):
        entry = KeystoreEntry.objects.get(tenant=tenant, alias=alias)
        assert entry.certificate() == expected.leaf
        assert crypto.private_key_matches(entry.open_private_key(), expected.leaf)


def test_import_keystore_twice_rejects_then_overwrites(tmp_path, tenant, keystore_password):
    alpha, _beta = two_pkis()
    path = _write(
        pki_factory.make_jks([("alpha_key", alpha.leaf_key, alpha.chain)], "store-pass-1"),
        "store.jks",
        directory=tmp_path,
    )
    run("import_keystore", path, tenant=tenant.slug, password_env=keystore_password)
    before = KeystoreEntry.objects.get(tenant=tenant, alias="alpha_key")

    out = io.StringIO()
    with pytest.raises(CommandError, match="every entry was rejected"):
        call_command(
            "import_keystore",
            path,
            tenant=tenant.slug,
            password_env=keystore_password,
            json=True,
            stdout=out,
        )
    summary = json.loads(out.getvalue())
    assert summary["added"] == [] and summary["rejected"][0]["alias"] == "alpha_key"
    assert "exists already" in summary["rejected"][0]["reason"]
    assert KeystoreEntry.objects.get(pk=before.pk).version == before.version

    out = run(
        "import_keystore", path, tenant=tenant.slug, password_env=keystore_password, overwrite=True
    )
    assert "Overwritten (1):\n  alpha_key" in out
    assert KeystoreEntry.objects.get(pk=before.pk).version == before.version + 1


def test_import_keystore_reports_rejected_entries_with_reasons(tmp_path, tenant, keystore_password):
    alpha, _beta = two_pkis()
    data = pki_factory.make_jks(
        [("good_key", alpha.leaf_key, alpha.chain), ("sap_forbidden", None, [alpha.root])],
        "store-pass-1",
    )
    out = run(
        "import_keystore",
        _write(data, "s.jks", directory=tmp_path),
        tenant=tenant.slug,
        password_env=keystore_password,
    )
    assert "Added (1):\n  good_key" in out
    assert "Rejected (1):\n  sap_forbidden: The alias 'sap_forbidden' is reserved for SAP" in out
    assert list(KeystoreEntry.objects.filter(tenant=tenant).values_list("alias", flat=True)) == [
        "good_key"
    ]


@pytest.mark.parametrize(
    ("env_value", "file_kind", "message"),
    [
        (None, "jks", "DEMO_KS_PW is not set or empty"),
        ("", "jks", "DEMO_KS_PW is not set or empty"),
        ("wrong-password", "jks", "Wrong password"),
        ("store-pass-1", "garbage", "Not a PKCS#12 file"),
        ("store-pass-1", "missing", "Cannot read"),
    ],
)
def test_import_keystore_errors_change_nothing(
    tmp_path, tenant, monkeypatch, env_value, file_kind, message
):
    if env_value is None:
        monkeypatch.delenv("DEMO_KS_PW", raising=False)
    else:
        monkeypatch.setenv("DEMO_KS_PW", env_value)
    alpha = pki_factory.make_pki("Alpha")
    if file_kind == "jks":
        path = _write(
            pki_factory.make_jks([("k", alpha.leaf_key, alpha.chain)], "store-pass-1"),
            "s.jks",
            directory=tmp_path,
        )
    elif file_kind == "garbage":
        path = _write(b"\x00not a keystore at all" * 10, "s.p12", directory=tmp_path)
    else:
        path = str(tmp_path / "missing.p12")
    with pytest.raises(CommandError, match=message) as raised:
        run("import_keystore", path, tenant=tenant.slug, password_env="DEMO_KS_PW")
    assert "\n" not in str(raised.value)
    assert "wrong-password" not in str(raised.value)
    assert entry_count(tenant) == 0


def test_import_keystore_unknown_tenant(tmp_path, db, keystore_password):
    with pytest.raises(CommandError, match="Unknown tenant"):
        run("import_keystore", str(tmp_path / "x"), tenant="nope", password_env=keystore_password)


# -- assign_role -----------------------------------------------------------------------------


def test_assign_role_gives_and_replaces_a_role(tenant, other_tenant):
    make_user("carol")
    out = run("assign_role", "carol", tenant.slug, "IntegrationDeveloper")
    assert "carol is now IntegrationDeveloper of tenant tenant-a" in out
    user = get_user_model().objects.get(username="carol")  # a fresh permission cache
    assert permissions.may(user, permissions.READ_CREDENTIALS, tenant)
    assert not permissions.may(user, permissions.DEPLOY, tenant)
    assert not permissions.may(user, permissions.READ, other_tenant)

    run("assign_role", "carol", tenant.slug, "Administrator")
    user = get_user_model().objects.get(username="carol")
    assert permissions.roles_of(user, tenant) == ["Administrator"]
    assert permissions.may(user, permissions.DEPLOY, tenant)


@pytest.mark.parametrize(
    ("username", "slug", "role", "message"),
    [
        ("ghost", "tenant-a", "ReadOnly", "Unknown user 'ghost'"),
        ("carol", "nope", "ReadOnly", "Unknown tenant 'nope'"),
        ("carol", "tenant-a", "Superhero", "invalid choice"),
    ],
)
def test_assign_role_errors(tenant, username, slug, role, message):
    user = make_user("carol")
    with pytest.raises(CommandError, match=message):
        run("assign_role", username, slug, role)
    assert permissions.roles_of(user, tenant) == []


# -- run_demo --------------------------------------------------------------------------------


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def _sleeper(pid_file: Path) -> list[str]:
    return _python(
        f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    )


def _after(pid_file: Path, action: str) -> list[str]:
    """A child that waits until the sleeper runs, then does `action`."""
    return _python(
        "import os, signal, sys, time\n"
        f"while not os.path.exists({str(pid_file)!r}): time.sleep(0.02)\n"
        "time.sleep(0.2)\n" + action
    )


def _is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_run_side_by_side_stops_the_others_when_one_dies(tmp_path):
    pid_file = tmp_path / "sleeper.pid"
    message = run_demo.run_side_by_side(
        {"sleeper": _sleeper(pid_file), "dying": _after(pid_file, "sys.exit(3)")}
    )
    assert message == "dying stopped with exit code 3; the demo was shut down."
    assert not _is_running(int(pid_file.read_text()))


def test_run_side_by_side_stops_all_on_sigterm(tmp_path):
    pid_file = tmp_path / "sleeper.pid"
    message = run_demo.run_side_by_side(
        {
            "sleeper": _sleeper(pid_file),
            "killer": _after(pid_file, "os.kill(os.getppid(), signal.SIGTERM); time.sleep(60)"),
        }
    )
    assert message == ""
    assert not _is_running(int(pid_file.read_text()))


def test_run_side_by_side_calls_back_once_the_server_listens(tmp_path):
    """run_demo prints the logins then, after the server's start-up lines."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    pid_file = tmp_path / "server.pid"
    server = _python(
        "import os, socket, time\n"
        f"s = socket.create_server(('127.0.0.1', {port}))\n"
        f"open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
        "time.sleep(60)"
    )
    calls = []
    message = run_demo.run_side_by_side(
        {"server": server, "dying": _after(pid_file, "time.sleep(0.5); sys.exit(5)")},
        when_listening=(port, lambda: calls.append(port)),
    )
    assert calls == [port]  # once, although the loop polled many times after
    assert message == "dying stopped with exit code 5; the demo was shut down."


def test_run_demo_starts_server_and_cluster_beside_each_other():
    command = run_demo.Command()
    children = command.children(8123, with_qcluster=True)
    manage = str(BASE_DIR / "manage.py")
    assert children == {
        "runserver": [sys.executable, manage, "runserver", "127.0.0.1:8123", "--noreload"],
        "qcluster": [sys.executable, manage, "qcluster"],
    }
    assert list(command.children(8000, with_qcluster=False)) == ["runserver"]


def test_run_demo_migrates_seeds_and_fails_when_a_child_dies(db, monkeypatch):
    monkeypatch.delenv("DEMO_PASSWORD", raising=False)
    seen = {}

    def children(self, port, *, with_qcluster):
        seen.update(port=port, with_qcluster=with_qcluster)
        return {"runserver": _python("import sys; sys.exit(4)")}

    monkeypatch.setattr(run_demo.Command, "children", children)
    out = io.StringIO()
    with pytest.raises(CommandError, match="runserver stopped with exit code 4"):
        call_command("run_demo", port=8123, no_qcluster=True, stdout=out, verbosity=0)
    assert seen == {"port": 8123, "with_qcluster": False}
    assert "http://127.0.0.1:8123/admin/" in out.getvalue()
    assert "admin-demo-pass" in out.getvalue()
    assert Tenant.objects.filter(slug__in=["demo", "acme"]).count() == 2


def test_run_demo_refuses_a_bad_port(db):
    with pytest.raises(CommandError, match="port"):
        run("run_demo", port=70000)


# -- from the shell: exit status and no traceback -----------------------------------------------


def test_commands_from_the_shell_fail_with_one_line(tmp_path):
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'shell.sqlite3'}",
        "DJANGO_SETTINGS_MODULE": "keystore_site.settings",
    }

    def manage(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(BASE_DIR / "manage.py"), *args],
            cwd=BASE_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    migrated = manage("migrate", "--verbosity", "0")
    assert migrated.returncode == 0, migrated.stderr
    created = manage(
        "shell", "-c", "from keystore.models import Tenant; Tenant(slug='demo').save()"
    )
    assert created.returncode == 0, created.stderr

    missing = manage("import_cert", "/nonexistent", "--tenant", "demo", "--alias", "x")
    assert missing.returncode != 0
    assert "Traceback" not in missing.stderr
    assert missing.stderr.strip() == (
        "CommandError: Cannot read /nonexistent: No such file or directory."
    )

    unknown = manage("list_keys", "--tenant", "nope")
    assert unknown.returncode != 0
    assert "Traceback" not in unknown.stderr
    assert "Unknown tenant 'nope'" in unknown.stderr


def test_import_keystore_replace_removes_what_the_file_does_not_hold(
    tmp_path, tenant, keystore_password, sap_entry, monkeypatch
):
    """--replace: the tenant-owned entries the file lacks go, SAP-owned entries stay; a wrong
    password changes nothing."""
    alpha, beta = two_pkis()
    keystore_services.import_certificate(tenant, "old_root", pki_factory.der(beta.root))
    data = pki_factory.make_jks([("alpha_key", alpha.leaf_key, alpha.chain)], "store-pass-1")
    path = _write(data, "store.jks", directory=tmp_path)
    monkeypatch.setenv("WRONG_PW", "not-the-password")
    with pytest.raises(CommandError):
        run("import_keystore", path, tenant=tenant.slug, password_env="WRONG_PW", replace=True)
    assert KeystoreEntry.objects.filter(tenant=tenant, alias="old_root").exists()
    out = run(
        "import_keystore", path, tenant=tenant.slug, password_env=keystore_password, replace=True
    )
    assert "Removed (1):\n  old_root" in out
    aliases = set(KeystoreEntry.objects.filter(tenant=tenant).values_list("alias", flat=True))
    assert aliases == {"alpha_key", sap_entry.alias}
