"""The API's write operations through plain HTTP, as a Cloud Integration script sends them: CSRF,
roles, certificates, key pairs, signing requests, delete, rename, activation, revert, keystore
import and hostile input. Each test checks what the database holds afterwards, not only the
status code, and that the audit log names the API client's user."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from keystore import crypto, services
from keystore.models import AuditAction, AuditEvent, KeystoreEntry
from keystore_site.api.odata import hexalias
from renewals.activation import provision_sap_key
from renewals.models import PendingSapKey, SapKeyBackup
from tests import pki as pki_factory

API = "/api/v1"
SAP_ALIAS = "sap_cloudintegrationcertificate"
WRITE_ROLES = ("ReadOnly", "IntegrationDeveloper")


def self_signed(name: str, **kwargs) -> x509.Certificate:
    return pki_factory.make_cert(name, pki_factory.make_key(), ca=True, **kwargs)


def certificate_path(alias: str, query: str = "update=false") -> str:
    return f"{API}/CertificateResources('{hexalias(alias)}')/$value?{query}"


def entry_of(tenant, alias: str) -> KeystoreEntry | None:
    return KeystoreEntry.objects.filter(tenant=tenant).with_alias(alias).first()


def snapshot(tenant) -> list[tuple[str, str, int]]:
    """What a tenant's keystore and renewal rows hold: compared before and after a refusal."""
    entries = KeystoreEntry.objects.filter(tenant=tenant).order_by("alias")
    return [
        *((e.alias, e.fingerprint_sha256, e.version) for e in entries),
        *((f"pending:{p.alias}", p.fingerprint_sha256, 0) for p in PendingSapKey.objects.all()),
        *((f"backup:{b.alias}", b.fingerprint_sha256, 0) for b in SapKeyBackup.objects.all()),
    ]


def assert_odata_error(response, status: int, code: str) -> str:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]["lang"] == "en"
    assert isinstance(body["error"]["message"]["value"], str)
    return body["error"]["message"]["value"]


def audited(tenant, action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(tenant=tenant, action=action))


def username(caller) -> str:
    from keystore_site.api.models import ApiClient

    return ApiClient.objects.get(client_id=caller.client_id).user.get_username()


def odata_date(moment: datetime) -> str:
    return f"/Date({int(moment.timestamp() * 1000)})/"


@pytest.fixture
def admin(api_caller):
    return api_caller("Administrator")


def provide_sap_key(tenant, sap_pki) -> PendingSapKey:
    """A new SAP key for the SAP entry from the test SAP CA (as the renewal tests' `provide`
    fixture, which tests/keystore_site cannot see)."""
    return provision_sap_key(
        tenant,
        SAP_ALIAS,
        valid_days=385,
        private_key=pki_factory.make_key(),
        ca=(sap_pki.inter_key, [sap_pki.inter, sap_pki.root]),
    )


@pytest.fixture
def pending(tenant, sap_entry, sap_pki):
    return provide_sap_key(tenant, sap_pki)


# -- CSRF ------------------------------------------------------------------------------------


def test_a_write_without_a_csrf_token_is_refused_and_changes_nothing(tenant, admin, cert_entry):
    before = snapshot(tenant)
    der = pki_factory.der(self_signed("Partner One"))
    calls = [
        ("PUT", certificate_path("partner_one"), der, "application/pkix-cert"),
        ("POST", f"{API}/KeyPairGenerationRequests", json.dumps({"Alias": "k", "CommonName": "k"})),
        ("DELETE", f"{API}/KeystoreEntries('{hexalias(cert_entry.alias)}')", b""),
        ("PUT", f"{API}/KeystoreEntries('{hexalias(cert_entry.alias)}')?renameAlias=x", b"{}"),
    ]
    for method, path, body, *content_type in calls:
        response = admin.send(method, path, body, *content_type, csrf=False)
        assert response.status_code == 403, (method, path)
        assert response["X-CSRF-Token"] == "Required"
        # "Fetch" is how a token is asked for, never a token itself.
        admin.csrf = "Fetch"
        assert admin.send(method, path, body, *content_type).status_code == 403
        admin.csrf = ""
    assert snapshot(tenant) == before
    assert not AuditEvent.objects.filter(actor_label=username(admin)).exists()


@pytest.mark.parametrize("where", ["/api/v1/", "/"])
def test_a_token_fetched_from_the_service_or_the_site_root_works(tenant, admin, where):
    fetched = admin.get(where, **{"X-CSRF-Token": "Fetch"})
    assert fetched.status_code == 200
    admin.csrf = fetched["X-CSRF-Token"]
    der = pki_factory.der(self_signed("Partner Two"))
    response = admin.send("PUT", certificate_path("partner_two"), der, "application/pkix-cert")
    assert response.status_code == 204, response.content
    assert (
        entry_of(tenant, "partner_two").fingerprint_sha256
        == crypto.certificate_facts(x509.load_der_x509_certificate(der)).fingerprint_sha256
    )


def test_a_token_of_another_api_client_is_refused(tenant, api_caller):
    first, second = api_caller("Administrator"), api_caller("Administrator")
    second.csrf = first.fetch_csrf()
    der = pki_factory.der(self_signed("Partner Three"))
    response = second.send("PUT", certificate_path("partner_three"), der, "application/pkix-cert")
    assert response.status_code == 403 and response["X-CSRF-Token"] == "Required"
    assert entry_of(tenant, "partner_three") is None


# -- roles -----------------------------------------------------------------------------------


def _every_write(tenant, key_pair_entry, cert_entry, jks: bytes, p12: bytes):
    """(method, path, body, content type) of every write the API offers, aimed at tenant A."""
    key_hex, cert_hex = hexalias(key_pair_entry.alias), hexalias(cert_entry.alias)
    der = pki_factory.der(self_signed("Matrix Partner"))
    return [
        ("PUT", certificate_path("matrix_partner"), der, "application/pkix-cert"),
        ("PUT", certificate_path(cert_entry.alias, "update=true"), der, "application/pkix-cert"),
        (
            "POST",
            f"{API}/KeyPairResources",
            json.dumps(
                {
                    "Alias": "matrix_p12",
                    "Password": "pw",
                    "Resource": base64.b64encode(p12).decode(),
                }
            ),
            "application/json",
        ),
        (
            "POST",
            f"{API}/KeyPairGenerationRequests",
            json.dumps({"Alias": "matrix_new", "CommonName": "matrix", "KeyType": "RSA"}),
            "application/json",
        ),
        ("PUT", f"{API}/CertificateChainResources('{key_hex}')/$value", der, "application/x-pem"),
        ("DELETE", f"{API}/KeystoreEntries('{cert_hex}')", b"", "application/json"),
        (
            "PUT",
            f"{API}/KeystoreEntries('{cert_hex}')?renameAlias=moved",
            b"{}",
            "application/json",
        ),
        (
            "DELETE",
            f"{API}/KeystoreEntries('{hexalias(SAP_ALIAS)}')?keystoreName=KeyRenewal&activate=true",
            b"",
            "application/json",
        ),
        (
            "POST",
            f"{API}/KeystoreResources?importOption=overwrite",
            json.dumps(
                {"Name": "system", "Resource": base64.b64encode(jks).decode(), "Password": "pw"}
            ),
            "application/json",
        ),
        (
            "POST",
            f"{API}/SSHKeyGenerationRequests?update=false",
            json.dumps({"Alias": "id_rsa", "SSHFile": "AAAA", "CommonName": "matrix"}),
            "application/json",
        ),
        (
            "PUT",
            f"{API}/KeystoreResources('system')?deleteEntries=true",
            json.dumps({"Aliases": cert_entry.alias}),
            "application/json",
        ),
    ]


@pytest.mark.parametrize("role", WRITE_ROLES)
def test_readers_and_developers_cannot_write(
    tenant, api_caller, key_pair_entry, cert_entry, pending, pki, role
):
    caller = api_caller(role)
    jks = pki_factory.make_jks([("matrix_jks", None, [self_signed("Matrix JKS")])], "pw")
    p12 = pki_factory.make_pkcs12_single("p12", pki.leaf_key, pki.chain, "pw")
    before = snapshot(tenant)
    for method, path, body, content_type in _every_write(
        tenant, key_pair_entry, cert_entry, jks, p12
    ):
        response = caller.send(method, path, body, content_type)
        assert_odata_error(response, 403, "Forbidden")
    # Refused before the body is read: a garbage body or an unknown alias is still a 403.
    for method, path, body in [
        ("POST", f"{API}/KeystoreResources", b"{not json"),
        ("POST", f"{API}/KeyPairGenerationRequests", b"[]"),
        ("PUT", f"{API}/HistoryKeystoreEntries('{hexalias('[7]_nothing')}')?copy=true", b"{}"),
        ("DELETE", f"{API}/KeystoreEntries('{hexalias('no such alias')}')", b""),
    ]:
        assert_odata_error(caller.send(method, path, body), 403, "Forbidden")
    assert snapshot(tenant) == before
    assert not AuditEvent.objects.filter(actor_label=username(caller)).exists()


def test_an_administrator_of_another_tenant_cannot_touch_tenant_a(
    tenant, other_tenant, api_caller, key_pair_entry, cert_entry, pending, pki
):
    stranger = api_caller("Administrator", of_tenant=other_tenant)
    before = snapshot(tenant)
    key_hex, cert_hex = hexalias(key_pair_entry.alias), hexalias(cert_entry.alias)
    der = pki_factory.der(self_signed("Stranger"))
    for method, path, body in [
        ("DELETE", f"{API}/KeystoreEntries('{cert_hex}')", b""),
        ("PUT", f"{API}/KeystoreEntries('{cert_hex}')?renameAlias=moved", b"{}"),
        ("PUT", f"{API}/CertificateChainResources('{key_hex}')/$value", der),
        (
            "DELETE",
            f"{API}/KeystoreEntries('{hexalias(SAP_ALIAS)}')?keystoreName=KeyRenewal&activate=true",
            b"",
        ),
    ]:
        assert_odata_error(stranger.send(method, path, body), 404, "Not Found")
    assert (
        stranger.get(f"{API}/KeystoreEntries('{key_hex}')/SigningRequest/$value").status_code == 404
    )
    # Writing an alias that tenant A uses lands in the stranger's own tenant, never in A's.
    response = stranger.send(
        "PUT", certificate_path(cert_entry.alias), der, "application/pkix-cert"
    )
    assert response.status_code == 204
    assert snapshot(tenant) == before
    assert entry_of(other_tenant, cert_entry.alias) is not None


# -- certificates ----------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["der", "base64", "pem"])
def test_put_a_certificate_in_each_encoding(tenant, admin, encoding):
    cert = self_signed(f"Partner {encoding}")
    body = {
        "der": pki_factory.der(cert),
        "base64": base64.encodebytes(pki_factory.der(cert)),
        "pem": pki_factory.pem(cert),
    }[encoding]
    response = admin.send("PUT", certificate_path("partner"), body, "application/pkix-cert")
    assert response.status_code == 204, response.content
    entry = entry_of(tenant, "partner")
    assert entry.certificate() == cert and entry.entry_type == "certificate"
    [event] = audited(tenant, AuditAction.ADD)
    assert event.actor_label == username(admin) == f"api:{tenant.slug}:script-Administrator-0"


def test_update_false_keeps_the_certificate_and_update_true_replaces_it(tenant, admin):
    first, second = self_signed("First"), self_signed("Second")
    assert (
        admin.send(
            "PUT", certificate_path("partner"), pki_factory.der(first), "application/pkix-cert"
        ).status_code
        == 204
    )
    refused = admin.send(
        "PUT", certificate_path("partner"), pki_factory.der(second), "application/pkix-cert"
    )
    assert_odata_error(refused, 400, "Bad Request")
    assert entry_of(tenant, "partner").certificate() == first

    replaced = admin.send(
        "PUT",
        certificate_path("partner", "update=true&returnKeystoreEntries=true"),
        pki_factory.der(second),
        "application/pkix-cert",
    )
    assert replaced.status_code == 200
    [row] = replaced.json()["d"]["results"]
    entry = entry_of(tenant, "partner")
    assert entry.certificate() == second
    assert row["Alias"] == "partner" and row["FingerprintSha256"] == entry.fingerprint_sha256
    [event] = audited(tenant, AuditAction.OVERWRITE)
    assert event.actor_label == username(admin)


# -- key pairs: PKCS#12, generation, signing request, signed response --------------------------


def test_post_a_pkcs12_key_pair(tenant, admin, pki):
    p12 = pki_factory.make_pkcs12_single("anything", pki.leaf_key, pki.chain, "p12-secret")
    body = {
        "Alias": "my_client",
        "Password": "p12-secret",
        "Resource": base64.b64encode(p12).decode(),
    }
    response = admin.send(
        "POST", f"{API}/KeyPairResources?returnKeystoreEntries=false", json.dumps(body)
    )
    assert response.status_code == 204, response.content
    entry = entry_of(tenant, "my_client")
    assert entry.entry_type == "key_pair"
    assert crypto.private_key_matches(entry.open_key_pair_key(), pki.leaf)
    assert entry.certificate_chain() == pki.chain
    assert audited(tenant, AuditAction.ADD)[0].actor_label == username(admin)


def test_generate_a_key_pair_sign_its_request_and_put_the_chain(tenant, admin, pki):
    not_after = datetime.now(UTC) + timedelta(days=200)
    body = {
        "Alias": "signed_key",
        "CommonName": "signed.example.com",
        "Organization": "Example, Inc.",
        "KeyType": "RSA",
        "KeySize": 2048,
        "ValidNotAfter": odata_date(not_after),
    }
    response = admin.send("POST", f"{API}/KeyPairGenerationRequests", json.dumps(body))
    assert response.status_code == 204, response.content
    entry = entry_of(tenant, "signed_key")
    assert entry.entry_type == "key_pair" and entry.key_size == 2048
    assert abs(entry.valid_until - not_after) < timedelta(days=1, minutes=5)
    assert "CN=signed.example.com" in entry.subject and "Example\\, Inc." in entry.subject

    hexvalue = hexalias("signed_key")
    csr_response = admin.get(f"{API}/KeystoreEntries('{hexvalue}')/SigningRequest/$value")
    assert csr_response.status_code == 200
    csr = x509.load_pem_x509_csr(csr_response.content)
    assert csr.is_signature_valid
    assert csr.subject == entry.certificate().subject

    now = datetime.now(UTC)
    signed = (
        x509.CertificateBuilder()
        .subject_name(csr.subject)
        .issuer_name(pki.inter.subject)
        .public_key(csr.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=90))
        .sign(pki.inter_key, hashes.SHA256())
    )
    chain_pem = pki_factory.pem(signed, pki.inter, pki.root)
    response = admin.send(
        "PUT",
        f"{API}/CertificateChainResources('{hexvalue}')/$value?returnKeystoreEntries=true",
        chain_pem,
        "application/x-pem-file",
    )
    assert response.status_code == 200, response.content
    entry.refresh_from_db()
    assert entry.certificate() == signed
    assert entry.certificate_chain() == [signed, pki.inter, pki.root]
    assert crypto.private_key_matches(entry.open_key_pair_key(), signed)
    [row] = [r for r in response.json()["d"]["results"] if r["Alias"] == "signed_key"]
    assert row["FingerprintSha256"] == entry.fingerprint_sha256
    [event] = audited(tenant, AuditAction.OVERWRITE)
    assert event.actor_label == username(admin) and "signed certificate applied" in event.detail


def test_subject_values_are_escaped_and_e_mail_is_kept(tenant, admin):
    body = {
        "Alias": "odd_subject",
        "CommonName": "a;b <c>, d+e",
        "Organization": '"Quoted" \\ Org',
        "Country": "DE",
        "Email": "ops@example.com",
        "KeyType": "EC",
        "KeySize": 256,
    }
    response = admin.send("POST", f"{API}/KeyPairGenerationRequests", json.dumps(body))
    assert response.status_code == 204, response.content
    subject = entry_of(tenant, "odd_subject").certificate().subject
    assert subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "a;b <c>, d+e"
    assert subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == '"Quoted" \\ Org'
    assert subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS)[0].value == "ops@example.com"


@pytest.mark.parametrize(
    "change",
    [
        {"Country": "DEU"},
        {"CommonName": ""},
        {"CommonName": 7},
        {"KeySize": 1024},
        {"KeyType": "DSA"},
        {"ValidNotAfter": "/Date(0)/"},
        {"ValidNotAfter": "2030-01-01"},
        {"ValidNotBefore": "/Date(4102444800000)/", "ValidNotAfter": "/Date(4070908800000)/"},
        {"Alias": "sap_mine"},
    ],
)
def test_a_bad_key_pair_request_creates_nothing(tenant, admin, change):
    body = {"Alias": "bad_request", "CommonName": "bad", "KeyType": "RSA", "KeySize": 2048}
    response = admin.send(
        "POST", f"{API}/KeyPairGenerationRequests", json.dumps({**body, **change})
    )
    assert response.status_code in (400, 403), response.content
    assert not KeystoreEntry.objects.filter(tenant=tenant).exists()
    assert not AuditEvent.objects.filter(actor_label=username(admin)).exists()


def test_a_chain_for_a_certificate_entry_is_refused(tenant, admin, cert_entry, pki):
    before = snapshot(tenant)
    response = admin.send(
        "PUT",
        f"{API}/CertificateChainResources('{hexalias(cert_entry.alias)}')/$value",
        pki_factory.pem(pki.leaf, pki.inter),
    )
    value = assert_odata_error(response, 400, "Bad Request")
    assert value == f'Alias "{cert_entry.alias}" does not represent a Key Pair'
    assert snapshot(tenant) == before


# -- delete and rename -----------------------------------------------------------------------


def test_delete_an_entry(tenant, admin, cert_entry):
    response = admin.send("DELETE", f"{API}/KeystoreEntries('{hexalias(cert_entry.alias)}')")
    assert response.status_code == 204
    assert entry_of(tenant, cert_entry.alias) is None
    [event] = audited(tenant, AuditAction.DELETE)
    assert event.actor_label == username(admin) and event.alias == cert_entry.alias
    again = admin.send("DELETE", f"{API}/KeystoreEntries('{hexalias(cert_entry.alias)}')")
    assert_odata_error(again, 404, "Not Found")


def test_sap_entries_cannot_be_deleted_or_renamed(tenant, admin, sap_entry):
    before = snapshot(tenant)
    path = f"{API}/KeystoreEntries('{hexalias(SAP_ALIAS)}')"
    assert_odata_error(admin.send("DELETE", path), 403, "Forbidden")
    assert_odata_error(admin.send("PUT", f"{path}?renameAlias=mine"), 403, "Forbidden")
    assert snapshot(tenant) == before


def test_rename_an_entry(tenant, admin, cert_entry):
    fingerprint = cert_entry.fingerprint_sha256
    response = admin.send(
        "PUT",
        f"{API}/KeystoreEntries('{hexalias(cert_entry.alias)}')?renameAlias=partner%20renamed",
        json.dumps({"Status": None}),
    )
    assert response.status_code == 204, response.content
    assert entry_of(tenant, cert_entry.alias) is None
    assert entry_of(tenant, "partner renamed").fingerprint_sha256 == fingerprint
    [event] = audited(tenant, AuditAction.RENAME)
    assert event.actor_label == username(admin)


# -- activation and revert -------------------------------------------------------------------


def activation_path() -> str:
    return f"{API}/KeystoreEntries('{hexalias(SAP_ALIAS)}')?keystoreName=KeyRenewal&activate=true"


def test_delete_in_key_renewal_activates_the_waiting_key_once(tenant, admin, sap_entry, pending):
    old_fingerprint = sap_entry.fingerprint_sha256
    response = admin.send("DELETE", activation_path())
    assert response.status_code == 204, response.content
    sap_entry.refresh_from_db()
    assert sap_entry.fingerprint_sha256 == pending.fingerprint_sha256
    assert not PendingSapKey.objects.filter(tenant=tenant).exists()
    [backup] = SapKeyBackup.objects.filter(tenant=tenant)
    assert backup.fingerprint_sha256 == old_fingerprint

    # A double click: nothing is waiting any more.
    again = admin.send("DELETE", activation_path())
    assert_odata_error(again, 404, "Not Found")
    assert SapKeyBackup.objects.filter(tenant=tenant).count() == 1
    [event] = audited(tenant, AuditAction.ACTIVATE)
    assert event.actor_label == username(admin)
    assert event.new_fingerprint == pending.fingerprint_sha256


def test_the_renewal_gate_and_four_eyes_apply_to_the_api(tenant, admin, sap_entry, pending):
    """The API's activation is the manual one: a "require" gate refuses it while the plan has
    unsettled backends, four eyes while nobody approved; nothing changes."""
    from renewals.plans.models import Gate, PlanBackend, RenewalPlan, TenantPlanSettings

    plan = RenewalPlan.objects.get(occasion=pending.material_id)
    PlanBackend.objects.create(plan=plan, system="ERP_PROD", address="https://erp/", usage="uses")
    settings_row = TenantPlanSettings.objects.create(tenant=tenant, gate=Gate.REQUIRE)
    before = snapshot(tenant)
    refused = admin.send("DELETE", activation_path())
    assert_odata_error(refused, 400, "Bad Request")
    assert "ERP_PROD" in refused.json()["error"]["message"]["value"]
    assert snapshot(tenant) == before
    settings_row.gate, settings_row.four_eyes = Gate.WARN, True
    settings_row.save()
    refused = admin.send("DELETE", activation_path())
    assert "not approved yet" in refused.json()["error"]["message"]["value"]
    assert snapshot(tenant) == before


def test_activation_needs_activate_true(tenant, admin, sap_entry, pending):
    before = snapshot(tenant)
    path = f"{API}/KeystoreEntries('{hexalias(SAP_ALIAS)}')?keystoreName=KeyRenewal"
    assert_odata_error(admin.send("DELETE", path), 400, "Bad Request")
    assert_odata_error(admin.send("DELETE", path + "&activate=maybe"), 400, "Bad Request")
    assert snapshot(tenant) == before


def test_put_history_entry_copies_the_backup_back_to_new_sap_keys(
    tenant, admin, sap_entry, pending
):
    assert admin.send("DELETE", activation_path()).status_code == 204
    [backup] = SapKeyBackup.objects.filter(tenant=tenant)
    history = hexalias(f"[1]_{SAP_ALIAS}")

    wrong = admin.send(
        "PUT",
        f"{API}/HistoryKeystoreEntries('{history}')?copy=true&destinationAlias=elsewhere",
        json.dumps({"Status": None}),
    )
    assert_odata_error(wrong, 400, "Bad Request")
    assert not PendingSapKey.objects.filter(tenant=tenant).exists()

    response = admin.send(
        "PUT",
        f"{API}/HistoryKeystoreEntries('{history}')?copy=true",
        json.dumps({"Status": None}),
    )
    assert response.status_code == 204, response.content
    [waiting] = PendingSapKey.objects.filter(tenant=tenant)
    assert waiting.alias == SAP_ALIAS and waiting.fingerprint_sha256 == backup.fingerprint_sha256
    assert SapKeyBackup.objects.filter(tenant=tenant).count() == 1
    [event] = audited(tenant, AuditAction.REVERT)
    assert event.actor_label == username(admin)

    missing = admin.send(
        "PUT", f"{API}/HistoryKeystoreEntries('{hexalias(f'[9]_{SAP_ALIAS}')}')?copy=true"
    )
    assert_odata_error(missing, 404, "Not Found")


# -- keystore import -------------------------------------------------------------------------


def import_keystore(caller, jks: bytes, option: str, password: str = "store-pw", name="system"):
    body = {"Name": name, "Resource": base64.b64encode(jks).decode(), "Password": password}
    return caller.send("POST", f"{API}/KeystoreResources?importOption={option}", json.dumps(body))


def statuses(response) -> dict[str, str]:
    assert response.status_code == 200, response.content
    return {row["Alias"]: row["Status"] for row in response.json()["d"]["results"]}


def test_import_a_keystore_with_merge_and_overwrite(tenant, admin, pki):
    services.import_certificate(tenant, "kept", pki_factory.der(self_signed("Kept")))
    first, second, third = self_signed("One"), self_signed("Two"), self_signed("Three")
    services.import_certificate(tenant, "two", pki_factory.der(second))
    jks = pki_factory.make_jks(
        [
            ("one", None, [first]),
            ("two", None, [third]),
            ("client", pki.leaf_key, pki.chain),
            ("sap_fake", None, [self_signed("Fake SAP")]),
        ],
        "store-pw",
    )
    merged = statuses(import_keystore(admin, jks, "merge"))
    assert merged["one"] == "new" and merged["client"] == "new" and merged["kept"] == "unchanged"
    # SAP's own words, which scripts compare.
    assert merged["sap_fake"] == (
        "notImported: The alias is not allowed. Aliases starting with 'sap_' are reserved for SAP."
    )
    assert merged["two"] == "notImported: An entry with the same alias already exists"
    assert entry_of(tenant, "two").certificate() == second
    assert entry_of(tenant, "sap_fake") is None
    assert crypto.private_key_matches(entry_of(tenant, "client").open_key_pair_key(), pki.leaf)

    # Each alias is one row: the refused "two" carries its refusal on its stored row.
    again = import_keystore(admin, jks, "merge").json()["d"]["results"]
    assert len({row["Hexalias"] for row in again}) == len(again)
    assert {row["Alias"]: row["Status"] for row in again}["two"].startswith("notImported: ")

    overwritten = statuses(import_keystore(admin, jks, "overwrite"))
    assert overwritten["two"] == "changed" and overwritten["kept"] == "unchanged"
    assert entry_of(tenant, "two").certificate() == third
    actors = {event.actor_label for event in AuditEvent.objects.filter(tenant=tenant, alias="two")}
    assert username(admin) in actors


def test_import_without_the_listing_is_all_or_nothing(tenant, admin):
    services.import_certificate(tenant, "two", pki_factory.der(self_signed("Two")))
    jks = pki_factory.make_jks(
        [("one", None, [self_signed("One")]), ("two", None, [self_signed("Other Two")])],
        "store-pw",
    )
    before = snapshot(tenant)
    body = {"Name": "system", "Resource": base64.b64encode(jks).decode(), "Password": "store-pw"}
    path = f"{API}/KeystoreResources?importOption=merge&returnKeystoreEntries=false"
    value = assert_odata_error(admin.send("POST", path, json.dumps(body)), 400, "Bad Request")
    assert "two" in value
    # "The complete import failed": "one" was not kept either, nor audited.
    assert snapshot(tenant) == before
    assert not AuditEvent.objects.filter(actor_label=username(admin)).exists()

    path = f"{API}/KeystoreResources?importOption=overwrite&returnKeystoreEntries=false"
    assert admin.send("POST", path, json.dumps(body)).status_code == 204
    assert entry_of(tenant, "one") is not None
    assert "CN=Other Two" in entry_of(tenant, "two").certificate().subject.rfc4514_string()


def test_import_refuses_other_keystores_and_options(tenant, admin):
    jks = pki_factory.make_jks([("one", None, [self_signed("One")])], "store-pw")
    before = snapshot(tenant)
    value = assert_odata_error(
        import_keystore(admin, jks, "overwrite", name="KeyRenewal"), 400, "Bad Request"
    )
    assert "'KeyRenewal' is not supported for the property 'Name'" in value
    assert_odata_error(import_keystore(admin, jks, "everything"), 400, "Bad Request")
    assert_odata_error(import_keystore(admin, jks, "merge", password="wrong"), 400, "Bad Request")
    assert snapshot(tenant) == before


# -- hostile input ---------------------------------------------------------------------------


def test_hostile_bodies_and_parameters_change_nothing(tenant, admin, cert_entry, monkeypatch):
    before = snapshot(tenant)
    der = pki_factory.der(self_signed("Hostile"))

    # Over the limit: refused on the Content-Length, before the body is read or parsed.
    from django.http import HttpRequest

    read = []
    real_body = HttpRequest.body
    monkeypatch.setattr(
        HttpRequest, "body", property(lambda request: read.append(1) or real_body.fget(request))
    )
    too_big = admin.send(
        "PUT", certificate_path("big"), b"0" * (10 * 1024 + 1), "application/pkix-cert"
    )
    assert_odata_error(too_big, 413, "Payload Too Large")
    huge = json.dumps({"Name": "system", "Resource": "A" * (2 * 1024 * 1024), "Password": "x"})
    assert_odata_error(
        admin.send("POST", f"{API}/KeystoreResources", huge), 413, "Payload Too Large"
    )
    assert not read
    monkeypatch.undo()

    assert_odata_error(
        admin.send("POST", f"{API}/KeyPairResources", b"{not json"), 400, "Bad Request"
    )
    assert_odata_error(admin.send("POST", f"{API}/KeyPairResources", b"[1, 2]"), 400, "Bad Request")
    not_base64 = json.dumps({"Alias": "x", "Password": "pw", "Resource": "***not base64***"})
    assert_odata_error(
        admin.send("POST", f"{API}/KeyPairResources", not_base64), 415, "Unsupported Media Type"
    )
    value = assert_odata_error(
        admin.send(
            "PUT", f"{API}/CertificateResources('ABC')/$value", der, "application/pkix-cert"
        ),
        400,
        "Bad Request",
    )
    assert "even-length" in value
    assert_odata_error(
        admin.send("PUT", certificate_path("garbage"), b"MIIgarbage!!", "application/pkix-cert"),
        415,
        "Unsupported Media Type",
    )
    assert_odata_error(
        admin.send(
            "PUT", certificate_path("garbage"), b"\x30\x03\x02\x01", "application/pkix-cert"
        ),
        400,
        "Bad Request",
    )
    assert_odata_error(
        admin.send("PUT", certificate_path("sap_mine"), der, "application/pkix-cert"),
        403,
        "Forbidden",
    )
    assert snapshot(tenant) == before


def test_a_wrong_pkcs12_password_is_a_clear_400(tenant, admin, pki):
    p12 = pki_factory.make_pkcs12_single("k", pki.leaf_key, pki.chain, "right-password")
    body = {"Alias": "k", "Password": "wrong-password", "Resource": base64.b64encode(p12).decode()}
    value = assert_odata_error(
        admin.send("POST", f"{API}/KeyPairResources", json.dumps(body)), 400, "Bad Request"
    )
    assert "password" in value.lower()
    assert entry_of(tenant, "k") is None


def test_an_expired_certificate_is_refused(tenant, admin):
    now = datetime.now(UTC)
    expired = self_signed(
        "Expired", not_before=now - timedelta(days=30), not_after=now - timedelta(days=1)
    )
    response = admin.send(
        "PUT", certificate_path("expired"), pki_factory.der(expired), "application/pkix-cert"
    )
    value = assert_odata_error(response, 400, "Bad Request")
    assert "expired" in value
    assert entry_of(tenant, "expired") is None


def test_a_signed_response_of_another_key_is_refused(tenant, admin, key_pair_entry, pki):
    before = snapshot(tenant)
    other = pki_factory.make_pki(prefix="Other")
    response = admin.send(
        "PUT",
        f"{API}/CertificateChainResources('{hexalias(key_pair_entry.alias)}')/$value",
        pki_factory.pem(other.leaf, other.inter, other.root),
    )
    assert_odata_error(response, 400, "Bad Request")
    assert snapshot(tenant) == before


def test_the_private_key_is_never_in_an_answer(tenant, admin, pki):
    p12 = pki_factory.make_pkcs12_single("k", pki.leaf_key, pki.chain, "pw")
    body = {"Alias": "k", "Password": "pw", "Resource": base64.b64encode(p12).decode()}
    response = admin.send(
        "POST", f"{API}/KeyPairResources?returnKeystoreEntries=true", json.dumps(body)
    )
    assert response.status_code == 200
    key_der = pki.leaf_key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    assert base64.b64encode(key_der)[:40] not in response.content
    assert b"PRIVATE KEY" not in response.content


# -- SSH keys ----------------------------------------------------------------------------------


@pytest.mark.skipif(__import__("shutil").which("ssh-keygen") is None, reason="ssh-keygen missing")
def test_an_ssh_key_file_becomes_a_key_pair(tenant, admin, tmp_path):
    import subprocess

    path = tmp_path / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "sftp", "-f", str(path)],
        check=True,
        timeout=60,
    )
    body = {
        "Alias": "id_ed25519",
        "SSHFile": base64.b64encode(path.read_bytes()).decode(),
        "CommonName": "sftp-user",
        "ValidNotAfter": odata_date(datetime.now(UTC) + timedelta(days=30)),
    }
    made = admin.send("POST", f"{API}/SSHKeyGenerationRequests?update=false", json.dumps(body))
    assert made.status_code == 200 and made.json() == {"d": {"Alias": "id_ed25519"}}
    entry = entry_of(tenant, "id_ed25519")
    assert entry is not None and entry.subject_cn == "sftp-user"
    public = admin.get(f"{API}/KeystoreEntries('{hexalias('id_ed25519')}')/Sshkey/$value")
    assert public.content.split()[1] == path.with_suffix(".pub").read_bytes().split()[1]
    again = admin.send("POST", f"{API}/SSHKeyGenerationRequests?update=false", json.dumps(body))
    assert (
        again.status_code == 400 and "exists already" in again.json()["error"]["message"]["value"]
    )
    junk = admin.send(
        "POST",
        f"{API}/SSHKeyGenerationRequests?update=true",
        json.dumps({**body, "SSHFile": base64.b64encode(b"PuTTY-User-Key-File-3").decode()}),
    )
    assert junk.status_code == 400 and "PuTTY" in junk.json()["error"]["message"]["value"]
    assert entry_of(tenant, "id_ed25519").version == 1
