"""Scenario 2: importing a 1,000-entry PKCS#12 and a 1,000-entry JKS keystore against
`keytool -importkeystore` of the same file into a new PKCS#12.

The files are made once in a separate process (`prepare`): EC P-256 key pairs, each with its own
key and a certificate issued by a benchmark CA, plus trusted certificates (one in ten entries),
written as JKS by pyjks and converted to PKCS#12 by keytool (the way Java users make multi-entry
PKCS#12 files). EC keys, because the site refuses keystore files over 1 MiB: a thousand RSA-2048
key pairs do not fit (about 2 KB each), a thousand EC key pairs do.

The import is the site's one path (`keystore.merging.import_keystore`) into an empty tenant:
parse, verify each chain, check each key, seal each key, write each row and its audit record.
keytool is timed around the whole process (JVM start included, as the operator waits for it);
the JVM start alone (`keytool -help`) is reported too.

Each import is split in two: the key derivations the file asks for, and the rest. The first is
the file's key-derivation price as the reader counts it (keystore.crypto.kdf, in iterations of
PBKDF2-HMAC-SHA256 in OpenSSL) timed as that many PBKDF2 iterations alone, in derivations of
keytool's 10,000: a floor no reader of the file can go below (keytool derives each key too, and
derives it again to write it). The rest is ours: parsing, checks, sealing and storing.
"""

from __future__ import annotations

import hashlib
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
#: Issue 13, item 7: an import at most half as long as keytool's.
TARGET_RATIO = 0.5
KEYTOOL_ITERATIONS = 10_000


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
    from keystore.crypto import facts, signatures
    from keystore.merging import import_keystore
    from keystore.models import Tenant

    tenant = Tenant.objects.create(name=f"{label} {number}", slug=f"import-{label}-{number}")
    # A worker meets a new file with nothing of it remembered: no verified signature, no facts.
    signatures.signed_by.cache_clear()
    facts.certificate_facts.cache_clear()
    seconds, summary = timed(lambda: import_keystore(tenant, data, PASSWORD))
    if len(summary.added) != entries or summary.rejected:
        reasons = {outcome.reason for outcome in summary.rejected}
        raise RuntimeError(
            f"{label}: {len(summary.added)} of {entries} entries added; rejected: {reasons}"
        )
    return seconds


def _kdf_price(data: bytes) -> int:
    """What reading ``data`` spends on key derivation, as the reader prices it (PBKDF2-equivalent
    iterations): the sum of every KdfBudget.spend of one read."""
    from keystore import crypto
    from keystore.crypto import kdf

    spent: list[int] = []
    real_spend = kdf.KdfBudget.spend

    def spend(budget: kdf.KdfBudget, cost: int) -> None:
        spent.append(cost)
        real_spend(budget, cost)

    kdf.KdfBudget.spend = spend  # type: ignore[method-assign]
    try:
        crypto.load_keystore(data, PASSWORD)
    finally:
        kdf.KdfBudget.spend = real_spend  # type: ignore[method-assign]
    return sum(spent)


def _derivation_seconds(price: int) -> float:
    """``price`` PBKDF2-HMAC-SHA256 iterations in derivations of keytool's 10,000, timed alone
    (hashlib and cryptography both run OpenSSL's)."""
    derivations = round(price / KEYTOOL_ITERATIONS)

    def derive() -> None:
        for number in range(derivations):
            hashlib.pbkdf2_hmac(
                "sha256", PASSWORD.encode(), number.to_bytes(16, "big"), KEYTOOL_ITERATIONS, 32
            )

    return timed(derive)[0]


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
        price = _kdf_price(data)
        ours, theirs, derivations = [], [], []
        with tempfile.TemporaryDirectory() as directory:
            # Alternating, so all three see the same machine.
            for number in range(repeat):
                ours.append(_import_seconds(data, store_type.lower(), entries, number))
                theirs.append(_keytool_seconds(path, store_type, Path(directory), number))
                derivations.append(_derivation_seconds(price))
        ours_s, theirs_s = statistics.median(ours), statistics.median(theirs)
        derivation_s = statistics.median(derivations)
        rest_s = statistics.median(o - d for o, d in zip(ours, derivations, strict=True))
        result.add(
            f"import {entries}-entry {store_type} ({len(data) // 1024} KiB)",
            round(ours_s, 3),
            "s",
            baseline=round(theirs_s, 3),
            ratio=ratio(ours_s, theirs_s),
            target=f"<= {TARGET_RATIO}x keytool",
            passed=ours_s <= TARGET_RATIO * theirs_s,
            note=f"{ours_s / entries * 1000:.2f} ms/entry; keytool incl. JVM start",
        )
        result.add(
            f"  of which key derivation ({price:,} PBKDF2 iterations, timed alone)",
            round(derivation_s, 3),
            "s",
            baseline=round(theirs_s, 3),
            ratio=ratio(derivation_s, theirs_s),
            note=f"{round(price / KEYTOOL_ITERATIONS):,} derivations of {KEYTOOL_ITERATIONS:,}",
        )
        result.add(
            "  the rest: parse, check, seal, store",
            round(rest_s, 3),
            "s",
            baseline=round(theirs_s, 3),
            ratio=ratio(rest_s, theirs_s),
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
