"""The where-used flow parser: one test per rule and per kind of bad input.

Flows are generated in memory by `tests/renewals/flowfactory.py`; nothing touches Django, except
one test that follows a too-deep flow through the where-used import.
"""

from __future__ import annotations

import io
import struct
import zipfile

import pytest

from renewals.whereused import parser
from renewals.whereused.parser import (
    ANY_KEY,
    Certainty,
    FlowParseError,
    KeyUsage,
    ScriptAlias,
    Usage,
    find_script_aliases,
    parse_flow_zip,
    parse_iflw,
    parse_parameters,
    script_usages,
)
from tests.renewals.flowfactory import (
    FLOW_DIR,
    SCRIPT_DIR,
    as2_receiver,
    channel,
    credential_script,
    encryptor_step,
    flow_zip,
    groovy_script,
    iflw,
    keystore_script,
    mail_receiver_with_unset_parameter,
    manifest,
    pkcs7_signer_without_alias,
    script_step,
    sftp_receiver,
    soap_receiver_with_ws_security_off,
    soap_sender_with_ws_security,
    step,
    verifier_step,
    zip_bytes,
)

CERT_AUTH = {"authentication": "Client Certificate"}


def usages_of(*components, parameters=None, warnings=None) -> list[KeyUsage]:
    return parse_iflw(iflw(*components), parameters or {}, flow_name="Flow", warnings=warnings)


def only(usages: list[KeyUsage]) -> KeyUsage:
    assert len(usages) == 1, usages
    return usages[0]


# --- steps ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cname", "props", "expected_type"),
    [
        ("PKCS7Signer", {"privateKeyAlias": "partner_sign"}, "PKCS#7 signer"),
        ("SignMessage", {"PrivateKeyAliasSigning": "partner_sign"}, "PKCS#7 signer"),
        ("XMLSigner", {"privateKeyAlias": "partner_sign"}, "XML signer"),
        ("SimpleSigner", {"privateKeyAlias": "partner_sign"}, "Simple signer"),
    ],
)
def test_signer_step_uses_its_alias_for_signing(cname, props, expected_type):
    u = only(usages_of(step("CallActivity_7", "Sign payload", cname, props)))
    assert (u.component_id, u.component_name, u.component_type) == (
        "CallActivity_7",
        "Sign payload",
        expected_type,
    )
    assert (u.usage, u.certainty, u.alias) == (Usage.SIGNING, Certainty.USES, "partner_sign")
    assert u.property_key in props
    assert (u.direction, u.system, u.address, u.outbound) == ("", "", "", False)


def test_decryptor_may_use_any_key_and_verifies_with_a_public_alias():
    plain = only(usages_of(step("CallActivity_1", "Decrypt", "PKCS7Decryptor")))
    assert (plain.usage, plain.certainty, plain.alias) == (
        Usage.DECRYPTION,
        Certainty.MAY_USE,
        ANY_KEY,
    )
    assert plain.component_type == "PKCS#7 decryptor"

    verifying = usages_of(
        step("CallActivity_1", "Decrypt", "PKCS7Decryptor", {"publicKeyAlias": "partner_cert"})
    )
    assert {(u.usage, u.certainty, u.alias) for u in verifying} == {
        (Usage.DECRYPTION, Certainty.MAY_USE, ANY_KEY),
        (Usage.VERIFICATION, Certainty.USES, "partner_cert"),
    }


def test_encryptor_uses_the_partner_public_alias():
    u = only(
        usages_of(
            step(
                "CallActivity_2",
                "Encrypt",
                "PKCS7Encryptor",
                {"publicKeyAliasForEncryption": "partner_cert"},
            )
        )
    )
    assert (u.component_type, u.usage, u.certainty, u.alias) == (
        "PKCS#7 encryptor",
        Usage.ENCRYPTION,
        Certainty.USES,
        "partner_cert",
    )


def test_encryptor_signs_only_while_its_signing_switch_is_on():
    props = {"PublicKeyAliasEncryption": "partner_cert", "privateKeyAlias": "own_key"}
    on = usages_of(step("A", "Enc", "PKCS7Encryptor", {**props, "signAndEncrypt": "true"}))
    assert {(u.usage, u.alias) for u in on} == {
        (Usage.ENCRYPTION, "partner_cert"),
        (Usage.SIGNING, "own_key"),
    }
    off = usages_of(step("A", "Enc", "PKCS7Encryptor", {**props, "signAndEncrypt": "false"}))
    assert [(u.usage, u.alias) for u in off] == [(Usage.ENCRYPTION, "partner_cert")]


def test_xml_verifier_uses_public_alias_for_verification():
    u = only(usages_of(step("A", "Verify", "XMLVerifier", {"publicKeyAlias": "partner"})))
    assert (u.component_type, u.usage, u.alias) == (
        "XML verifier",
        Usage.VERIFICATION,
        "partner",
    )


def test_steps_in_exception_subprocesses_are_found():
    nested = step("CallActivity_9", "Sign in handler", "PKCS7Signer", {"privateKeyAlias": "k"})
    handler = step(
        "SubProcess_1",
        "Exception",
        "ErrorEventSubProcessTemplate",
        tag="subProcess",
        inner=[nested],
    )
    assert [(u.component_id, u.alias) for u in usages_of(handler)] == [("CallActivity_9", "k")]


# --- channels: client certificate -------------------------------------------------------------


@pytest.mark.parametrize(
    ("adapter", "props", "expected_type", "alias_key"),
    [
        ("SOAP", {**CERT_AUTH, "privateKeyAlias": "erp_client"}, "SOAP", "privateKeyAlias"),
        (
            "HTTP",
            {"authenticationMethod": "Client Certificate", "privateKeyAlias": "erp_client"},
            "HTTP",
            "privateKeyAlias",
        ),
        (
            "IDoc",
            {"authentication": "ClientCertificate", "privateKeyAlias": "erp_client"},
            "IDoc",
            "privateKeyAlias",
        ),
        (
            "OData",
            {
                "authenticationMethod": "client-certificate",
                "odataCertAuthPrivateKeyAlias": "erp_client",
            },
            "OData",
            "odataCertAuthPrivateKeyAlias",
        ),
        ("AS2", {**CERT_AUTH, "privateKeyAlias": "erp_client"}, "AS2", "privateKeyAlias"),
        (
            "SuccessFactors",
            {"authenticationMethod": "Client Certificate", "alias": "erp_client"},
            "SuccessFactors",
            "alias",
        ),
    ],
)
def test_receiver_with_client_certificate_and_alias_uses_it(
    adapter, props, expected_type, alias_key
):
    u = only(
        usages_of(
            channel(
                "MessageFlow_3",
                "To ERP",
                adapter,
                props=props,
                receiver="ERP_PROD",
                address="https://erp.example:443/sap/bc/srt",
            )
        )
    )
    assert (u.component_id, u.component_name, u.component_type, u.direction) == (
        "MessageFlow_3",
        "To ERP",
        expected_type,
        "Receiver",
    )
    assert (u.usage, u.certainty, u.alias, u.property_key) == (
        Usage.CLIENT_CERTIFICATE,
        Certainty.USES,
        "erp_client",
        alias_key,
    )
    assert (u.system, u.address, u.outbound) == (
        "ERP_PROD",
        "https://erp.example:443/sap/bc/srt",
        True,
    )


@pytest.mark.parametrize("adapter", ["SOAP", "HTTP", "IDoc", "OData", "AS2", "SuccessFactors"])
def test_receiver_with_client_certificate_without_alias_may_use_any_key(adapter):
    u = only(
        usages_of(channel("MF", "To ERP", adapter, props={**CERT_AUTH, "privateKeyAlias": ""}))
    )
    assert (u.usage, u.certainty, u.alias, u.outbound) == (
        Usage.CLIENT_CERTIFICATE,
        Certainty.MAY_USE,
        ANY_KEY,
        True,
    )
    assert u.system == "ERP_PROD"


def test_system_comes_from_the_participant_at_the_other_end():
    u = only(
        usages_of(
            channel(
                "MF",
                "To S4",
                "HTTP",
                props={**CERT_AUTH, "privateKeyAlias": "k", "system": ""},
                receiver="S4HANA_PROD",
                address="https://s4.example/api",
            )
        )
    )
    assert (u.system, u.address) == ("S4HANA_PROD", "https://s4.example/api")


@pytest.mark.parametrize(
    "auth", ["Basic", "None", "OAuth2 Client Credentials", "Principal Propagation"]
)
def test_other_authentication_switches_a_leftover_alias_off(auth):
    assert (
        usages_of(
            channel(
                "MF", "To ERP", "SOAP", props={"authentication": auth, "privateKeyAlias": "old"}
            )
        )
        == []
    )


def test_sender_channel_client_certificate_is_not_a_key_of_this_keystore():
    # Client-certificate *authorization* on a sender checks the caller's certificate.
    assert usages_of(channel("MF", "From C4C", "SOAP", direction="Sender", props=CERT_AUTH)) == []


def test_sftp_counts_only_with_a_named_ssh_key():
    named = only(
        usages_of(
            channel(
                "MF",
                "Drop file",
                "SFTP",
                props={"authentication": "PublicKey", "privateKeyAlias": "id_rsa_partner"},
                address="sftp.partner.example:22",
            )
        )
    )
    assert (named.component_type, named.usage, named.alias, named.address) == (
        "SFTP",
        Usage.CLIENT_CERTIFICATE,
        "id_rsa_partner",
        "sftp.partner.example:22",
    )
    unnamed = channel("MF", "x", "SFTP", props={"authentication": "PublicKey"})
    assert usages_of(unnamed) == []


# --- channels: WS-Security and AS2 ------------------------------------------------------------

WSS_ALIASES = {"PrivateKeyAliasSigning": "own_sign", "PublicKeyAliasEncryption": "partner_enc"}


def test_ws_security_sign_and_encrypt_uses_both_aliases():
    props = {
        "WSSecurity_outbound": "ManualConfiguration",
        "WSSecurityType_outbound": "SignAndEncryptMessage",
        **WSS_ALIASES,
    }
    found = usages_of(channel("MF", "To partner", "SOAP", props=props, receiver="PARTNER"))
    assert {(u.usage, u.certainty, u.alias, u.property_key) for u in found} == {
        (Usage.SIGNING, Certainty.USES, "own_sign", "PrivateKeyAliasSigning"),
        (Usage.ENCRYPTION, Certainty.USES, "partner_enc", "PublicKeyAliasEncryption"),
    }
    assert {(u.system, u.direction, u.outbound) for u in found} == {("PARTNER", "Receiver", False)}


def test_ws_security_sign_only_ignores_the_encryption_alias():
    props = {"WSSecurity_outbound": "SignMessage", **WSS_ALIASES}
    u = only(usages_of(channel("MF", "To partner", "SOAP", props=props)))
    assert (u.usage, u.alias) == (Usage.SIGNING, "own_sign")


@pytest.mark.parametrize(
    "switch",
    [
        {"WSSecurity_outbound": "None", "WSSecurityType_outbound": "SignAndEncryptMessage"},
        {"WSSecurity_outbound": "", "WSSecurityType_outbound": ""},
        {"WSSecurityType_outbound": "None"},
    ],
)
def test_ws_security_off_uses_nothing(switch):
    assert usages_of(channel("MF", "x", "SOAP", props={**switch, **WSS_ALIASES})) == []


def test_ws_security_switched_off_ignores_leftover_signing_settings():
    """A real SOAP receiver: WSSecurity_outbound=None with a stale SignMessage type, signature
    algorithm and signing alias. Nothing of WS-Security counts."""
    assert usages_of(soap_receiver_with_ws_security_off()) == []
    # The same channel with the switch on signs with the alias.
    on = soap_receiver_with_ws_security_off(WSSecurity_outbound="ManualConfiguration")
    u = only(usages_of(on))
    assert (u.usage, u.certainty, u.alias) == (
        Usage.SIGNING,
        Certainty.USES,
        "sap_cloudintegrationcertificate",
    )


def test_ws_security_on_the_sender_side_follows_its_own_switch():
    assert usages_of(soap_sender_with_ws_security("None")) == []
    u = only(usages_of(soap_sender_with_ws_security("ManualConfiguration")))
    assert (u.usage, u.alias, u.direction) == (Usage.VERIFICATION, "partner_root", "Sender")


def test_a_signer_without_an_alias_may_use_any_key():
    u = only(usages_of(pkcs7_signer_without_alias()))
    assert (u.component_name, u.component_type, u.usage, u.certainty, u.alias) == (
        "PKCS7 Signer",
        "PKCS#7 signer",
        Usage.SIGNING,
        Certainty.MAY_USE,
        ANY_KEY,
    )
    assert u.reason == "signer without an alias"
    # Steps whose names merely contain "sign" (an assignment) stay silent.
    assert usages_of(step("A", "Assign", "Assignment", {"x": "y"})) == []


def test_addresses_are_read_from_every_address_bearing_key():
    as2 = only(
        usages_of(as2_receiver(props={"publicKeyAliasForEncryption": "p", "encryptMessage": "1"}))
    )
    assert (as2.system, as2.address) == ("AS2_PARTNER", "https://as2.partner.example/as2")
    sftp = only(usages_of(sftp_receiver(host="sftp.partner.example", port="2222")))
    assert sftp.address == "sftp.partner.example:2222"


@pytest.mark.parametrize(
    ("adapter", "key", "address"),
    [
        ("AS4", "endpointUrl", "https://as4.example/msh"),
        ("XI", "Address", "https://pi.example/XISOAPAdapter/MessageServlet"),
        ("Anaplan", "anaplanHost", "api.anaplan.example"),  # by its name: a key ending in "host"
    ],
)
def test_other_adapters_name_their_address(adapter, key, address):
    props = {**CERT_AUTH, "privateKeyAlias": "k", key: address}
    found = usages_of(channel("MF", adapter, adapter, props=props, address=None))
    assert only(found).address == address


def test_certificate_uses_verifiers_encryptors_and_as2():
    found = usages_of(
        verifier_step("V1", "XML", "partner_root"),
        verifier_step("V2", "PKCS7", "partner_root", alias_key="publicKeyAlias"),
        verifier_step("V3", "Simple", "partner_root"),
        encryptor_step("E1", "XML", "partner_root"),
        encryptor_step("E2", "PKCS7", "partner_root"),
        as2_receiver(
            props={
                "publicKeyAliasForEncryption": "partner_root",
                "encryptMessage": "true",
                "publicKeyAliasForMDNVerification": "partner_root",
                "requestMdnSigned": "true",
            }
        ),
    )
    assert [(u.component_type, u.usage, u.alias) for u in found] == [
        ("AS2", Usage.ENCRYPTION, "partner_root"),
        ("AS2", Usage.VERIFICATION, "partner_root"),
        ("XML verifier", Usage.VERIFICATION, "partner_root"),
        ("PKCS#7 verifier", Usage.VERIFICATION, "partner_root"),
        ("Simple verifier", Usage.VERIFICATION, "partner_root"),
        ("XML encryptor", Usage.ENCRYPTION, "partner_root"),
        ("PKCS#7 encryptor", Usage.ENCRYPTION, "partner_root"),
    ]
    assert {u.certainty for u in found} == {Certainty.USES}


AS2_OFF = {
    "authentication": "Basic",
    "privateKeyAliasForSigning": "own_as2",
    "messageSigning": "false",
    "publicKeyAliasForEncryption": "partner_as2",
    "messageEncryption": "false",
    "publicKeyAliasForMDNVerification": "partner_mdn",
    "mdnSignatureRequested": "false",
}


def test_as2_with_signing_and_encryption_off_and_basic_auth_uses_no_key():
    assert usages_of(channel("MF", "To partner", "AS2", props=AS2_OFF)) == []


def test_as2_signing_encryption_and_mdn_verification_when_switched_on():
    props = {
        **AS2_OFF,
        "messageSigning": "true",
        "messageEncryption": "1",
        "mdnSignatureRequested": "yes",
    }
    found = usages_of(channel("MF", "To partner", "AS2", props=props))
    assert {(u.usage, u.alias) for u in found} == {
        (Usage.SIGNING, "own_as2"),
        (Usage.ENCRYPTION, "partner_as2"),
        (Usage.VERIFICATION, "partner_mdn"),
    }


# --- parameters, runtime expressions, unknown components --------------------------------------


def test_externalized_alias_and_address_are_resolved():
    comp = channel(
        "MF",
        "To ERP",
        "SOAP",
        props={"authentication": "{{auth}}", "privateKeyAlias": "{{Private Key Alias}}"},
        address="https://{{erp_host}}:443/sap/bc/srt",
    )
    data = flow_zip(
        "com.example.orders",
        iflw(comp),
        parameters={
            "auth": "Client Certificate",
            "Private Key Alias": "sap_cloudintegrationcertificate",
            "erp_host": "erp.example",
        },
    )
    u = only(parse_flow_zip(data).usages)
    assert (u.alias, u.address, u.certainty) == (
        "sap_cloudintegrationcertificate",
        "https://erp.example:443/sap/bc/srt",
        Certainty.USES,
    )


def test_an_unset_parameter_in_a_property_no_rule_reads_changes_nothing():
    """A real Mail receiver: `{{From email address}}` has no line in parameters.prop."""
    data = flow_zip(
        "com.example.mail",
        iflw(
            mail_receiver_with_unset_parameter(),
            step("A", "Sign", "PKCS7Signer", {"privateKeyAlias": "signing_key"}),
        ),
        parameters={"other": "x"},
    )
    export = parse_flow_zip(data)
    assert export.unresolved_parameters == ["From email address"]
    assert [(u.component_name, u.certainty, u.alias) for u in export.usages] == [
        ("Sign", Certainty.USES, "signing_key")
    ]
    # No parameters.prop at all: the same.
    assert parse_flow_zip(flow_zip("b", iflw(mail_receiver_with_unset_parameter()))).usages == []


def test_an_unset_parameter_in_an_alias_may_use_any_key_naming_it():
    comp = step("A", "Sign", "PKCS7Signer", {"privateKeyAlias": "{{signing_alias}}"})
    export = parse_flow_zip(flow_zip("com.example.orders", iflw(comp), parameters={"x": "y"}))
    u = only(export.usages)
    assert (u.usage, u.certainty, u.alias) == (Usage.SIGNING, Certainty.MAY_USE, ANY_KEY)
    assert u.reason == "alias from parameter {{signing_alias}}, not set in the export"
    assert export.unresolved_parameters == ["signing_alias"]


def test_an_unset_parameter_in_the_authentication_may_use_the_named_alias():
    named, unnamed = usages_of(
        channel(
            "MF1", "To ERP", "SOAP", props={"authentication": "{{auth}}", "privateKeyAlias": "k1"}
        ),
        channel("MF2", "To CRM", "HTTP", props={"authenticationMethod": "{{crm auth}}"}),
    )
    assert (named.usage, named.certainty, named.alias, named.outbound) == (
        Usage.CLIENT_CERTIFICATE,
        Certainty.MAY_USE,
        "k1",
        True,
    )
    assert named.reason == "authentication from parameter {{auth}}, not set in the export"
    assert (unnamed.certainty, unnamed.alias) == (Certainty.MAY_USE, ANY_KEY)
    assert "{{crm auth}}" in unnamed.reason


def test_runtime_expression_alias_may_use_any_key_with_a_warning():
    warnings: list[str] = []
    comp = step("A", "Sign", "SimpleSigner", {"privateKeyAlias": "${header.alias}"})
    u = only(usages_of(comp, warnings=warnings))
    assert (u.usage, u.certainty, u.alias) == (Usage.SIGNING, Certainty.MAY_USE, ANY_KEY)
    assert len(warnings) == 1 and "${header.alias}" in warnings[0]


def test_unknown_component_with_alias_like_property_is_unclassified():
    found = usages_of(
        step("CallActivity_5", "Custom adapter step", "com.acme:Thing", {"keyStoreAlias": "acme"}),
        channel("MF", "To Acme", "AcmeAdapter", props={"myAlias": "acme2", "enableAlias": "true"}),
    )
    assert {(u.component_type, u.usage, u.certainty, u.alias, u.property_key) for u in found} == {
        ("com.acme:Thing", Usage.UNCLASSIFIED, Certainty.USES, "acme", "keyStoreAlias"),
        ("AcmeAdapter", Usage.UNCLASSIFIED, Certainty.USES, "acme2", "myAlias"),
    }


def test_flow_without_key_usage_is_valid():
    xml = iflw(
        channel("MF1", "From shop", "HTTPS", direction="Sender", receiver="SHOP"),
        step("A", "Map", "MessageMapping", {"mappinguri": "dir://mmap/x"}),
        channel("MF2", "To ERP", "SOAP", props={"authentication": "Basic"}),
    )
    export = parse_flow_zip(flow_zip("com.example.plain", xml, parameters={}))
    assert export.usages == [] and export.warnings == []


# --- scripts ----------------------------------------------------------------------------------

GROOVY = """\
import com.sap.it.api.ITApiFactory
import com.sap.it.api.keystore.KeystoreService
def Message processData(Message message) {
    def keystore = ITApiFactory.getService(KeystoreService.class, null)
    def key = keystore.getKey("partner_signing")          // API call with a literal
    def cert = keystore.getCertificate('partner_root')
    def legacy = "sap_cloudintegrationcertificate"        // a literal no keystore API gets
    message.setHeader("Content-Type", "application/xml")  // noise: not an alias
    def dyn = keystore.getKey("${alias}")                 // runtime value: cannot be known
    return message
}
"""


def test_what_a_script_passes_to_the_keystore_is_named_in_script():
    data = flow_zip(
        "com.example.scripted",
        iflw(),
        parameters={},
        scripts={"Sign.groovy": GROOVY, "notes.txt": "sap_ignored"},
    )
    export = parse_flow_zip(data)
    assert [(u.alias, u.certainty, u.property_key) for u in export.usages] == [
        ("partner_signing", Certainty.USES, "getKey"),
        ("partner_root", Certainty.USES, "getCertificate"),
        (ANY_KEY, Certainty.MAY_USE, "getKey"),
    ]
    u = export.usages[0]
    # No step runs the file here: the file is the component.
    assert (u.component_type, u.component_name, u.component_id, u.script_file) == (
        "Script",
        "Sign.groovy",
        SCRIPT_DIR + "Sign.groovy",
        SCRIPT_DIR + "Sign.groovy",
    )
    assert (u.usage, u.outbound) == (Usage.NAMED_IN_SCRIPT, False)
    assert export.usages[2].reason == "getKey() with a value known only at runtime"
    assert any("Sign.groovy" in w and "runtime" in w for w in export.warnings)


def test_credential_names_in_scripts_are_never_keys():
    """getUserCredential("AWS_ACCESS_KEY") names a credential, even with the keystore in reach."""
    assert find_script_aliases(credential_script("AWS_ACCESS_KEY")) == []
    assert script_usages("s/creds.groovy", credential_script()) == []


@pytest.mark.parametrize("through", ["literal", "variable", "constant"])
def test_an_alias_reaches_the_keystore_directly_or_through_a_variable_or_constant(through):
    script = keystore_script("Partner_Signing", through=through)
    assert find_script_aliases(script) == [ScriptAlias("Partner_Signing", "getKeyPair")]


@pytest.mark.parametrize("call", ["getKey", "getCertificate", "getKeyPair", "getKeyManagers"])
def test_each_keystore_api_taking_an_alias_counts(call):
    assert find_script_aliases(keystore_script("k", call=call)) == [ScriptAlias("k", call)]


def test_literals_that_reach_no_keystore_api_are_not_aliases():
    script = groovy_script(
        'def unused = "sap_cloudintegrationcertificate"',
        'message.setProperty("alias", "partner_root")',
        "def entry = map.entrySet().first().getKey()",
    )
    assert find_script_aliases(script) == []
    # A getEntry in a script without a keystore is a ZIP or map entry, not a key.
    assert find_script_aliases('def e = zip.getEntry("partner_root")') == []


def test_a_script_usage_is_named_after_the_step_that_runs_it():
    data = flow_zip(
        "com.example.scripted",
        iflw(
            script_step("CallActivity_3", "Sign payload", "sign.groovy"),
            script_step("CallActivity_4", "Sign again", "/script/sign.groovy"),
            script_step("CallActivity_5", "Other script", "other.groovy"),
        ),
        parameters={},
        scripts={"sign.groovy": keystore_script("partner_signing"), "other.groovy": "x = 1"},
    )
    found = parse_flow_zip(data).usages
    assert [(u.component_id, u.component_name, u.script_file, u.alias) for u in found] == [
        ("CallActivity_3", "Sign payload", SCRIPT_DIR + "sign.groovy", "partner_signing"),
        ("CallActivity_4", "Sign again", SCRIPT_DIR + "sign.groovy", "partner_signing"),
    ]
    assert {u.component_type for u in found} == {"Script"}


# --- ZIP ---------------------------------------------------------------------------------------


def test_bundle_identity_comes_from_the_manifest():
    export = parse_flow_zip(
        flow_zip(
            "com.example.orders.replicate",
            iflw(),
            bundle_name="Replicate Orders",
            version="1.0.7",
            flow_name="Replicate_Orders",
        )
    )
    assert (export.bundle_id, export.bundle_name, export.version, export.flow_names) == (
        "com.example.orders.replicate",
        "Replicate Orders",
        "1.0.7",
        ["Replicate_Orders"],
    )


def test_manifest_continuation_lines_and_name_fallback():
    long_id = "com.example." + "x" * 120
    lines = [f"Bundle-SymbolicName: {long_id}; singleton:=true"]
    wrapped = "\r\n ".join(lines[0][i : i + 70] for i in range(0, len(lines[0]), 70))
    data = zip_bytes(
        {
            "META-INF/MANIFEST.MF": f"Manifest-Version: 1.0\r\n{wrapped}\r\n".encode(),
            FLOW_DIR + "f.iflw": iflw(),
        }
    )
    export = parse_flow_zip(data)
    assert (export.bundle_id, export.bundle_name, export.version) == (long_id, long_id, "")


def test_path_and_file_object_sources(tmp_path):
    data = flow_zip("com.example.file", iflw())
    path = tmp_path / "flow.zip"
    path.write_bytes(data)
    assert parse_flow_zip(path).bundle_id == "com.example.file"
    assert parse_flow_zip(str(path)).bundle_id == "com.example.file"
    with path.open("rb") as fh:
        assert parse_flow_zip(fh).bundle_id == "com.example.file"


@pytest.mark.parametrize("data", [b"", b"hello, not a zip", b"PK\x03\x04garbage" * 3])
def test_not_a_zip(data):
    with pytest.raises(FlowParseError, match="not a ZIP"):
        parse_flow_zip(data)


def test_zip_without_flow():
    data = zip_bytes({"META-INF/MANIFEST.MF": manifest("b"), "readme.txt": b"hi"})
    with pytest.raises(FlowParseError, match="no integration flow"):
        parse_flow_zip(data)


def test_zip_without_manifest_or_symbolic_name():
    with pytest.raises(FlowParseError, match="MANIFEST.MF"):
        parse_flow_zip(zip_bytes({FLOW_DIR + "f.iflw": iflw()}))
    no_name = zip_bytes({"META-INF/MANIFEST.MF": manifest(None), FLOW_DIR + "f.iflw": iflw()})
    with pytest.raises(FlowParseError, match="Bundle-SymbolicName"):
        parse_flow_zip(no_name)


@pytest.mark.parametrize(
    "xml",
    [
        b"<bpmn2:definitions xmlns:bpmn2='x'><unclosed></bpmn2:definitions>",
        b"",
        b"not xml at all",
        b"<a>&undefined;</a>",
        b"<root/>",  # well-formed, but not BPMN
    ],
)
def test_malformed_xml(xml):
    with pytest.raises(FlowParseError, match="integration flow 'f'") as err:
        parse_flow_zip(flow_zip("b", xml, flow_name="f"))
    assert "\n" not in str(err.value)


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<bpmn2:definitions xmlns:bpmn2="http://www.omg.org/spec/BPMN/20100524/MODEL">&lol9;</bpmn2:definitions>
"""
EXTERNAL_ENTITY = (
    b'<?xml version="1.0"?><!-- a comment first --><?pi x?>\n'
    b'<!DOCTYPE d [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><d>&xxe;</d>'
)


@pytest.mark.parametrize(
    "xml",
    [
        BILLION_LAUGHS,
        EXTERNAL_ENTITY,
        BILLION_LAUGHS.decode().replace('"1.0"?>', '"1.0" encoding="UTF-16"?>').encode("utf-16"),
    ],
    ids=["billion-laughs", "external-entity-after-comment", "utf-16"],
)
def test_dtd_and_entities_are_refused_and_never_expanded(xml, monkeypatch):
    def expanding_parser(*args, **kwargs):
        raise AssertionError("a document with a DTD reached the non-defused parser")

    monkeypatch.setattr(parser.ET, "fromstring", expanding_parser)
    with pytest.raises(FlowParseError, match="DTD") as err:
        parse_flow_zip(flow_zip("b", xml, flow_name="f"))
    assert "integration flow 'f'" in str(err.value)


def test_doctype_after_the_root_element_is_malformed_not_expanded():
    for xml in (b"<a/><!DOCTYPE a [<!ENTITY e 'x'>]>", b"<a><!DOCTYPE a [<!ENTITY e 'x'>]></a>"):
        with pytest.raises(FlowParseError, match="malformed"):
            parse_iflw(xml)


def test_zip_over_the_size_cap_is_refused_before_opening(monkeypatch, tmp_path):
    data = flow_zip("b", iflw())
    monkeypatch.setattr(parser, "MAX_ZIP_BYTES", len(data) - 1)

    def no_open(*args, **kwargs):
        raise AssertionError("opened an oversized ZIP")

    monkeypatch.setattr(parser.zipfile, "ZipFile", no_open)
    path = tmp_path / "big.zip"
    path.write_bytes(data)

    class Stream(io.RawIOBase):  # not seekable: the size is unknown up front
        def __init__(self):
            self.inner = io.BytesIO(data)

        def readable(self):
            return True

        def readinto(self, buffer):
            chunk = self.inner.read(len(buffer))
            buffer[: len(chunk)] = chunk
            return len(chunk)

    for source in (data, path, io.BytesIO(data), io.BufferedReader(Stream())):
        with pytest.raises(FlowParseError, match="too large"):
            parse_flow_zip(source)


def test_zip_with_too_many_entries(monkeypatch):
    members = {"META-INF/MANIFEST.MF": manifest("b"), FLOW_DIR + "f.iflw": iflw()}
    members.update({f"junk/{i}.txt": b"" for i in range(10)})
    data = zip_bytes(members)
    monkeypatch.setattr(parser, "MAX_ZIP_ENTRIES", 5)
    with pytest.raises(FlowParseError, match=r"too many entries \(12"):
        parse_flow_zip(data)
    # A trailer that under-reports the count is caught by the real count after opening.
    eocd = data.rindex(b"PK\x05\x06")
    lying = bytearray(data)
    lying[eocd + 8 : eocd + 12] = struct.pack("<HH", 2, 2)
    with pytest.raises(FlowParseError, match="too many entries"):
        parse_flow_zip(bytes(lying))


def test_zip_that_expands_too_far(monkeypatch):
    bomb = flow_zip("b", iflw(), extra_members={"padding.bin": b"\0" * 2_000_000})
    assert len(bomb) < 20_000  # highly compressible
    monkeypatch.setattr(parser, "MAX_UNCOMPRESSED_BYTES", 1_000_000)
    with pytest.raises(FlowParseError, match="expands too far"):
        parse_flow_zip(bomb)


def test_member_over_the_member_cap(monkeypatch):
    comps = [step(f"S{i}", "s", "ContentModifier", {"x": "y" * 100}) for i in range(50)]
    data = flow_zip("b", iflw(*comps))
    monkeypatch.setattr(parser, "MAX_MEMBER_BYTES", 10_000)
    with pytest.raises(FlowParseError, match="expands too far"):
        parse_flow_zip(data)


def _lie_about_size(data: bytes, member: str, claimed: int) -> bytes:
    """Rewrite the uncompressed size of `member` in its local and central headers."""
    out = bytearray(data)
    name = member.encode()
    central = 0
    while True:
        central = out.index(b"PK\x01\x02", central)
        name_len = struct.unpack_from("<H", out, central + 28)[0]
        if bytes(out[central + 46 : central + 46 + name_len]) == name:
            break
        central += 4
    struct.pack_into("<L", out, central + 24, claimed)
    local = struct.unpack_from("<L", out, central + 42)[0]
    struct.pack_into("<L", out, local + 22, claimed)
    return bytes(out)


def test_member_whose_header_lies_about_its_size(monkeypatch):
    comps = [step(f"S{i}", "s", "ContentModifier", {"x": "y" * 100}) for i in range(50)]
    honest = flow_zip("b", iflw(*comps), flow_name="f")
    lying = _lie_about_size(honest, FLOW_DIR + "f.iflw", 100)
    assert zipfile.ZipFile(io.BytesIO(lying)).getinfo(FLOW_DIR + "f.iflw").file_size == 100
    # The declared sizes pass every cap; reading then stops at the declared size and fails.
    monkeypatch.setattr(parser, "MAX_MEMBER_BYTES", 1_000)
    monkeypatch.setattr(parser, "MAX_UNCOMPRESSED_BYTES", 2_000)
    with pytest.raises(FlowParseError, match="cannot read|expands too far"):
        parse_flow_zip(lying)


def test_reader_counts_real_bytes_not_headers(monkeypatch):
    data = flow_zip("b", iflw(*[step(f"S{i}", "s", "X", {"x": "y" * 100}) for i in range(50)]))
    archive = zipfile.ZipFile(io.BytesIO(data))
    info = archive.getinfo(FLOW_DIR + "b.iflw")
    info.file_size = 10  # as if the header lied and the inflater did not stop there
    real_open = archive.open

    def unbounded_open(member, *args, **kwargs):
        fh = real_open(member, *args, **kwargs)
        fh._left = 1 << 40  # zipfile's own limit, disabled to prove ours holds
        return fh

    monkeypatch.setattr(archive, "open", unbounded_open)
    monkeypatch.setattr(parser, "MAX_MEMBER_BYTES", 1_000)
    with pytest.raises(FlowParseError, match="expands too far"):
        parser._MemberReader(archive).read(info)


# --- nesting depth -----------------------------------------------------------------------------


def _nested_flow(levels: int, *, padding: int = 0, diagram_levels: int = 0) -> bytes:
    """A flow whose PKCS#7 signer (alias deep_key) sits in `levels` subprocesses, one inside the
    other, spliced in as strings (the factory's own nesting recurses). Its deepest element, a
    property key, is at level levels + 6: definitions, process, the subprocesses, the signer,
    extensionElements, ifl:property, key. `padding` characters of property text make the
    document bigger without making it deeper; `diagram_levels` nests plain elements that deep
    in the diagram, which the where-used walk never reads."""
    props = {"privateKeyAlias": "deep_key"}
    if padding:
        props["wrapContent"] = "x" * padding
    xml = iflw(step("CallActivity_Deep", "Sign deep", "PKCS7Signer", props))
    start = xml.index(b"<bpmn2:callActivity")
    end = xml.index(b"</bpmn2:callActivity>") + len(b"</bpmn2:callActivity>")
    opens = b"".join(b'<bpmn2:subProcess id="SubProcess_%d">' % n for n in range(levels))
    xml = xml[:start] + opens + xml[start:end] + b"</bpmn2:subProcess>" * levels + xml[end:]
    if diagram_levels:
        plane = xml.index(b"</bpmndi:BPMNPlane>")
        deep = b"<dc:Deep>" * diagram_levels + b"</dc:Deep>" * diagram_levels
        xml = xml[:plane] + deep + xml[plane:]
    return xml


def _deep_signer(usages: list[KeyUsage]) -> bool:
    return [(u.component_id, u.component_type, u.usage, u.alias) for u in usages] == [
        ("CallActivity_Deep", "PKCS#7 signer", Usage.SIGNING, "deep_key")
    ]


TOO_DEEP = "integration flow 'f': elements nested deeper than 200 levels (the limit)"


@pytest.fixture(params=["checked-after-parsing", "checked-while-parsing"])
def depth_check(request, monkeypatch):
    """Both ways the depth is checked: documents up to parser._STREAM_XML_BYTES are parsed in
    one call and checked level by level after; larger ones are counted on expat's events."""
    after = request.param == "checked-after-parsing"
    monkeypatch.setattr(parser, "_STREAM_XML_BYTES", parser.MAX_MEMBER_BYTES if after else 0)
    return request.param


def test_fifty_thousand_nested_subprocesses_are_refused_with_the_limit(depth_check):
    data = flow_zip("b", _nested_flow(50_000), flow_name="f")
    # A RecursionError (or any other exception) would escape pytest.raises and fail the test.
    with pytest.raises(FlowParseError) as err:
        parse_flow_zip(data)
    assert str(err.value) == TOO_DEEP
    assert parser.MAX_XML_DEPTH == 200


def test_the_depth_limit_is_exact(depth_check):
    assert parser.MAX_XML_DEPTH == 200
    at_limit = flow_zip("b", _nested_flow(200 - 6), flow_name="f")
    assert _deep_signer(parse_flow_zip(at_limit).usages)
    over = flow_zip("b", _nested_flow(200 - 5), flow_name="f")
    with pytest.raises(FlowParseError, match="deeper than 200 levels"):
        parse_flow_zip(over)


def test_the_depth_limit_holds_outside_the_process_too(depth_check):
    data = flow_zip("b", _nested_flow(1, diagram_levels=5_000), flow_name="f")
    with pytest.raises(FlowParseError) as err:
        parse_flow_zip(data)
    assert str(err.value) == TOO_DEEP


def test_a_signer_twenty_subprocesses_deep_is_found(depth_check):
    inner = step("CallActivity_Deep", "Sign deep", "PKCS7Signer", {"privateKeyAlias": "deep_key"})
    for n in range(20):  # the factory's own subprocess markup, nested 20 levels
        inner = step(
            f"SubProcess_{n}",
            f"Handler {n}",
            "ErrorEventSubProcessTemplate",
            tag="subProcess",
            inner=[inner],
        )
    xml = iflw(
        step("CallActivity_1", "Sign first", "PKCS7Signer", {"privateKeyAlias": "k1"}), inner
    )
    usages = parse_flow_zip(flow_zip("b", xml, flow_name="f")).usages
    assert [(u.component_id, u.alias) for u in usages] == [
        ("CallActivity_1", "k1"),
        ("CallActivity_Deep", "deep_key"),
    ]
    assert _deep_signer(usages[1:])
    # The same depth padded past the size at which the check moves into the parse.
    padded = _nested_flow(20, padding=2 * 256 * 1024)
    assert len(padded) > 256 * 1024
    assert _deep_signer(parse_flow_zip(flow_zip("b", padded, flow_name="f")).usages)


def test_nothing_recurses_on_the_nesting(depth_check, monkeypatch):
    # With the cap lifted far above the interpreter's recursion limit, the parse, the depth
    # check and the walk over the subprocesses all still work: none of them recurses.
    monkeypatch.setattr(parser, "MAX_XML_DEPTH", 100_000)
    assert _deep_signer(parse_iflw(_nested_flow(20_000), {}))


def test_a_large_deep_document_is_refused_before_the_rest_is_read(monkeypatch):
    xml = _nested_flow(50_000)
    assert len(xml) > 2_000_000 > 256 * 1024 == parser._STREAM_XML_BYTES
    sources = []
    real_iterparse = parser.DefusedET.iterparse

    def spying_iterparse(source, *args, **kwargs):
        sources.append(source)
        return real_iterparse(source, *args, **kwargs)

    def whole_document_parse(*args, **kwargs):
        raise AssertionError("a large document was parsed in one call")

    monkeypatch.setattr(parser.DefusedET, "iterparse", spying_iterparse)
    monkeypatch.setattr(parser.DefusedET, "fromstring", whole_document_parse)
    monkeypatch.setattr(parser.ET, "fromstring", whole_document_parse)
    with pytest.raises(FlowParseError, match="deeper than 200 levels"):
        parse_iflw(xml, flow_name="f")
    (source,) = sources
    assert source.tell() <= 64 * 1024  # expat read 16 KB at a time and stopped at level 201


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        (BILLION_LAUGHS, "DTD or entity declarations is refused"),
        (
            BILLION_LAUGHS.decode()
            .replace('"1.0"?>', '"1.0" encoding="UTF-16"?>')
            .encode("utf-16"),
            "DTD or entity declarations is refused",
        ),
        (EXTERNAL_ENTITY, "DTD or entity declarations is refused"),
        (b"", "malformed XML"),
        (b"<a><b></a>", "malformed XML"),
        (b"<root/>", "not a BPMN integration flow"),
    ],
)
def test_large_documents_keep_every_refusal(xml, message, monkeypatch):
    monkeypatch.setattr(parser, "_STREAM_XML_BYTES", 0)  # every document is checked while read
    with pytest.raises(FlowParseError, match=message) as err:
        parse_flow_zip(flow_zip("b", xml, flow_name="f"))
    assert str(err.value).startswith("integration flow 'f': ")
    assert "\n" not in str(err.value)


def test_the_import_refuses_a_deep_flow_with_the_reason(tenant, caplog):
    """Through the where-used import (the one test here that uses the database): the file is
    refused with the limit as its reason, not as an unexpected error with a traceback."""
    from renewals.whereused.importing import import_flow_exports
    from renewals.whereused.models import IntegrationFlow

    deep = flow_zip("com.example.deep", _nested_flow(50_000), flow_name="f")
    good = flow_zip("com.example.good", _nested_flow(20), flow_name="f")
    results = import_flow_exports(tenant, [("deep.zip", deep), ("good.zip", good)])
    assert [(r.name, r.ok) for r in results] == [("deep.zip", False), ("good.zip", True)]
    assert results[0].message == TOO_DEEP
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
    assert list(IntegrationFlow.objects.values_list("bundle_id", flat=True)) == ["com.example.good"]


# --- parameters.prop ---------------------------------------------------------------------------


def test_properties_parsing_follows_java_rules():
    text = (
        b"# comment\n"
        b"! another comment \\\n"
        b"plain=value\n"
        b"colon:value2\n"
        b"space value3\n"
        b"  spaced   =   trimmed leading, kept trailing  \n"
        b"url=https\\://erp.example\\:443/x?a\\=b\n"
        b"key\\ with\\ spaces=v\n"
        b"unicode=caf\\u00e9 \\u20ac\n"
        b"emoji=\\ud83d\\ude00\n"
        b"multi=first \\\n"
        b"       second \\\n"
        b"   third\n"
        b"escaped_backslash=C:\\\\temp\\\\\n"
        b"tabs=a\\tb\\nc\n"
        b"empty=\n"
        b"lonely\n"
    )
    props = parse_parameters(text)
    assert props["plain"] == "value"
    assert props["colon"] == "value2"
    assert props["space"] == "value3"
    assert props["spaced"] == "trimmed leading, kept trailing  "
    assert props["url"] == "https://erp.example:443/x?a=b"
    assert props["key with spaces"] == "v"
    assert props["unicode"] == "café €"
    assert props["emoji"] == "\U0001f600"
    assert props["multi"] == "first second third"
    assert props["escaped_backslash"] == "C:\\temp\\"
    assert props["tabs"] == "a\tb\nc"
    assert props["empty"] == "" and props["lonely"] == ""
    assert "! another comment " not in props and "# comment" not in props


def test_properties_bom_crlf_latin1_and_bad_escape():
    assert parse_parameters(b"\xef\xbb\xbfa=1\r\nb=2\rc=3") == {"a": "1", "b": "2", "c": "3"}
    assert parse_parameters(b"name=M\xfcller") == {"name": "Müller"}  # ISO-8859-1
    with pytest.raises(FlowParseError, match="uxxxx"):
        parse_parameters(b"bad=\\u12")


# --- more channel rules ------------------------------------------------------------------------


def test_mail_smime_key_tables_follow_the_encryption_type():
    # Mail keeps S/MIME keys in table-valued properties (rows of cells), not in *Alias keys.
    props = {
        "auth": "loginPlain",
        "proxyAlias": "",
        "signature.smime.table": "<row><cell id='PrivateKeyAlias'>own_smime</cell>"
        "<cell id='SignatureAlgorithm'>SHA256/RSA</cell></row>",
        "signature.smime.clearText": "1",
        "encrypt.smime.keys": "<row><cell>partner_a</cell></row><row><cell>partner_b</cell></row>",
        "encrypt.smime.aes.keysize": "128",
        "encrypt.type": "none",
    }
    mail = channel("MF", "Mail", "Mail", props=props, address="smtp.example:587")
    u = only(usages_of(mail))
    assert (u.component_type, u.usage, u.alias, u.property_key, u.address) == (
        "Mail",
        Usage.SIGNING,
        "own_smime",
        "signature.smime.table",
        "smtp.example:587",
    )
    encrypting = channel("MF", "Mail", "Mail", props={**props, "encrypt.type": "smime"})
    assert {(u.usage, u.alias) for u in usages_of(encrypting)} == {
        (Usage.SIGNING, "own_smime"),
        (Usage.ENCRYPTION, "partner_a"),
        (Usage.ENCRYPTION, "partner_b"),
    }


def test_signer_table_with_several_aliases():
    table = (
        "<row><cell id='PrivateKeyAlias'>key_one</cell><cell id='Algorithm'>SHA256</cell></row>"
        "<row><cell id='PrivateKeyAlias'>key_two</cell><cell id='Algorithm'>SHA256</cell></row>"
    )
    found = usages_of(step("A", "Sign", "PKCS7Signer", {"signerParameters": table}))
    assert [(u.usage, u.alias) for u in found] == [
        (Usage.SIGNING, "key_one"),
        (Usage.SIGNING, "key_two"),
    ]
    # Tables without an alias column (content modifier headers) are not aliases.
    headers = "<row><cell id='Name'>sap_header</cell><cell id='Value'>x</cell></row>"
    assert usages_of(step("B", "Headers", "Enricher", {"headerTable": headers})) == []


def test_ws_security_and_client_certificate_on_one_channel():
    props = {
        **CERT_AUTH,
        "privateKeyAlias": "tls_client",
        "WSSecurity_outbound": "SignMessage",
        "PrivateKeyAliasSigning": "own_sign",
    }
    found = usages_of(channel("MF", "To partner", "SOAP", props=props))
    assert {(u.usage, u.alias, u.outbound) for u in found} == {
        (Usage.CLIENT_CERTIFICATE, "tls_client", True),
        (Usage.SIGNING, "own_sign", False),
    }


def test_the_usual_client_certificate_key_wins_over_other_aliases():
    props = {**CERT_AUTH, "proxyAlias": "not_this", "privateKeyAlias": "this_one"}
    u = only(usages_of(channel("MF", "To ERP", "HTTP", props=props)))
    assert (u.alias, u.property_key) == ("this_one", "privateKeyAlias")


def test_properties_in_other_order_or_namespaced_are_still_read():
    xml = iflw(step("A", "Sign", "PKCS7Signer", {"privateKeyAlias": "k"}))
    reordered = xml.replace(
        b"<key>privateKeyAlias</key>\n                    <value>k</value>",
        b"<value>k</value><key>privateKeyAlias</key>",
    )
    assert [u.alias for u in parse_iflw(reordered)] == ["k"]
    namespaced = xml.replace(b"<key>privateKeyAlias</key>", b"<ifl:key>privateKeyAlias</ifl:key>")
    assert [u.alias for u in parse_iflw(namespaced)] == ["k"]
