"""What the backend administrators get: the where-used report as CSV, and the renewal pack.

The renewal pack is one ZIP per alias (the certificate, its root, the chain as PKCS#7 and PEM,
and INSTRUCTIONS.txt saying per backend what to import). Both hold public content only and are
built from a WhereUsedReport (renewals.whereused.report), never from a flow file.
"""

from __future__ import annotations

import csv
import io
import zipfile
from datetime import UTC, datetime

from django.utils import timezone

from keystore.models import KeyMaterial
from keystore.services import Download, KeystoreError, public_download
from renewals.models import PendingSapKey, SapKeyBackup
from renewals.whereused.errors import WhereUsedError
from renewals.whereused.parser import Usage
from renewals.whereused.report import BackendUse, WhereUsedReport

CSV_COLUMNS = (
    "section",
    "backend system",
    "backend address",
    "flow",
    "bundle id",
    "flow restart required",
    "component id",
    "component name",
    "component type",
    "direction",
    "usage",
    "alias",
    "property",
    "outbound connection",
    "reason",
    "script file",
)


def _csv_cell(value: object) -> str:
    text = str(value)
    # Flow files are untrusted: a cell starting like a formula must not run in a spreadsheet.
    if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + text
    return text


def where_used_csv(report: WhereUsedReport) -> bytes:
    """The report as CSV (UTF-8 with BOM for spreadsheets), one line per usage row."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for section, _title, backends in report.sections:
        for backend in backends:
            for flow in backend.flows:
                for component in flow.components:
                    writer.writerow(
                        [
                            _csv_cell(value)
                            for value in (
                                section,
                                backend.system,
                                backend.address,
                                flow.bundle_name,
                                flow.bundle_id,
                                "yes" if flow.restart_required else "no",
                                component.component_id,
                                component.component_name,
                                component.component_type,
                                component.direction,
                                component.usage,
                                component.alias_label,
                                component.property_key,
                                "yes" if component.outbound else "no",
                                component.reason,
                                component.script_file,
                            )
                        ]
                    )
    return out.getvalue().encode("utf-8-sig")


def csv_download(report: WhereUsedReport, *, pending: bool = False) -> Download:
    stem = public_download_stem(report.alias)
    suffix = "_new_key" if pending else ""
    return Download(
        f"{stem}{suffix}_where-used.csv", "text/csv; charset=utf-8", where_used_csv(report)
    )


def public_download_stem(alias: str) -> str:
    # The same file stem keystore.services.public_download uses.
    return alias.replace("/", "_").replace("\\", "_") or "entry"


# -- renewal pack ----------------------------------------------------------------------------


def _utc(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if value else ""


def _material_kind(material: KeyMaterial) -> str:
    if isinstance(material, PendingSapKey):
        return "the new SAP key waiting for activation (New SAP Keys)"
    if isinstance(material, SapKeyBackup):
        return f"a backup from SAP Key History (active until {_utc(material.active_until)})"
    return "the current key of the keystore entry"


def _actions(usage: str, files: dict[str, str], material: KeyMaterial) -> list[str]:
    """What a backend administrator imports for one usage."""
    cer, root = files["cer"], files["root"]
    root_text = (
        f"Import the root certificate {root} into the backend's trust store "
        f"(root CA {material.root_subject}, SHA-256 {material.root_fingerprint_sha256})."
    )
    if usage == Usage.CLIENT_CERTIFICATE:
        return [
            root_text,
            f"Map the client certificate {cer} to the user Cloud Integration logs on as "
            "(certificate-based logon / user mapping), replacing the old certificate.",
        ]
    if usage == Usage.SIGNING:
        return [
            f"Import the signing certificate {cer} to verify the signatures of messages from "
            "Cloud Integration (and trust its root if the backend validates the chain)."
        ]
    if usage == Usage.DECRYPTION:
        return [
            f"Import the encryption certificate {cer}: the backend encrypts messages for Cloud "
            "Integration with it."
        ]
    if usage == Usage.ENCRYPTION:
        return [
            f"Cloud Integration encrypts messages for the backend with {cer}: the backend must "
            "decrypt with the private key that belongs to this certificate."
        ]
    if usage == Usage.VERIFICATION:
        return [
            f"Cloud Integration verifies the backend's signatures with {cer}: the backend must "
            "sign with the private key that belongs to this certificate."
        ]
    return [
        f"Check how the component uses the key (it is {usage}); import {cer} and its root "
        f"{root} where the receiving system needs them."
    ]


def _backend_lines(
    backends: list[BackendUse], files: dict[str, str], material: KeyMaterial
) -> list[str]:
    lines: list[str] = []
    for number, backend in enumerate(backends, start=1):
        if backend.is_backend:
            where = f" ({backend.address})" if backend.system and backend.address else ""
            lines.append(f"{number}. {backend.label}{where}")
        else:
            lines.append(
                f"{number}. {backend.label}: the receivers of these flows' signed or encrypted "
                "messages"
            )
        lines.append("   Used by:")
        for flow in backend.flows:
            for component in flow.components:
                via = f" [{component.property_key}]" if component.property_key else ""
                lines.append(
                    f"   - flow {flow.bundle_name!r} ({flow.bundle_id}), {component.label!r}"
                    f" ({component.kind or 'component'}): {component.usage}, "
                    f"{component.alias_label}{via}"
                )
        lines.append("   To import there:")
        actions: list[str] = []
        for usage in backend.usages:
            for action in _actions(usage, files, material):
                if action not in actions:
                    actions.append(action)
        lines += [f"   - {action}" for action in actions]
        lines.append("")
    return lines


def instruction_sheet(material: KeyMaterial, report: WhereUsedReport, files: dict[str, str]) -> str:
    """INSTRUCTIONS.txt of the renewal pack: the files, then per backend what to import."""
    tenant_slug = report.tenant.slug
    lines = [
        f"Renewal pack for alias {material.alias} in tenant {tenant_slug}",
        f"Key: {_material_kind(material)}",
        f"Prepared: {_utc(timezone.now())}",
        "",
        "Files",
        f"  {files['cer']}: the certificate (DER)",
        f"      Subject: {material.subject}",
        f"      Issuer: {material.issuer}",
        f"      Serial number: {material.serial}",
        f"      Valid from {_utc(material.valid_from)} until {_utc(material.valid_until)}",
        f"      SHA-256 fingerprint: {material.fingerprint_sha256}",
        f"  {files['root']}: the root certificate (DER)",
        f"      Subject: {material.root_subject}",
        f"      SHA-256 fingerprint: {material.root_fingerprint_sha256}",
        f"  {files['p7b']}: the whole chain, PKCS#7 (Windows certificate manager, openssl, "
        "keytool)",
        f"  {files['pem']}: the whole chain, PEM",
        "",
    ]
    current = getattr(material, "entry", None)
    if current is not None and current.root_fingerprint_sha256 != material.root_fingerprint_sha256:
        lines += [
            "NOTE: this key is issued under another root certificate than the current key "
            f"({current.root_subject}). Every backend must trust the new root.",
            "",
        ]
    counts = report.counts
    lines += [
        f"Backends that use this alias ({len([b for b in report.uses if b.is_backend])})",
        "=" * 40,
    ]
    lines += _backend_lines(report.uses, files, material) or [
        "None found in the imported flows.",
        "",
    ]
    lines += [
        f"Backends that may use it ({len([b for b in report.may_use if b.is_backend])})",
        "=" * 40,
        "These components name no alias (Cloud Integration may choose any fitting key), try "
        "every key (decryptors) or take the alias from a runtime expression. Check them.",
        "",
    ]
    lines += _backend_lines(report.may_use, files, material) or ["None found.", ""]
    restart_flows = report.flows_to_restart_after_activation
    lines += ["Restart after activation", "=" * 40]
    if restart_flows:
        lines.append(
            "These flows authenticate outbound connections with this key (or any key); the TLS "
            "connection keeps the old key for up to 24 hours. Restart them after activation:"
        )
        lines += [f"  - {flow.bundle_name} ({flow.bundle_id})" for flow in restart_flows]
    else:
        lines.append("No imported flow holds outbound connections with this key.")
    lines += [
        "",
        f"Summary: {counts.uses} components use the alias, {counts.may_use} may use it; "
        f"{counts.backends} backends, {counts.flows} flows. Only flows imported into the "
        "where-used index are listed.",
    ]
    return "\n".join(lines) + "\n"


def renewal_pack(material: KeyMaterial, report: WhereUsedReport) -> Download:
    """One ZIP for the backend administrators: <alias>.cer, <alias>_rootCA.cer, <alias>.p7b,
    the PEM chain and INSTRUCTIONS.txt. Public content only."""
    if material.alias != report.alias or material.tenant_id != report.tenant.pk:
        raise WhereUsedError("The where-used report is about another alias or tenant.")
    try:
        downloads = {
            kind: public_download(material, kind) for kind in ("cer", "root", "p7b", "pem")
        }
    except KeystoreError as error:
        raise WhereUsedError(f"No renewal pack: {error}")
    files = {kind: download.filename for kind, download in downloads.items()}
    sheet = instruction_sheet(material, report, files)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for download in downloads.values():
            archive.writestr(download.filename, download.content)
        archive.writestr("INSTRUCTIONS.txt", sheet.encode("utf-8"))
    suffix = "_new_key" if isinstance(material, PendingSapKey) else ""
    stem = public_download_stem(material.alias)
    return Download(f"{stem}{suffix}_renewal_pack.zip", "application/zip", buffer.getvalue())
