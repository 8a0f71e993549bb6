"""The `import_iflows` and `where_used` commands: output lines, JSON and exit codes."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from renewals.whereused.models import IntegrationFlow, KeyUsageRecord
from tests.renewals.conftest import SAP_ALIAS
from tests.renewals.flowfactory import (
    flow_zip,
    iflw,
    keystore_script,
    mail_receiver_with_unset_parameter,
    pkcs7_signer_without_alias,
    script_step,
    step,
)
from tests.renewals.whereused.flows import (
    ORDERS,
    PARTNER,
    client_cert_flow,
    import_all,
    landscape,
    orders_flow,
    partner_flow,
    signer_only_flow,
)


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_import_iflows_files_and_folders(tenant, sap_entry, tmp_path):
    folder = tmp_path / "exports"
    folder.mkdir()
    (folder / "b_partner.zip").write_bytes(partner_flow())
    (folder / "a_orders.ZIP").write_bytes(orders_flow())
    (folder / "readme.txt").write_text("not a flow")
    single = tmp_path / "signer.zip"
    single.write_bytes(signer_only_flow())

    output = run("import_iflows", str(folder), str(single), "--tenant", tenant.slug)
    lines = output.splitlines()
    assert lines[0] == f"OK  {folder / 'a_orders.ZIP'}: bundle {ORDERS}, 4 usages"
    assert lines[1].startswith(f"OK  {folder / 'b_partner.zip'}: bundle {PARTNER}, ")
    assert lines[2] == f"OK  {single}: bundle com.example.signer, 1 usage"
    assert lines[-1] == f"3 files imported into tenant {tenant.slug}."
    assert IntegrationFlow.objects.count() == 3

    again = run("import_iflows", str(folder / "a_orders.ZIP"), "--tenant", tenant.slug)
    assert again.splitlines()[0].endswith("4 usages (replaced)")
    assert KeyUsageRecord.objects.filter(flow__bundle_id=ORDERS).count() == 4


def test_import_iflows_reports_failures_and_exits_non_zero(tenant, tmp_path):
    good = tmp_path / "good.zip"
    good.write_bytes(client_cert_flow("com.example.good"))
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK but not really a zip")
    empty_folder = tmp_path / "empty"
    empty_folder.mkdir()
    out = io.StringIO()
    with pytest.raises(CommandError, match=r"^3 of 4 files failed\.$"):
        call_command(
            "import_iflows",
            str(bad),
            str(tmp_path / "missing.zip"),
            str(good),
            str(empty_folder),
            "--tenant",
            tenant.slug,
            stdout=out,
        )
    lines = out.getvalue().splitlines()
    assert len(lines) == 4  # one per file, in the order given
    assert lines[0] == f"FAIL {bad}: not a ZIP file"
    assert lines[1].startswith(f"FAIL {tmp_path / 'missing.zip'}: cannot read the file")
    assert lines[2] == f"OK  {good}: bundle com.example.good, 1 usage"
    assert lines[3] == f"FAIL {empty_folder}: no .zip files in this folder"
    # The good file was imported all the same.
    assert list(IntegrationFlow.objects.values_list("bundle_id", flat=True)) == ["com.example.good"]


def test_import_iflows_unknown_tenant(db, tmp_path):
    with pytest.raises(CommandError, match="Unknown tenant 'nope'"):
        call_command("import_iflows", str(tmp_path), "--tenant", "nope")


def test_where_used_text_and_json(tenant, sap_entry):
    landscape(tenant)
    text = run("where_used", SAP_ALIAS, "--tenant", tenant.slug)
    assert text.splitlines()[0] == (
        f"Where-used of {SAP_ALIAS} in tenant {tenant.slug} (current key): 6 components use it, "
        "2 may use it; 4 backends, 2 flows."
    )
    assert "  ERP_PROD  https://erp.example:443/sap/bc/srt/orders" in text
    assert "      To ERP (SOAP Receiver): client-certificate authentication" in text
    assert "May use it:" in text and "To CRM" in text.split("May use it:", 1)[1]

    data = json.loads(run("where_used", SAP_ALIAS, "--tenant", tenant.slug, "--json"))
    assert (data["alias"], data["tenant"], data["pending"]) == (SAP_ALIAS, tenant.slug, False)
    assert data["key"]["fingerprint_sha256"] == sap_entry.fingerprint_sha256
    assert data["counts"] == {"uses": 6, "may_use": 2, "backends": 4, "flows": 2}
    erp = data["uses"][0]
    assert erp["backend"] == {
        "system": "ERP_PROD",
        "address": "https://erp.example:443/sap/bc/srt/orders",
    }
    (flow,) = erp["flows"]
    assert (flow["bundle_name"], flow["bundle_id"], flow["restart_required"]) == (
        "Orders to ERP",
        ORDERS,
        False,
    )
    assert flow["components"] == [
        {
            "id": "MessageFlow_1",
            "name": "To ERP",
            "type": "SOAP",
            "direction": "Receiver",
            "usage": "client-certificate authentication",
            "alias": SAP_ALIAS,
            "property_key": "privateKeyAlias",
            "outbound": True,
            "reason": "",
            "script_file": "",
        }
    ]
    may_use_flows = {f["bundle_name"] for b in data["may_use"] for f in b["flows"]}
    assert may_use_flows == {"Orders to ERP"}
    assert data["restart_after_activation"] == ["Orders to ERP", "Partner exchange"]


def test_where_used_pending(tenant, sap_entry, pending):
    landscape(tenant)
    data = json.loads(run("where_used", SAP_ALIAS, "--tenant", tenant.slug, "--pending", "--json"))
    assert data["pending"] is True
    assert data["key"]["fingerprint_sha256"] == pending.fingerprint_sha256
    assert data["counts"]["uses"] == 6
    text = run("where_used", SAP_ALIAS, "--tenant", tenant.slug, "--pending")
    assert "(new SAP key waiting for activation)" in text.splitlines()[0]


def test_where_used_refusals(tenant, sap_entry):
    with pytest.raises(CommandError, match="No new SAP key is waiting"):
        call_command("where_used", SAP_ALIAS, "--tenant", tenant.slug, "--pending")
    with pytest.raises(CommandError, match="No entry with alias 'unknown'"):
        call_command("where_used", "unknown", "--tenant", tenant.slug)
    with pytest.raises(CommandError, match="Unknown tenant"):
        call_command("where_used", SAP_ALIAS, "--tenant", "nope")


def test_where_used_with_nothing_imported(tenant, sap_entry):
    text = run("where_used", SAP_ALIAS, "--tenant", tenant.slug)
    assert "0 components use it, 0 may use it; 0 backends, 0 flows." in text
    assert text.count("  none") == 2


def test_import_iflows_prints_the_parser_warnings(tenant, tmp_path):
    runtime = step("A", "Sign", "SimpleSigner", {"privateKeyAlias": "${header.alias}"})
    path = tmp_path / "runtime.zip"
    path.write_bytes(flow_zip("com.example.runtime", iflw(runtime), parameters={}))
    lines = run("import_iflows", str(path), "--tenant", tenant.slug).splitlines()
    assert lines[0] == f"OK  {path}: bundle com.example.runtime, 1 usage"
    assert lines[1].startswith("    warning: ") and "${header.alias}" in lines[1]
    assert IntegrationFlow.objects.get().warnings == [lines[1].removeprefix("    warning: ")]


def test_import_iflows_prints_the_unset_parameters(tenant, tmp_path):
    path = tmp_path / "mail.zip"
    signer = step("A", "Sign", "PKCS7Signer", {"privateKeyAlias": "{{signing alias}}"})
    mail = mail_receiver_with_unset_parameter(parameter="From email address")
    path.write_bytes(flow_zip("com.example.mail", iflw(mail, signer), parameters={}))
    lines = run("import_iflows", str(path), "--tenant", tenant.slug).splitlines()
    assert lines[0] == f"OK  {path}: bundle com.example.mail, 1 usage"
    assert lines[1] == "    unset parameters: {{From email address}}, {{signing alias}}"
    assert lines[2] == f"1 files imported into tenant {tenant.slug}."


def test_where_used_names_the_script_step_and_the_reason(tenant, sap_entry):
    flow = flow_zip(
        "com.example.scripted",
        iflw(
            script_step("CallActivity_1", "Sign payload", "sign.groovy"),
            pkcs7_signer_without_alias("CallActivity_2"),
        ),
        parameters={},
        scripts={"sign.groovy": keystore_script(SAP_ALIAS)},
    )
    import_all(tenant, flow)
    text = run("where_used", SAP_ALIAS, "--tenant", tenant.slug)
    assert (
        "      Sign payload (Script): named in script, "
        f"{SAP_ALIAS} via getKeyPair in src/main/resources/script/sign.groovy"
    ) in text
    assert "PKCS7 Signer (PKCS#7 signer): signing, any key (signer without an alias)" in text
    data = json.loads(run("where_used", SAP_ALIAS, "--tenant", tenant.slug, "--json"))
    (signer,) = data["may_use"][0]["flows"][0]["components"]
    assert (signer["reason"], signer["script_file"]) == ("signer without an alias", "")


def test_remove_iflows_removes_and_reports_what_is_not_there(tenant, sap_entry):
    landscape(tenant)
    before = IntegrationFlow.objects.count()
    output = run("remove_iflows", ORDERS, "--tenant", tenant.slug)
    assert output.splitlines()[0].startswith(f"OK   {ORDERS}: Orders to ERP removed with its")
    assert output.splitlines()[-1] == f"1 flows removed from tenant {tenant.slug}."
    assert IntegrationFlow.objects.count() == before - 1
    out = io.StringIO()
    with pytest.raises(CommandError, match=r"^1 of 2 bundles were not removed\.$"):
        call_command("remove_iflows", ORDERS, PARTNER, "--tenant", tenant.slug, stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith(f"FAIL {ORDERS}: bundle {ORDERS} is not in the where-used index")
    assert lines[1].startswith(f"OK   {PARTNER}: ")
    assert IntegrationFlow.objects.count() == before - 2
    with pytest.raises(CommandError, match="Unknown tenant"):
        call_command("remove_iflows", ORDERS, "--tenant", "nope", stdout=io.StringIO())
