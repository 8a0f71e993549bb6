"""Scenario 2: importing a 1,000-entry PKCS#12 and a 1,000-entry JKS keystore against
`keytool -importkeystore` of the same file into a new PKCS#12.

The files are made once in a separate process (`prepare`): EC P-256 key pairs, each with its own
key and a certificate issued by a benchmark CA, plus trusted certificates (one in ten entries),
written as JKS by pyjks and converted to PKCS#12 by keytool (the way Java users make multi-entry
PKCS#12 files). EC keys, because the site refuses keystore files over 1 MiB: a thousand RSA-2048
key pairs do not fit (about 2 KB each), a thousand EC key pairs do.

The import is the site's one path (`keystore.services.import_keystore`) into an empty tenant:
parse, verify each chain, check each key, seal each key, write each row and its audit record.
keytool is timed around the whole process (JVM start included, as the operator waits for it);
the JVM start alone (`keytool -help`) is reported too.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.common import ScenarioResult, peak_rss_mb, ratio, timed

NAME = "keystore_import"
SIZES = {
    "full": {"entries": 1000, "repeat": 3},
    "quick": {"entries": 100, "repeat": 2},
}
PASSWORD = "bench-keystore-pw"
MEMORY_LIMIT_MB = 200
KEYTOOL = shutil.which("keytool")


def _entries(count: int):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(common_name: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Bench Corp"),
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            ]
        )

    def certificate(subject, key, issuer_name, issuer_key, *, ca: bool):
        now = datetime.now(UTC).replace(microsecond=0)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=700 if not ca else 3650))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(issuer_key, hashes.SHA256())
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name("Bench Issuing CA")
    ca = certificate(ca_name, ca_key, ca_name, ca_key, ca=True)
    items = [("bench_issuing_ca", None, [ca])]
    for number in range(1, count):
        if number % 10 == 9:
            root_key = ec.generate_private_key(ec.SECP256R1())
            root_name = name(f"Bench Trusted Root {number:04d}")
            root = certificate(root_name, root_key, root_name, root_key, ca=True)
            items.append((f"trusted_{number:04d}", None, [root]))
        else:
            key = ec.generate_private_key(ec.SECP256R1())
            leaf = certificate(
                name(f"service-{number:04d}.bench.example"), key, ca_name, ca_key, ca=False
            )
            items.append((f"key_{number:04d}", key, [leaf]))
    return items


def prepare(sizes: dict, workdir: Path) -> None:
    """Write store.jks and store.p12 with `entries` entries into workdir."""
    from tests.pki import make_jks, run_keytool

    jks_path, p12_path = workdir / "store.jks", workdir / "store.p12"
    jks_path.write_bytes(make_jks(_entries(sizes["entries"]), PASSWORD))
    if KEYTOOL is None:
        return  # run() reports the scenario as skipped
    run_keytool(
        "-importkeystore",
        "-noprompt",
        "-srckeystore",
        str(jks_path),
        "-srcstoretype",
        "JKS",
        "-srcstorepass",
        PASSWORD,
        "-destkeystore",
        str(p12_path),
        "-deststoretype",
        "PKCS12",
        "-deststorepass",
        PASSWORD,
    )


def _keytool_seconds(source: Path, store_type: str, directory: Path, number: int) -> float:
    target = directory / f"keytool-{store_type}-{number}.p12"
    command = [
        KEYTOOL,
        "-importkeystore",
        "-noprompt",
        "-srckeystore",
        str(source),
        "-srcstoretype",
        store_type,
        "-srcstorepass",
        PASSWORD,
        "-destkeystore",
        str(target),
        "-deststoretype",
        "PKCS12",
        "-deststorepass",
        PASSWORD,
    ]
    seconds, completed = timed(
        lambda: subprocess.run(command, capture_output=True, text=True, check=False)
    )
    if completed.returncode != 0:
        raise RuntimeError(f"keytool failed: {completed.stdout[-500:]}{completed.stderr[-500:]}")
    target.unlink()
    return seconds


def _jvm_start_seconds(repeat: int) -> float:
    return statistics.median(
        timed(lambda: subprocess.run([KEYTOOL, "-help"], capture_output=True, check=False))[0]
        for _ in range(repeat)
    )


def _import_seconds(data: bytes, label: str, entries: int, number: int) -> float:
    """Import `data` into a new, empty tenant through the site's one import path."""
    from keystore.models import Tenant
    from keystore.services import import_keystore

    tenant = Tenant.objects.create(name=f"{label} {number}", slug=f"import-{label}-{number}")
    seconds, summary = timed(lambda: import_keystore(tenant, data, PASSWORD))
    if len(summary.added) != entries or summary.rejected:
        reasons = {outcome.reason for outcome in summary.rejected}
        raise RuntimeError(
            f"{label}: {len(summary.added)} of {entries} entries added; rejected: {reasons}"
        )
    return seconds


def run(sizes: dict, workdir: Path | None = None) -> ScenarioResult:
    result = ScenarioResult(NAME, dict(sizes))
    entries, repeat = sizes["entries"], sizes["repeat"]
    if workdir is None or not (workdir / "store.jks").exists():
        raise RuntimeError("prepare() has not written the keystore files")
    if KEYTOOL is None:
        result.skipped = "keytool is not installed"
        return result
    jvm = _jvm_start_seconds(repeat)
    for store_type, path in (("PKCS12", workdir / "store.p12"), ("JKS", workdir / "store.jks")):
        data = path.read_bytes()
        ours, theirs = [], []
        with tempfile.TemporaryDirectory() as directory:
            # Alternating, so both see the same machine.
            for number in range(repeat):
                ours.append(_import_seconds(data, store_type.lower(), entries, number))
                theirs.append(_keytool_seconds(path, store_type, Path(directory), number))
        ours_s, theirs_s = statistics.median(ours), statistics.median(theirs)
        result.add(
            f"import {entries}-entry {store_type} ({len(data) // 1024} KiB)",
            round(ours_s, 3),
            "s",
            baseline=round(theirs_s, 3),
            ratio=ratio(ours_s, theirs_s),
            target="faster than keytool",
            passed=ours_s < theirs_s,
            note=f"{ours_s / entries * 1000:.2f} ms/entry; keytool incl. JVM start",
        )
    result.add("keytool JVM start (keytool -help)", round(jvm, 3), "s")
    peak = peak_rss_mb()
    result.add(
        f"peak RSS importing {entries}-entry keystores",
        peak,
        "MB",
        target=f"< {MEMORY_LIMIT_MB} MB",
        passed=peak < MEMORY_LIMIT_MB,
    )
    return result
