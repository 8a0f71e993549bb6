"""/api/v1 (the Cloud Integration paths, `('<Hexalias>')` keys included) and /oauth/token."""

from django.urls import URLPattern, re_path

from keystore_site.api import token, views


def keyed(entity_set: str, rest: str, view, name: str, key: str = "hexvalue") -> list[URLPattern]:
    """A path keyed as "('<key>')" and, as OData clients also write it, "(<Property>='<key>')";
    two patterns, so that each stays reversible."""
    prop = "Hexalias" if key == "hexvalue" else "Name"
    short = rf"^api/v1/{entity_set}\('(?P<{key}>[^']*)'\){rest}$"
    named = rf"^api/v1/{entity_set}\({prop}='(?P<{key}>[^']*)'\){rest}$"
    return [re_path(short, view, name=name), re_path(named, view, name=f"{name}_by_property")]


urlpatterns = [
    re_path(r"^api/v1/?$", views.service_document, name="api_root"),
    re_path(r"^api/v1/\$metadata$", views.metadata_document, name="api_metadata"),
    re_path(r"^api/v1/KeystoreEntries$", views.keystore_entries, name="api_entries"),
    *keyed("KeystoreEntries", "", views.keystore_entry, "api_entry"),
    *keyed(
        "KeystoreEntries", "/ChainCertificates", views.chain_certificates, "api_chain_certificates"
    ),
    *keyed("KeystoreEntries", r"/Certificate/\$value", views.certificate_value, "api_certificate"),
    *keyed("KeystoreEntries", r"/ChainResource/\$value", views.chain_value, "api_chain"),
    *keyed(
        "KeystoreEntries",
        r"/SigningRequest/\$value",
        views.signing_request_value,
        "api_signing_request",
    ),
    *keyed("KeystoreEntries", r"/Sshkey/\$value", views.ssh_key_value, "api_sshkey"),
    *keyed("KeystoreEntries", "/WhereUsed", views.where_used_report, "api_where_used"),
    re_path(r"^api/v1/HistoryKeystoreEntries$", views.history_entries, name="api_history"),
    *keyed("HistoryKeystoreEntries", "", views.history_entry, "api_history_entry"),
    *keyed("Keystores", "", views.keystore, "api_keystore", key="name"),
    *keyed("Keystores", r"/Size/\$value", views.keystore_size, "api_size", key="name"),
    *keyed(
        "CertificateResources", r"/\$value", views.certificate_resource, "api_certificate_resource"
    ),
    *keyed(
        "CertificateChainResources",
        r"/\$value",
        views.certificate_chain_resource,
        "api_chain_resource",
    ),
    re_path(r"^api/v1/KeyPairResources$", views.key_pair_resources, name="api_key_pairs"),
    re_path(
        r"^api/v1/KeyPairGenerationRequests$",
        views.key_pair_generation,
        name="api_key_pair_generation",
    ),
    re_path(r"^api/v1/SSHKeyGenerationRequests$", views.ssh_key_generation, name="api_ssh_keys"),
    re_path(r"^api/v1/KeystoreResources$", views.keystore_resources, name="api_keystores"),
    *keyed("KeystoreResources", "", views.keystore_resource, "api_keystore_resource", key="name"),
    re_path(r"^oauth/token$", token.token, name="oauth_token"),
]
