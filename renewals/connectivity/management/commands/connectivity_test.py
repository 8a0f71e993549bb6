"""Run a TLS connectivity test from the command line (the same function as the admin page).

Exit status: 0 when the test succeeded, 1 for bad input or a refused address (nothing was
attempted or recorded), 2 when the test ran and failed (it is recorded; the report says what
failed).
"""

from __future__ import annotations

import json
import math

from django.core.management.base import BaseCommand, CommandError

from keystore.management.commands import get_tenant
from renewals.connectivity.models import ConnectivityTestRun
from renewals.connectivity.probe import MAX_TIMEOUT
from renewals.connectivity.services import (
    DEFAULT_TIMEOUT,
    ConnectivityError,
    run_connectivity_test,
)

FAILED_EXIT_STATUS = 2


def _port(text: str) -> int:
    value = text.strip()
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        raise CommandError(f"The port must be a whole number from 1 to 65535, not {text!r}.")
    return int(value)


def _timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not 0 < value <= MAX_TIMEOUT:
        raise CommandError(
            f"The timeout must be more than 0 and at most {MAX_TIMEOUT:g} seconds, not {text!r}."
        )
    return value


def _yes_no(value: bool | None) -> str:
    return "unknown" if value is None else ("yes" if value else "no")


def _validation(run: ConnectivityTestRun) -> str:
    if not run.verify_server:
        return "server certificate not validated"
    trust = " and the system trust store" if run.use_system_trust else ""
    return f"server certificate validated against the tenant's trusted certificates{trust}"


def report(run: ConnectivityTestRun) -> list[str]:
    lines = [
        f"Outcome:      {'SUCCESS' if run.succeeded else 'FAILED: ' + run.outcome}",
        f"Message:      {run.message}",
        f"Target:       {run.target} (tenant {run.tenant.slug}, {run.elapsed_ms} ms)",
        f"TLS version:  {run.tls_version or '-'}",
        f"Cipher:       {run.cipher or '-'}",
        f"Validation:   {_validation(run)}",
        f"Key used:     {run.get_key_used_display()}. {run.key_note}",
    ]
    if run.key_fingerprint:
        lines.append(f"Client cert:  SHA-256 {run.key_fingerprint}")
    lines += [
        f"Client certificate requested: {_yes_no(run.client_certificate_requested)}",
        f"Client certificate sent:      {_yes_no(run.client_certificate_sent)}",
        "Client certificate accepted:  "
        + (_yes_no(run.client_certificate_accepted) if run.client_certificate_sent else "-"),
    ]
    if run.acceptable_ca_names:
        lines.append("Issuers the server accepts:")
        lines += [f"  {name}" for name in run.acceptable_ca_names]
    lines.append("Server certificate chain:" if run.server_chain else "Server sent no certificate.")
    for number, cert in enumerate(run.server_chain, start=1):
        root = " (root)" if cert["self_signed"] else ""
        lines += [
            f"  {number}. {cert['subject']}{root}",
            f"     issuer  {cert['issuer']}",
            f"     valid   {cert['not_before']} .. {cert['not_after']}",
            f"     SHA-256 {cert['fingerprint_sha256']}",
        ]
    return lines


class Command(BaseCommand):
    help = (
        "Test a TLS connection to HOST PORT, optionally with a client key pair of the tenant's "
        "keystore (--alias; --pending for its new SAP key). Exit status 0 on success, 1 for bad "
        "input, 2 when the test failed."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("host", help="host name or IP address (also used for SNI)")
        parser.add_argument("port", help="TCP port, 1-65535")
        parser.add_argument("--tenant", required=True, help="tenant slug")
        parser.add_argument("--alias", default="", help="key pair to authenticate with")
        parser.add_argument(
            "--pending",
            action="store_true",
            help="use the new SAP key waiting for the alias (the current key if none waits)",
        )
        parser.add_argument(
            "--no-verify", action="store_true", help="do not validate the server certificate"
        )
        parser.add_argument(
            "--system-trust",
            action="store_true",
            help="also trust the system trust store when validating the server certificate",
        )
        parser.add_argument(
            "--timeout",
            default=str(DEFAULT_TIMEOUT),
            help=f"seconds for the whole test, more than 0 and at most {MAX_TIMEOUT:g} "
            f"(default {DEFAULT_TIMEOUT:g})",
        )
        parser.add_argument("--json", action="store_true", help="print the result as JSON")

    def handle(self, *args, **options) -> None:
        tenant = get_tenant(options["tenant"])
        try:
            run = run_connectivity_test(
                tenant,
                options["host"],
                _port(options["port"]),
                alias=options["alias"],
                include_pending=options["pending"],
                verify_server=not options["no_verify"],
                use_system_trust=options["system_trust"],
                timeout=_timeout(options["timeout"]),
            )
        except ConnectivityError as error:
            raise CommandError(str(error))
        if options["json"]:
            self.stdout.write(json.dumps(run.as_dict(), indent=2))
        else:
            self.stdout.write("\n".join(report(run)))
        if not run.succeeded:
            raise CommandError(
                f"The connectivity test failed: {run.outcome}.", returncode=FAILED_EXIT_STATUS
            )
