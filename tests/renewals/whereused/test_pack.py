"""What the backend administrators get: the where-used CSV and the renewal pack."""

from __future__ import annotations

import csv
import io
import zipfile

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import padding

from keystore import crypto
from renewals.whereused.errors import WhereUsedError
from renewals.whereused.pack import renewal_pack, where_used_csv
from renewals.whereused.report import where_used
from tests.renewals.conftest import SAP_ALIAS
from tests.renewals.flowfactory import channel, flow_zip, iflw
from tests.renewals.whereused.flows import (
    CERT_AUTH,
    ORDERS,
    client_cert_flow,
    import_all,
    landscape,
)

# --- CSV --------------------------------------------------------------------------------------


def test_csv_has_one_line_per_usage_and_defuses_formulas(tenant, sap_entry):
    landscape(tenant)
    import_all(
        tenant,
        flow_zip(
            "com.example.formula",
            iflw(
                channel(
                    "MF",
                    "=HYPERLINK(1)",
                    props={**CERT_AUTH, "privateKeyAlias": SAP_ALIAS},
                    receiver="+ERP",
                )
            ),
            parameters={},
        ),
    )
    report = where_used(tenant, SAP_ALIAS)
    content = where_used_csv(report)
    rows = list(csv.DictReader(io.StringIO(content.decode("utf-8-sig"))))
    assert len(rows) == 9
    assert {row["section"] for row in rows} == {"uses", "may use"}
    erp = next(row for row in rows if row["component name"] == "To ERP")
    assert erp == {
        "section": "uses",
        "backend system": "ERP_PROD",
        "backend address": "https://erp.example:443/sap/bc/srt/orders",
        "flow": "Orders to ERP",
        "bundle id": ORDERS,
        "flow restart required": "no",
        "component id": "MessageFlow_1",
        "component name": "To ERP",
        "component type": "SOAP",
        "direction": "Receiver",
        "usage": "client-certificate authentication",
        "alias": SAP_ALIAS,
        "property": "privateKeyAlias",
        "outbound connection": "yes",
        "reason": "",
        "script file": "",
    }
    crm = next(row for row in rows if row["component name"] == "To CRM")
    assert (crm["section"], crm["alias"], crm["reason"]) == (
        "may use",
        "any key",
        "client certificate without an alias",
    )
    script = next(row for row in rows if row["usage"] == "named in script")
    assert script["script file"] == "src/main/resources/script/Sign.groovy"
    formula = next(row for row in rows if "HYPERLINK" in row["component name"])
    assert formula["component name"] == "'=HYPERLINK(1)"
    assert formula["backend system"] == "'+ERP"


# --- renewal pack -----------------------------------------------------------------------------


def _self_signed(cert: x509.Certificate) -> bool:
    if cert.issuer != cert.subject:
        return False
    cert.public_key().verify(
        cert.signature,
        cert.tbs_certificate_bytes,
        padding.PKCS1v15(),
        cert.signature_hash_algorithm,
    )
    return True


def _blocks(text: str, heading: str, next_heading: str) -> str:
    return text.split(heading, 1)[1].split(next_heading, 1)[0]


def test_renewal_pack_holds_the_files_and_instructions_per_backend(tenant, sap_entry, sap_pki):
    landscape(tenant)
    download = renewal_pack(sap_entry, where_used(tenant, SAP_ALIAS))
    assert download.filename == f"{SAP_ALIAS}_renewal_pack.zip"
    assert download.content_type == "application/zip"
    with zipfile.ZipFile(io.BytesIO(download.content)) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    assert set(files) == {
        f"{SAP_ALIAS}.cer",
        f"{SAP_ALIAS}_rootCA.cer",
        f"{SAP_ALIAS}.p7b",
        f"{SAP_ALIAS}.pem",
        "INSTRUCTIONS.txt",
    }
    leaf = x509.load_der_x509_certificate(files[f"{SAP_ALIAS}.cer"])
    root = x509.load_der_x509_certificate(files[f"{SAP_ALIAS}_rootCA.cer"])
    assert leaf == sap_pki.leaf and root == sap_pki.root and _self_signed(root)
    # PKCS#7 keeps certificates in a SET: the whole chain, in any order.
    assert set(crypto.load_p7b(files[f"{SAP_ALIAS}.p7b"])) == set(sap_pki.chain)
    assert x509.load_pem_x509_certificates(files[f"{SAP_ALIAS}.pem"]) == sap_pki.chain

    text = files["INSTRUCTIONS.txt"].decode("utf-8")
    assert sap_entry.fingerprint_sha256 in text
    assert sap_entry.root_fingerprint_sha256 in text and sap_entry.root_subject in text
    assert f"until {sap_entry.valid_until:%Y-%m-%d %H:%M} UTC" in text
    uses = _blocks(text, "Backends that use this alias (3)", "Backends that may use it")
    may_use = _blocks(text, "Backends that may use it (1)", "Restart after activation")
    erp = _blocks(uses, "ERP_PROD (https://erp.example:443/sap/bc/srt/orders)", "\n2. ")
    assert "into the backend's trust store" in erp and "Map the client certificate" in erp
    partner = _blocks(uses, "PARTNER (https://partner.example/ws)", "\n3. ")
    assert f"signing certificate {SAP_ALIAS}.cer" in partner and "trust store" not in partner
    odata = _blocks(uses, "S4_ODATA", "\n4. ")
    assert "Map the client certificate" in odata
    steps = uses.split("\n4. ", 1)[1]
    assert "Sign order" in steps and "Sign.groovy" in steps and "Check how the component" in steps
    assert "CRM (https://crm.example/api)" in may_use and "Map the client certificate" in may_use
    assert "Import the encryption certificate" in may_use  # the decryptor
    restart = text.split("Restart after activation", 1)[1]
    assert "Orders to ERP" in restart and "Partner exchange" in restart
    for absent in ("AS2_PARTNER", "LEGACY", "S4 ("):
        assert absent not in text


def test_renewal_pack_of_the_pending_key(tenant, sap_entry, pending):
    import_all(tenant, client_cert_flow("com.example.erp"))
    download = renewal_pack(pending, where_used(tenant, SAP_ALIAS))
    assert download.filename == f"{SAP_ALIAS}_new_key_renewal_pack.zip"
    with zipfile.ZipFile(io.BytesIO(download.content)) as archive:
        leaf = x509.load_der_x509_certificate(archive.read(f"{SAP_ALIAS}.cer"))
        text = archive.read("INSTRUCTIONS.txt").decode()
    assert leaf == pending.certificate() and leaf != sap_entry.certificate()
    assert "the new SAP key waiting for activation" in text
    assert pending.fingerprint_sha256 in text and "ERP_PROD" in text
    with pytest.raises(WhereUsedError):
        renewal_pack(pending, where_used(tenant, "another_alias"))
