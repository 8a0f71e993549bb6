"""/api/v1 (the Cloud Integration paths, `('<Hexalias>')` keys included) and /oauth/token."""

from django.urls import re_path

from keystore_site.api import token, views

# A key as "('<hex>')" or, as OData clients also write it, "(Hexalias='<hex>')".
HEX = r"\((?:Hexalias=)?'(?P<hexvalue>[^']*)'\)"
NAME = r"\((?:Name=|KeystoreName=)?'(?P<name>[^']*)'\)"

urlpatterns = [
    re_path(r"^api/v1/?$", views.service_document, name="api_root"),
    re_path(r"^api/v1/\$metadata$", views.metadata_document, name="api_metadata"),
    re_path(r"^api/v1/KeystoreEntries$", views.keystore_entries, name="api_entries"),
    re_path(rf"^api/v1/KeystoreEntries{HEX}$", views.keystore_entry, name="api_entry"),
    re_path(
        rf"^api/v1/KeystoreEntries{HEX}/ChainCertificates$",
        views.chain_certificates,
        name="api_chain_certificates",
    ),
    re_path(
        rf"^api/v1/KeystoreEntries{HEX}/Certificate/\$value$",
        views.certificate_value,
        name="api_certificate",
    ),
    re_path(
        rf"^api/v1/KeystoreEntries{HEX}/ChainResource/\$value$",
        views.chain_value,
        name="api_chain",
    ),
    re_path(
        rf"^api/v1/KeystoreEntries{HEX}/SigningRequest/\$value$",
        views.signing_request_value,
        name="api_signing_request",
    ),
    re_path(
        rf"^api/v1/KeystoreEntries{HEX}/Sshkey/\$value$", views.ssh_key_value, name="api_sshkey"
    ),
    re_path(
        rf"^api/v1/KeystoreEntries{HEX}/WhereUsed$", views.where_used_report, name="api_where_used"
    ),
    re_path(r"^api/v1/HistoryKeystoreEntries$", views.history_entries, name="api_history"),
    re_path(
        rf"^api/v1/HistoryKeystoreEntries{HEX}$", views.history_entry, name="api_history_entry"
    ),
    re_path(rf"^api/v1/Keystores{NAME}$", views.keystore, name="api_keystore"),
    re_path(rf"^api/v1/Keystores{NAME}/Size/\$value$", views.keystore_size, name="api_size"),
    re_path(
        rf"^api/v1/CertificateResources{HEX}/\$value$",
        views.certificate_resource,
        name="api_certificate_resource",
    ),
    re_path(
        rf"^api/v1/CertificateChainResources{HEX}/\$value$",
        views.certificate_chain_resource,
        name="api_chain_resource",
    ),
    re_path(r"^api/v1/KeyPairResources$", views.key_pair_resources, name="api_key_pairs"),
    re_path(
        r"^api/v1/KeyPairGenerationRequests$",
        views.key_pair_generation,
        name="api_key_pair_generation",
    ),
    re_path(r"^api/v1/SSHKeyGenerationRequests$", views.ssh_key_generation, name="api_ssh_keys"),
    re_path(r"^api/v1/KeystoreResources$", views.keystore_resources, name="api_keystores"),
    re_path(
        rf"^api/v1/KeystoreResources{NAME}$", views.keystore_resource, name="api_keystore_resource"
    ),
    re_path(r"^oauth/token$", token.token, name="oauth_token"),
]
