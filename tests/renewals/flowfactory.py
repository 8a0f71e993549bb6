"""Build SAP Cloud Integration flow exports in memory for tests and benchmarks.

The writer itself is renewals/whereused/exportwriter.py (the demo uses it too): `channel`, `step`,
`iflw`, `flow_zip` and friends are re-exported here, so tests and the benchmark import one
module. Below them, one helper per shape seen in real exports (issue 14).

Typical use::

    xml = iflw(
        channel("MessageFlow_1", "To ERP", "SOAP", props={"authentication": "Client Certificate",
                                                           "privateKeyAlias": "sap_key"}),
        step("CallActivity_1", "Sign", "PKCS7Signer", {"privateKeyAlias": "signing_key"}),
        pkcs7_signer_without_alias("CallActivity_2"),
    )
    data = flow_zip("com.example.flow", xml, parameters={"alias": "x"})

Pure standard library (no Django), so a benchmark can generate thousands of flows quickly.
"""

from __future__ import annotations

from collections.abc import Mapping

from renewals.whereused.exportwriter import (
    ADAPTERS,
    BPMN2_NS,
    FLOW_DIR,
    IFL_NS,
    PARAMETERS_PATH,
    SCRIPT_DIR,
    Channel,
    Step,
    channel,
    flow_zip,
    iflw,
    manifest,
    parameters_prop,
    step,
    zip_bytes,
)

__all__ = [
    "ADAPTERS",
    "BPMN2_NS",
    "FLOW_DIR",
    "IFL_NS",
    "PARAMETERS_PATH",
    "SCRIPT_DIR",
    "Channel",
    "Step",
    "as2_receiver",
    "channel",
    "credential_script",
    "encryptor_step",
    "flow_zip",
    "groovy_script",
    "iflw",
    "keystore_script",
    "mail_receiver_with_unset_parameter",
    "manifest",
    "parameters_prop",
    "pkcs7_signer_without_alias",
    "script_step",
    "sftp_receiver",
    "soap_receiver_with_ws_security_off",
    "soap_sender_with_ws_security",
    "step",
    "verifier_step",
    "zip_bytes",
]


# ---------------------------------------------------------------------------------------------
# Shapes seen in real exports (issue 14): one helper each, so tests name the shape they check.


def mail_receiver_with_unset_parameter(
    id: str = "MessageFlow_1", parameter: str = "From email address", receiver: str = "MAIL"
) -> Channel:
    """A Mail receiver whose sender address is an externalized parameter that parameters.prop
    does not set (Cloud Integration allows that): a property no key rule reads."""
    return channel(
        id,
        "Send mail",
        "Mail",
        props={
            "from": f"{{{{{parameter}}}}}",
            "to": "orders@example.com",
            "authentication": "Basic",
            "credentialName": "smtp_user",
        },
        receiver=receiver,
        address=None,
    )


def groovy_script(*lines: str, keystore: bool = True) -> str:
    """A Groovy script step's source with `lines` in processData (and, with `keystore`, the
    KeystoreService in a variable named `keystore`, as scripts get it)."""
    head = [
        "import com.sap.gateway.ip.core.customdev.util.Message",
        "import com.sap.it.api.ITApiFactory",
    ]
    body = []
    if keystore:
        head.append("import com.sap.it.api.keystore.KeystoreService")
        body.append("    def keystore = ITApiFactory.getService(KeystoreService.class, null)")
    head.append("import com.sap.it.api.securestore.SecureStoreService")
    return "\n".join(
        [
            *head,
            "",
            "def Message processData(Message message) {",
            "    def secureStore = ITApiFactory.getService(SecureStoreService.class, null)",
            *body,
            *(f"    {line}" for line in lines),
            "    return message",
            "}",
            "",
        ]
    )


def credential_script(credential: str = "AWS_ACCESS_KEY") -> str:
    """A script reading a user credential and a secure parameter: names of credentials, never
    keys (and the keystore is in the script too)."""
    return groovy_script(
        f'def credential = secureStore.getUserCredential("{credential}")',
        f'def token = secureStore.getSecureParameter("{credential}_TOKEN")',
        'message.setHeader("X-Access-Key", credential.getUsername())',
    )


def keystore_script(alias: str, *, through: str = "literal", call: str = "getKeyPair") -> str:
    """A script passing `alias` to a keystore API: as a literal, through a local `variable`, or
    through a `constant` of the script (a static final field)."""
    if through == "literal":
        return groovy_script(f'def pair = keystore.{call}("{alias}")')
    if through == "variable":
        return groovy_script(
            f'def signingAlias = "{alias}"', f"def pair = keystore.{call}(signingAlias)"
        )
    assert through == "constant", through
    return groovy_script(f"def pair = keystore.{call}(Keys.SIGNING)") + (
        f'\nclass Keys {{\n    static final String SIGNING = "{alias}"\n}}\n'
    )


def script_step(id: str, name: str, script_file: str, *, language: str = "GroovyScript") -> Step:
    """A script step: its `script` property names the file under src/main/resources/script."""
    return step(
        id,
        name,
        language,
        {"script": script_file, "scriptFunction": "processData", "subActivityType": language},
        activity_type="Script",
        version="1.1.2",
    )


def soap_receiver_with_ws_security_off(
    id: str = "MessageFlow_1", alias: str = "sap_cloudintegrationcertificate", **props: str
) -> Channel:
    """A SOAP receiver with WS-Security switched off but its old settings left behind: signing
    type, signature algorithm and signing alias (as in a real export)."""
    return channel(
        id,
        "To partner (WS-Security off)",
        "SOAP",
        props={
            "WSSecurity_outbound": "None",
            "WSSecurityType_outbound": "SignMessage",
            "WSSecurity_SignatureAlgorithm": "SHA1",
            "PrivateKeyAliasSigning": alias,
            "authentication": "None",
            **props,
        },
        receiver="PARTNER",
        address="https://partner.example/ws",
    )


def soap_sender_with_ws_security(switch: str, alias: str = "partner_root") -> Channel:
    """A SOAP sender verifying the caller's WS-Security signature with `alias`; `switch` is the
    value of WSSecurity_inbound ("None" switches it off)."""
    return channel(
        "MessageFlow_2",
        "From partner",
        "SOAP",
        direction="Sender",
        props={
            "WSSecurity_inbound": switch,
            "WSSecurityType_inbound": "VerifyMessage",
            "PublicKeyAliasForVerification": alias,
            "senderAuthType": "RoleBased",
        },
        receiver="PARTNER",
        address="/partner/orders",
    )


def pkcs7_signer_without_alias(id: str = "CallActivity_1", name: str = "PKCS7 Signer") -> Step:
    """A PKCS#7 signer as real exports carry it: no alias property at all."""
    return step(
        id,
        name,
        "SignMessage",
        {
            "signatureAlgorithm": "SHA256/RSA",
            "signedDataIncluded": "true",
            "encodeSignedDataBase64": "true",
        },
        activity_type="Signer",
    )


def as2_receiver(
    id: str = "MessageFlow_1",
    *,
    url: str = "https://as2.partner.example/as2",
    props: Mapping[str, str] | None = None,
) -> Channel:
    """An AS2 receiver as real exports spell it: the URL under `receipientURL`."""
    return channel(
        id,
        "AS2 to partner",
        "AS2",
        props={"receipientURL": url, "authentication": "None", **(props or {})},
        receiver="AS2_PARTNER",
        address=None,
    )


def sftp_receiver(
    id: str = "MessageFlow_1", *, host: str = "sftp.partner.example", port: str = "2222"
) -> Channel:
    """An SFTP receiver naming its server as `host` plus `port`, with a named SSH key."""
    return channel(
        id,
        "Drop file",
        "SFTP",
        props={
            "host": host,
            "port": port,
            "authentication": "PublicKey",
            "privateKeyAlias": "ssh_key",
        },
        receiver="SFTP_PARTNER",
        address=None,
    )


def verifier_step(
    id: str, kind: str, alias: str, *, alias_key: str = "publicKeyAliasForVerification"
) -> Step:
    """A signature verifier step: `kind` "XML", "PKCS7" or "Simple"."""
    cname = {"XML": "XMLVerifier", "PKCS7": "PKCS7Verifier", "Simple": "SimpleVerifier"}[kind]
    return step(id, f"Verify ({kind})", cname, {alias_key: alias}, activity_type="Verifier")


def encryptor_step(id: str, kind: str, alias: str) -> Step:
    """An encryptor step (`kind` "XML" or "PKCS7") encrypting for a partner's certificate."""
    cname = {"XML": "XMLEncryptor", "PKCS7": "PKCS7Encryptor"}[kind]
    return step(
        id,
        f"Encrypt ({kind})",
        cname,
        {"receiverPublicKeyAlias": alias, "signAndEncrypt": "false"},
        activity_type="Encryptor",
    )
