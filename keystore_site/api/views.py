"""The OData views at /api/v1: each resolves the API client (keystore_site.api.auth), checks CSRF
on writes, and calls the one service function of its operation with the client's user as actor,
so that permissions, locks, audit and mails are those of the web pages. Errors are OData errors
with the status codes of Cloud Integration's API description.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt

from keystore import merging, permissions, services
from keystore.models import KeystoreBackup, KeystoreBackupEntry, KeystoreEntry, Tenant
from keystore_site.api import auth, entities, metadata
from keystore_site.api.models import ApiClient
from keystore_site.api.odata import (
    ODataError,
    alias_of,
    collection,
    date,
    entity,
    error_response,
    flag,
    hexalias,
    query_options,
)
from renewals import activation
from renewals.models import PendingSapKey, SapKeyBackup

View = Callable[..., HttpResponse]

#: Request bodies are refused above these sizes before they are read (the description's limits).
MAX_CERTIFICATE_BYTES = 10 * 1024
MAX_KEY_PAIR_BYTES = 30_072
MAX_CHAIN_BYTES = 30_072
MAX_KEYSTORE_BYTES = 1024 * 1024 * 4 // 3 + 4096  # 1 MiB keystore, base64 in JSON

_WRITES = ("POST", "PUT", "DELETE")


def _refusal_status(error: Exception) -> int:
    if isinstance(error, merging.NoServerBackup):
        return 404
    text = str(error)
    if text.startswith("You are not allowed") or "reserved for SAP" in text:
        return 403
    if "owned by SAP" in text:
        return 403
    return 400


def api_view(*methods: str) -> Callable[[View], View]:
    """Authentication, CSRF and OData errors around a view(request, client, **path)."""

    def decorate(view: View) -> View:
        @csrf_exempt
        @functools.wraps(view)
        def handler(request: HttpRequest, **kwargs: Any) -> HttpResponse:
            allowed = set(methods) | ({"HEAD"} if "GET" in methods else set())
            response: HttpResponse
            if request.method not in allowed:
                response = error_response(405, f"{request.method} is not offered here.")
                response["Allow"] = ", ".join(sorted(allowed))
                return response
            client = auth.api_client_of(request)
            if client is None:
                response = error_response(
                    401, "Unauthorized. Authorization information is missing or invalid."
                )
                response["WWW-Authenticate"] = 'Basic realm="Cloud Integration API"'
                return response
            if request.method in _WRITES and not auth.csrf_token_is_valid(request, client):
                response = error_response(403, "CSRF token validation failed.")
                response[auth.CSRF_HEADER] = "Required"
                return response
            try:
                response = view(request, client, **kwargs)
            except ODataError as error:
                response = error.response()
            except services.KeystoreError as error:
                response = error_response(_refusal_status(error), str(error))
            if auth.wants_csrf_token(request):
                response[auth.CSRF_HEADER] = auth.csrf_token_for(client)
            return response

        return handler

    return decorate


def _require(client: ApiClient, perm: str) -> None:
    if not permissions.actor_may(client.user, perm, client.tenant):
        raise ODataError(
            403,
            f"The API client's role ({client.role}) does not hold {perm} in tenant "
            f"{client.tenant.slug}.",
        )


def _keystore_name(request: HttpRequest, allowed: tuple[str, ...]) -> str:
    name = request.GET.get("keystoreName") or entities.SYSTEM
    if name not in allowed:
        raise ODataError(400, f"Keystore name '{name}' is invalid.")
    return name


def _not_found(alias: str) -> ODataError:
    return ODataError(404, f"Alias '{alias}' not found in the keystore")


def _entry(tenant: Tenant, alias: str) -> KeystoreEntry:
    entry = KeystoreEntry.objects.for_tenant(tenant).with_alias(alias).first()
    if entry is None:
        raise _not_found(alias)
    return entry


def _material(client: ApiClient, keystore: str, alias: str) -> Any:
    """The entry, waiting key, history backup or server-side backup entry behind an alias of
    one of the keystores."""
    tenant = client.tenant
    if keystore == entities.SYSTEM:
        return _entry(tenant, alias)
    if keystore == entities.BACKUP:
        backed_up = (
            KeystoreBackupEntry.objects.for_tenant(tenant).filter(alias__iexact=alias).first()
        )
        if backed_up is None:
            raise _not_found(alias)
        return backed_up
    if keystore == entities.KEY_RENEWAL:
        pending = PendingSapKey.objects.for_tenant(tenant).filter(alias__iexact=alias).first()
        if pending is None:
            raise _not_found(alias)
        return pending
    return _backup(client, alias)


def _backup(client: ApiClient, history_alias: str) -> SapKeyBackup:
    found = next(
        (row for row in entities.history_entries(client.tenant) if row["Alias"] == history_alias),
        None,
    )
    if found is None:
        if not history_alias.startswith("["):
            raise ODataError(
                400,
                f"The alias \"{history_alias}\" is invalid: Alias '{history_alias}' does not "
                "start with '['",
            )
        raise _not_found(history_alias)
    return SapKeyBackup.objects.get(pk=found["_pk"])


def _public(rows: list[dict]) -> list[dict]:
    return [{key: value for key, value in row.items() if not key.startswith("_")} for row in rows]


def _listing(client: ApiClient, keystore: str = entities.SYSTEM) -> list[dict]:
    if keystore == entities.KEY_RENEWAL:
        return entities.renewal_entries(client.tenant)
    if keystore == entities.BACKUP:
        return entities.backup_entries(client.tenant)
    return entities.system_entries(client.tenant)


def _after_write(request: HttpRequest, client: ApiClient, keystore: str = entities.SYSTEM):
    """204, or 200 with the keystore's entries when returnKeystoreEntries=true."""
    if flag(request, "returnKeystoreEntries"):
        return collection(_listing(client, keystore))
    return HttpResponse(status=204)


def _binary(content: bytes, content_type: str, filename: str) -> HttpResponse:
    response = HttpResponse(content, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def _body(request: HttpRequest, limit: int) -> bytes:
    length = request.META.get("CONTENT_LENGTH") or "0"
    if not length.isdigit() or int(length) > limit:
        raise ODataError(413, f"Payload too large: the limit is {limit} bytes.")
    body = request.body
    if len(body) > limit:
        raise ODataError(413, f"Payload too large: the limit is {limit} bytes.")
    if not body:
        raise ODataError(400, "The request body is empty.")
    return body


def _json_body(request: HttpRequest, limit: int) -> dict[str, Any]:
    try:
        data = json.loads(_body(request, limit))
    except (ValueError, UnicodeDecodeError):
        raise ODataError(400, "The request body is not JSON.")
    if not isinstance(data, dict):
        raise ODataError(400, "The request body must be a JSON object.")
    return data


def _base64(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise ODataError(400, f"{what} is missing (base64).")
    try:
        return base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ODataError(415, f"{what} is not base64.")


def _alias_in_body(data: dict[str, Any]) -> str:
    alias = data.get("Alias")
    if isinstance(alias, str) and alias:
        return alias
    hex_value = data.get("Hexalias")
    if isinstance(hex_value, str) and hex_value:
        return alias_of(hex_value)
    raise ODataError(400, "The body names no Alias.")


# -- the service root, $metadata --------------------------------------------------------------


@csrf_exempt
def site_root(request: HttpRequest) -> HttpResponse:
    """ "/": the admin for people; for an API client that asks with `X-CSRF-Token: Fetch`, a
    token (Cloud Integration clients fetch it from the host's root)."""
    if auth.wants_csrf_token(request):
        client = auth.api_client_of(request)
        if client is not None:
            response = HttpResponse(status=200)
            response[auth.CSRF_HEADER] = auth.csrf_token_for(client)
            return response
    return HttpResponseRedirect(reverse("admin:index"))


@api_view("GET")
def service_document(request: HttpRequest, client: ApiClient) -> HttpResponse:
    _require(client, permissions.READ)
    return JsonResponse(
        {
            "d": {
                "EntitySets": [
                    "KeystoreEntries",
                    "HistoryKeystoreEntries",
                    "Keystores",
                    "KeystoreResources",
                ]
            }
        }
    )


@api_view("GET")
def metadata_document(request: HttpRequest, client: ApiClient) -> HttpResponse:
    return HttpResponse(metadata.document(), content_type="application/xml")


# -- reading ----------------------------------------------------------------------------------


#: The keystores whose entries are listed by GET /KeystoreEntries (history has its own set).
_ENTRY_KEYSTORES = (entities.SYSTEM, entities.BACKUP, entities.KEY_RENEWAL)


@api_view("GET")
def keystore_entries(request: HttpRequest, client: ApiClient) -> HttpResponse:
    _require(client, permissions.READ)
    keystore = _keystore_name(request, _ENTRY_KEYSTORES)
    options = query_options(request, entities.ENTRY_PROPERTIES)
    rows, count = options.apply(_listing(client, keystore))
    return collection(rows, count)


@api_view("GET", "PUT", "DELETE")
def keystore_entry(request: HttpRequest, client: ApiClient, hexvalue: str) -> HttpResponse:
    alias = alias_of(hexvalue)
    if request.method == "DELETE":
        return _delete_or_activate(request, client, alias)
    if request.method == "PUT":
        return _rename(request, client, alias)
    _require(client, permissions.READ)
    keystore = _keystore_name(request, _ENTRY_KEYSTORES)
    if keystore == entities.SYSTEM:
        rows = entities.system_entries(client.tenant, alias)
    elif keystore == entities.BACKUP:
        rows = entities.backup_entries(client.tenant, alias)
    else:
        rows = entities.renewal_entries(client.tenant, alias)
    if not rows:
        raise _not_found(alias)
    return entity(query_options(request, entities.ENTRY_PROPERTIES).pick(rows[0]))


_ALL_KEYSTORES = (*_ENTRY_KEYSTORES, entities.KEY_HISTORY)


@api_view("GET")
def chain_certificates(request: HttpRequest, client: ApiClient, hexvalue: str) -> HttpResponse:
    _require(client, permissions.READ)
    alias = alias_of(hexvalue)
    material = _material(client, _keystore_name(request, _ALL_KEYSTORES), alias)
    options = query_options(request, entities.CHAIN_PROPERTIES)
    rows, count = options.apply(entities.chain_certificates(alias, material.certificate_chain()))
    return collection(rows, count)


@api_view("GET")
def certificate_value(request: HttpRequest, client: ApiClient, hexvalue: str) -> HttpResponse:
    _require(client, permissions.READ)
    alias = alias_of(hexvalue)
    material = _material(client, _keystore_name(request, _ALL_KEYSTORES), alias)
    key_pair = getattr(material, "entry_type", "key_pair") == "key_pair"
    kind = "root" if flag(request, "rootCA") and key_pair else "cer"
    download = services.public_download(material, kind)
    return _binary(download.content, download.content_type, download.filename)


@api_view("GET")
def chain_value(request: HttpRequest, client: ApiClient, hexvalue: str) -> HttpResponse:
    _require(client, permissions.READ)
    alias = alias_of(hexvalue)
    material = _material(client, _keystore_name(request, _ALL_KEYSTORES), alias)
    download = services.public_download(material, "p7b")
    return _binary(download.content, "application/pkcs7-mime", download.filename)


@api_view("GET")
def signing_request_value(request: HttpRequest, client: ApiClient, hexvalue: str) -> HttpResponse:
    entry = _entry(client.tenant, alias_of(hexvalue))
    download = services.signing_request(entry, actor=client.user)
    return _binary(download.content, download.content_type, download.filename)


@api_view("GET")
def ssh_key_value(request: HttpRequest, client: ApiClient, hexvalue: str) -> HttpResponse:
    _require(client, permissions.READ)
    entry = _entry(client.tenant, alias_of(hexvalue))
    download = services.public_download(entry, "ssh")
    return _binary(download.content, download.content_type, download.filename)


@api_view("GET")
def history_entries(request: HttpRequest, client: ApiClient) -> HttpResponse:
    _require(client, permissions.READ)
    options = query_options(request, entities.HISTORY_PROPERTIES)
    rows, count = options.apply(_public(entities.history_entries(client.tenant)))
    return collection(rows, count)


@api_view("GET", "PUT")
def history_entry(request: HttpRequest, client: ApiClient, hexvalue: str) -> HttpResponse:
    alias = alias_of(hexvalue)
    if request.method == "PUT":
        return _revert(request, client, alias)
    _require(client, permissions.READ)
    rows = [row for row in entities.history_entries(client.tenant) if row["Alias"] == alias]
    if not rows:
        raise _not_found(alias)
    return entity(query_options(request, entities.HISTORY_PROPERTIES).pick(_public(rows)[0]))


def _keystore_properties(client: ApiClient, name: str, rows: list[dict]) -> dict[str, Any]:
    if name == entities.BACKUP:
        # The backup keystore changes only as a whole: when the backup was made, by whom.
        backup = KeystoreBackup.objects.filter(tenant=client.tenant).first()
        return {
            "Name": name,
            "LastModifiedBy": backup.made_by_label if backup else "",
            "LastModifiedTime": date(backup.made_at) if backup else None,
            "Size": len(rows),
        }
    times = [row["LastModifiedTime"] for row in rows if row["LastModifiedTime"]]
    latest = max(times, key=lambda value: int(value[6:-2]), default=None)
    return {"Name": name, "LastModifiedBy": "", "LastModifiedTime": latest, "Size": len(rows)}


@api_view("GET")
def keystore(request: HttpRequest, client: ApiClient, name: str) -> HttpResponse:
    _require(client, permissions.READ)
    if name not in _ENTRY_KEYSTORES:
        raise ODataError(400, f"Keystore name '{name}' is invalid.")
    rows = _listing(client, name)
    properties = _keystore_properties(client, name, rows)
    expand = request.GET.get("$expand", "")
    if expand not in ("", "Entries"):
        raise ODataError(400, "$expand takes Entries only.")
    if expand:
        properties["Entries"] = {"results": rows}
    return entity(properties)


@api_view("GET")
def keystore_size(request: HttpRequest, client: ApiClient, name: str) -> HttpResponse:
    _require(client, permissions.READ)
    if name not in (entities.SYSTEM, entities.KEY_RENEWAL):
        raise ODataError(400, f"Keystore name '{name}' is invalid.")
    return HttpResponse(str(len(_listing(client, name))), content_type="text/plain")


@api_view("GET")
def where_used_report(request: HttpRequest, client: ApiClient, hexvalue: str) -> HttpResponse:
    """An extension, not in SAP's API: the where-used report of the alias, as `where_used
    --json` prints it (keystoreName=KeyRenewal for the key waiting for it)."""
    from renewals.whereused.report import report_json, where_used

    _require(client, permissions.READ)
    alias = alias_of(hexvalue)
    keystore = _keystore_name(request, (entities.SYSTEM, entities.KEY_RENEWAL))
    material = _material(client, keystore, alias)
    key_pair = getattr(material, "entry_type", "key_pair") == "key_pair"
    report = where_used(client.tenant, material.alias, key_pair=key_pair)
    return JsonResponse({"d": report_json(report, material, keystore == entities.KEY_RENEWAL)})


@api_view("GET", "PUT")
def keystore_resource(request: HttpRequest, client: ApiClient, name: str) -> HttpResponse:
    """GET ('system' or 'backup_admin_system'): the keystore's public content (every
    certificate, no private key) as a base64 JKS with an empty store password. PUT ('system'):
    retrieveBackup=backup_admin_system restores the server-side backup; deleteEntries=true with
    {"Aliases": "a;b"} deletes entries."""
    if request.method == "PUT":
        if name != entities.SYSTEM:
            raise ODataError(400, f"Keystore name '{name}' is invalid.")
        if "retrieveBackup" in request.GET:
            return _restore(request, client)
        return _delete_entries(request, client)
    if name not in (entities.SYSTEM, entities.BACKUP):
        raise ODataError(400, f"Keystore name '{name}' is invalid.")
    download = services.public_keystore(
        client.tenant, actor=client.user, backup=name == entities.BACKUP
    )
    return entity(
        {
            "Name": name,
            "Resource": base64.b64encode(download.content).decode("ascii"),
            "Password": None,
            "Aliases": None,
        }
    )


def _split_aliases(text: str) -> list[str]:
    """ "a;b" with ";" and "\\" escaped by "\\", as the description writes them."""
    aliases, current, escaped = [], [], False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ";":
            aliases.append("".join(current))
            current = []
        else:
            current.append(char)
    aliases.append("".join(current))
    return [alias for alias in aliases if alias]


def _restore(request: HttpRequest, client: ApiClient) -> HttpResponse:
    """retrieveBackup=backup_admin_system: the server-side backup back into the keystore
    (importOption overwrite, the default, or replace), body {"Resource": null}."""
    _require_deploy(client)
    if request.GET.get("retrieveBackup") != entities.BACKUP:
        raise ODataError(400, f"retrieveBackup takes '{entities.BACKUP}'.")
    if request.GET.get("deleteEntries", "").lower() == "true":
        raise ODataError(400, "Either retrieveBackup or deleteEntries=true, not both.")
    option = request.GET.get("importOption", "overwrite")
    if option not in ("overwrite", "replace"):
        raise ODataError(400, "importOption for retrieving the backup: overwrite or replace.")
    data = _json_body(request, 64 * 1024)
    if data.get("Resource") is not None:
        raise ODataError(400, 'Retrieving the backup takes the body {"Resource": null}.')
    return _merge_answer(
        request,
        lambda: merging.restore_server_backup(
            client.tenant, actor=client.user, replace=option == "replace"
        ),
        lambda: entities.system_entries(client.tenant),
    )


def _delete_entries(request: HttpRequest, client: ApiClient) -> HttpResponse:
    _require_deploy(client)
    if request.GET.get("deleteEntries", "").lower() != "true":
        raise ODataError(400, "PUT /KeystoreResources('system') takes deleteEntries=true.")
    data = _json_body(request, 64 * 1024)
    aliases = data.get("Aliases")
    if not isinstance(aliases, str) or not _split_aliases(aliases):
        raise ODataError(400, 'The body names no Aliases ("alias1;alias2").')
    found = [
        entry
        for alias in _split_aliases(aliases)
        if (entry := KeystoreEntry.objects.for_tenant(client.tenant).with_alias(alias).first())
    ]
    # All or nothing: one refusal (an SAP-owned alias, a missing permission) deletes none.
    with transaction.atomic():
        for entry in found:
            services.delete_entry(entry, actor=client.user)
    if flag(request, "returnKeystoreEntries", default=True):
        return collection(_listing(client))
    return HttpResponse(status=204)


# -- writing ----------------------------------------------------------------------------------


def _require_deploy(client: ApiClient) -> None:
    """Every write: refused before its body is read or its alias looked up, so that a ReadOnly
    or IntegrationDeveloper client causes no work and learns nothing by writing."""
    _require(client, permissions.DEPLOY)


def _delete_or_activate(request: HttpRequest, client: ApiClient, alias: str) -> HttpResponse:
    _require_deploy(client)
    keystore = request.GET.get("keystoreName", "")
    if keystore == entities.KEY_RENEWAL:
        if not flag(request, "activate"):
            raise ODataError(400, "A key of KeyRenewal is activated with activate=true.")
        try:
            activation.activate_pending_key(client.tenant, alias, actor=client.user)
        except activation.NothingToActivate:
            raise _not_found(alias)
        return _after_write(request, client)
    if keystore not in ("", entities.SYSTEM):
        raise ODataError(400, f"Keystore name '{keystore}' is invalid.")
    services.delete_entry(_entry(client.tenant, alias), actor=client.user)
    return _after_write(request, client)


def _rename(request: HttpRequest, client: ApiClient, alias: str) -> HttpResponse:
    _require_deploy(client)
    new_alias = request.GET.get("renameAlias", "")
    if not new_alias:
        raise ODataError(400, "renameAlias names the new alias.")
    renamed = services.rename_entry(_entry(client.tenant, alias), new_alias, actor=client.user)
    if flag(request, "returnHexAlias"):
        return entity({"Hexalias": f"[{hexalias(renamed.alias)}]"})
    return _after_write(request, client)


def _revert(request: HttpRequest, client: ApiClient, history_alias: str) -> HttpResponse:
    _require_deploy(client)
    if not flag(request, "copy", default=True):
        raise ODataError(400, "copy must be true: a backup is copied to KeyRenewal.")
    backup = _backup(client, history_alias)
    destination = request.GET.get("destinationAlias", "")
    if destination and destination.lower() != backup.alias.lower():
        raise ODataError(
            400,
            f"A backup goes back under its own alias {backup.alias!r}; destinationAlias "
            f"{destination!r} is not offered.",
        )
    activation.add_back_to_pending(backup, actor=client.user)
    return HttpResponse(status=204)


@api_view("PUT")
def certificate_resource(request: HttpRequest, client: ApiClient, hexvalue: str) -> HttpResponse:
    _require_deploy(client)
    alias = alias_of(hexvalue)
    data = _body(request, MAX_CERTIFICATE_BYTES)
    # DER starts with 0x30 (a SEQUENCE), which base64 writes as "M"; PEM starts with dashes.
    if data.lstrip()[:1] == b"M":
        try:
            data = base64.b64decode(b"".join(data.split()), validate=True)
        except (binascii.Error, ValueError):
            raise ODataError(415, "The body is neither DER, PEM nor base64 of DER.")
    services.import_certificate(
        client.tenant, alias, data, actor=client.user, overwrite=flag(request, "update")
    )
    return _after_write(request, client)


@api_view("POST")
def key_pair_resources(request: HttpRequest, client: ApiClient) -> HttpResponse:
    _require_deploy(client)
    data = _json_body(request, MAX_KEY_PAIR_BYTES * 2)
    alias = _alias_in_body(data)
    p12 = _base64(data.get("Resource"), "Resource (the PKCS#12 file)")
    if len(p12) > MAX_KEY_PAIR_BYTES:
        raise ODataError(413, f"Payload too large: the limit is {MAX_KEY_PAIR_BYTES} bytes.")
    password = data.get("Password")
    if not isinstance(password, str):
        raise ODataError(400, "Password is missing.")
    services.import_key_pair(
        client.tenant, alias, p12, password, actor=client.user, overwrite=flag(request, "update")
    )
    return _after_write(request, client)


_KEY_TYPES = {("RSA", 2048): "rsa-2048", ("RSA", 3072): "rsa-3072", ("RSA", 4096): "rsa-4096"}
_KEY_TYPES.update({("EC", 256): "ec-256", ("EC", 384): "ec-384"})
_SUBJECT_PARTS = (
    (NameOID.COMMON_NAME, "CommonName"),
    (NameOID.ORGANIZATIONAL_UNIT_NAME, "OrganizationUnit"),
    (NameOID.ORGANIZATION_NAME, "Organization"),
    (NameOID.LOCALITY_NAME, "Locality"),
    (NameOID.STATE_OR_PROVINCE_NAME, "State"),
    (NameOID.COUNTRY_NAME, "Country"),
    (NameOID.EMAIL_ADDRESS, "Email"),
)


def _subject(data: dict[str, Any]) -> str:
    """The RFC 4514 subject of a generation request's CommonName, Organization, ... fields."""
    parts = []
    for oid, field in _SUBJECT_PARTS:
        value = data.get(field)
        if value is None or value == "":
            continue
        if not isinstance(value, str) or not value.strip():
            raise ODataError(400, f"{field} must be text.")
        # cryptography escapes what RFC 4514 wants escaped (, + ; < > " \ and a leading #),
        # and writes the e-mail attribute by its OID, which parse_subject reads back.
        try:
            parts.append(x509.NameAttribute(oid, value.strip()).rfc4514_string())
        except ValueError as error:  # a Country that is not two letters
            raise ODataError(400, f"{field}: {error}")
    if not data.get("CommonName"):
        raise ODataError(400, "CommonName is missing.")
    return ",".join(parts)


def _odata_moment(value: Any, what: str) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, str) and value.startswith("/Date(") and value.endswith(")/"):
        digits = value[6:-2]
        if digits.lstrip("-").isdigit() and len(digits) <= 15:
            return datetime.fromtimestamp(int(digits) / 1000, tz=UTC)
    raise ODataError(400, f"{what} must be an OData date, /Date(<milliseconds>)/.")


@api_view("POST")
def key_pair_generation(request: HttpRequest, client: ApiClient) -> HttpResponse:
    _require_deploy(client)
    data = _json_body(request, 16 * 1024)
    alias = _alias_in_body(data)
    key_type = str(data.get("KeyType") or "RSA").upper()
    size = data.get("KeySize") or (2048 if key_type == "RSA" else 256)
    choice = _KEY_TYPES.get((key_type, size)) if isinstance(size, int) else None
    if choice is None:
        raise ODataError(400, "KeyType and KeySize: RSA 2048, 3072 or 4096, or EC 256 or 384.")
    subject = _subject(data)
    start = _odata_moment(data.get("ValidNotBefore"), "ValidNotBefore")
    end = _odata_moment(data.get("ValidNotAfter"), "ValidNotAfter")
    # The certificate is valid from now (the key pair is usable at once) to ValidNotAfter; an end
    # in the past or before the start is a mistake, never a one-day certificate.
    days = 365 if end is None else (end - datetime.now(tz=UTC)).days
    if days < 1 or (start is not None and end is not None and start >= end):
        raise ODataError(
            400, "ValidNotAfter must be at least a day from now and after ValidNotBefore."
        )
    services.create_key_pair(
        client.tenant,
        alias,
        subject,
        key_type=choice,
        valid_days=days,
        actor=client.user,
    )
    return _after_write(request, client)


@api_view("POST")
def ssh_key_generation(request: HttpRequest, client: ApiClient) -> HttpResponse:
    """An SSH key pair entry from an OpenSSH or PEM private key (SSHFile, base64), with a
    self-signed certificate for the subject fields; update=true replaces an existing alias."""
    _require_deploy(client)
    data = _json_body(request, 32 * 1024)
    alias = _alias_in_body(data)
    key_file = _base64(data.get("SSHFile"), "SSHFile (the private key file)")
    password = data.get("Password")
    if password is not None and not isinstance(password, str):
        raise ODataError(400, "Password must be text.")
    start = _odata_moment(data.get("ValidNotBefore"), "ValidNotBefore")
    end = _odata_moment(data.get("ValidNotAfter"), "ValidNotAfter")
    days = 365 if end is None else max(1, (end - (start or datetime.now(tz=UTC))).days)
    services.import_ssh_key(
        client.tenant,
        alias,
        key_file,
        password or None,
        _subject(data),
        valid_days=days,
        overwrite=flag(request, "update"),
        actor=client.user,
    )
    if flag(request, "returnKeystoreEntries"):
        return collection(_listing(client))
    return entity({"Alias": alias})


@api_view("PUT")
def certificate_chain_resource(
    request: HttpRequest, client: ApiClient, hexvalue: str
) -> HttpResponse:
    _require_deploy(client)
    entry = _entry(client.tenant, alias_of(hexvalue))
    if entry.entry_type != "key_pair":
        raise ODataError(400, f'Alias "{entry.alias}" does not represent a Key Pair')
    services.apply_signing_response(entry, _body(request, MAX_CHAIN_BYTES), actor=client.user)
    return _after_write(request, client)


def _not_imported(alias: str, reason: str) -> str:
    """The import status of a refused entry: SAP's words where a script may compare them, our
    reason (which says what to do) otherwise."""
    if "exists already" in reason:
        return "notImported: An entry with the same alias already exists"
    if "reserved for SAP" in reason:
        refused = "notImported: The alias is not allowed."
        if alias.lower().startswith("hcicertificate"):
            return f"{refused} The alias 'hcicertificate' is reserved for SAP."
        return f"{refused} Aliases starting with 'sap_' are reserved for SAP."
    return f"notImported: {reason}"


def _status(outcome: merging.ImportOutcome) -> str:
    """An entry's import status in the description's words: new, changed, unchanged (written
    over with the same certificate), removed, or notImported with the reason."""
    if outcome.result == "added":
        return "new"
    if outcome.result == "overwritten":
        same = outcome.fingerprint == outcome.previous_fingerprint
        return "unchanged" if same else "changed"
    if outcome.result == "removed":
        return "removed"
    return _not_imported(outcome.alias, outcome.reason)


def _summary_rows(rows: list[dict], summary: merging.ImportSummary) -> list[dict]:
    """The keystore's entries, each with its Status from the summary ("unchanged" when the
    operation did not touch it). An alias the keystore no longer holds (removed, or a refused
    reserved one) is listed on its own row; each Hexalias appears once, a refusal winning over
    a removal of the same alias."""
    ordered = sorted(summary.outcomes, key=lambda outcome: outcome.result != "removed")
    status = {outcome.alias.casefold(): _status(outcome) for outcome in ordered}
    aliases = {outcome.alias.casefold(): outcome.alias for outcome in ordered}
    for row in rows:
        row["Status"] = status.pop(row["Alias"].casefold(), "unchanged")
    return rows + [
        {"Hexalias": hexalias(aliases[folded]), "Alias": aliases[folded], "Status": value}
        for folded, value in status.items()
    ]


def _merge_answer(
    request: HttpRequest,
    run: Callable[[], merging.ImportSummary],
    rows: Callable[[], list[dict]],
) -> HttpResponse:
    """Run an import, backup or restore; answer 204, or with returnKeystoreEntries=true
    (the default) the keystore's entries with their import status."""
    listing = flag(request, "returnKeystoreEntries", default=True)
    with transaction.atomic():
        summary = run()
        if not listing and summary.rejected:
            # "At least one entry could not be imported and the complete import failed": the
            # error rolls back the entries that were written (and, for replace, removed).
            raise ODataError(400, "; ".join(f"{o.alias}: {o.reason}" for o in summary.rejected))
    if not listing:
        return HttpResponse(status=204)
    return collection(_summary_rows(rows(), summary))


@api_view("POST")
def keystore_resources(request: HttpRequest, client: ApiClient) -> HttpResponse:
    """Name 'system': import a keystore (importOption merge, overwrite or replace); Name
    'backup_admin_system': back up the tenant-owned entries on the server."""
    _require_deploy(client)
    data = _json_body(request, MAX_KEYSTORE_BYTES)
    name = data.get("Name")
    if name == entities.BACKUP:
        return _back_up(request, client, data)
    if name != entities.SYSTEM:
        raise ODataError(
            400,
            f"The value '{name}' is not supported for the property 'Name'. Possible name "
            "values are 'system' and 'backup_admin_system'.",
        )
    option = request.GET.get("importOption", "overwrite")
    if option not in ("merge", "overwrite", "replace"):
        raise ODataError(400, "importOption: merge, overwrite or replace.")
    keystore_file = _base64(data.get("Resource"), "Resource (the JKS or PKCS#12 keystore)")
    password = data.get("Password")
    if not isinstance(password, str) or not password:
        raise ODataError(400, "Password is missing.")
    return _merge_answer(
        request,
        lambda: merging.import_keystore(
            client.tenant,
            keystore_file,
            password,
            actor=client.user,
            overwrite=option == "overwrite",
            replace=option == "replace",
        ),
        lambda: entities.system_entries(client.tenant),
    )


def _back_up(request: HttpRequest, client: ApiClient, data: dict[str, Any]) -> HttpResponse:
    # The description: importOption "must be deselected for backup"; the body is the name only.
    if "importOption" in request.GET:
        raise ODataError(400, "importOption is for imports: a backup takes none.")
    if data.get("Resource") not in (None, "") or data.get("Password") not in (None, ""):
        raise ODataError(
            400,
            "A backup takes no Resource or Password: it copies the tenant's keystore. Send "
            '{"Name": "backup_admin_system"}.',
        )
    return _merge_answer(
        request,
        lambda: merging.make_server_backup(client.tenant, actor=client.user),
        lambda: entities.backup_entries(client.tenant),
    )
