"""Shared pieces of the scenarios: result rows, timing, query counts, peak memory, and key material
made once and reused for many rows.

Scenarios run against whatever database Django is configured with (bench/run.py gives each one a
throwaway database; the smoke test uses pytest's test database).
"""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID


@dataclass
class Row:
    """One line of the results table. `passed` is None for a figure without a target."""

    scenario: str
    metric: str
    value: float | int | str
    unit: str = ""
    baseline: float | int | str | None = None
    ratio: float | None = None
    target: str = ""
    passed: bool | None = None
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ScenarioResult:
    scenario: str
    sizes: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    seconds: float = 0.0
    peak_rss_mb: float | None = None
    skipped: str = ""
    data: dict[str, Any] = field(default_factory=dict)  # raw figures of a part, for combine()

    def add(self, *args, **kwargs) -> Row:
        row = Row(self.scenario, *args, **kwargs)
        self.rows.append(row)
        return row

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "sizes": self.sizes,
            "rows": [row.as_dict() for row in self.rows],
            "seconds": round(self.seconds, 2),
            "peak_rss_mb": self.peak_rss_mb,
            "skipped": self.skipped,
            "data": self.data,
        }


def at_most(value: float, limit: float) -> bool:
    return value <= limit


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (ru_maxrss is in kilobytes on Linux)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def timed(call: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = call()
    return time.perf_counter() - start, value


def median_seconds(call: Callable[[], Any], *, repeat: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        call()
    return statistics.median(timed(call)[0] for _ in range(repeat))


def count_queries(call: Callable[[], Any]) -> tuple[int, Any]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        value = call()
    return len(captured.captured_queries), value


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def ratio(value: float, baseline: float) -> float:
    return round(value / baseline, 3) if baseline else float("inf")


# -- key material made once, written into many rows -------------------------------------------


@dataclass
class Material:
    """A real certificate chain and its private key; rows copy its columns and vary alias,
    serial and validity. Each row's private key is sealed for that row, so rows can be opened
    and activated like any other."""

    chain: list[x509.Certificate]
    key: Any
    columns: dict[str, Any]
    key_der: bytes

    @classmethod
    def of(cls, chain: list[x509.Certificate], key) -> Material:
        from keystore import crypto

        leaf, root = chain[0], crypto.root_certificate(chain)
        facts = crypto.certificate_facts(leaf)
        root_facts = crypto.certificate_facts(root)
        columns = {
            "chain_pem": crypto.to_pem_chain(chain).decode("ascii"),
            "chain_length": len(chain),
            "subject": facts.subject,
            "issuer": facts.issuer,
            "subject_cn": facts.subject_cn,
            "issuer_cn": facts.issuer_cn,
            "key_type": facts.key_type,
            "key_size": facts.key_size,
            "signature_algorithm": facts.signature_algorithm,
            "fingerprint_sha256": facts.fingerprint_sha256,
            "fingerprint_sha1": facts.fingerprint_sha1,
            "fingerprint_sha512": facts.fingerprint_sha512,
            "elliptic_curve": facts.elliptic_curve,
            "root_subject": root_facts.subject,
            "root_fingerprint_sha256": root_facts.fingerprint_sha256,
        }
        key_der = crypto.private_key_to_der(key) if key is not None else b""
        return cls(chain, key, columns, key_der)

    def fill(self, row, *, serial: int, valid_from: datetime, valid_until: datetime) -> None:
        """Write the material into an unsaved row whose tenant, alias and material_id are set."""
        from keystore import sealing

        for name, value in self.columns.items():
            setattr(row, name, value)
        row.serial = f"{serial:X}"
        row.valid_from = valid_from
        row.valid_until = valid_until
        if self.key is None:
            row.sealed_private_key, row.kek_id = None, ""
        else:
            row.kek_id, row.sealed_private_key = sealing.seal(self.key_der, row.sealing_context())


def _name(common_name: str, org: str = "SAP SE") -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _certificate(subject: str, key, issuer_name: x509.Name, issuer_key, *, ca: bool, days: int):
    now = datetime.now(UTC).replace(microsecond=0)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(issuer_key, hashes.SHA256())
    )


@dataclass
class SapPki:
    """An SAP-like PKI: root -> issuing CA -> RSA-2048 key pairs, as SAP-owned keys look."""

    root_key: Any
    root: x509.Certificate
    issuing_key: Any
    issuing: x509.Certificate

    @classmethod
    def make(cls, prefix: str = "Bench") -> SapPki:
        from keystore import crypto

        root_key = crypto.generate_key_pair("rsa", 2048)
        root_name = _name(f"{prefix} SAP Global Root CA")
        root = _certificate(
            f"{prefix} SAP Global Root CA", root_key, root_name, root_key, ca=True, days=3650
        )
        issuing_key = crypto.generate_key_pair("rsa", 2048)
        issuing = _certificate(
            f"{prefix} SAP Cloud Platform Client CA",
            issuing_key,
            root.subject,
            root_key,
            ca=True,
            days=1825,
        )
        return cls(root_key, root, issuing_key, issuing)

    def key_pair(self, common_name: str, *, days: int = 730) -> Material:
        from keystore import crypto

        key = crypto.generate_key_pair("rsa", 2048)
        leaf = _certificate(
            common_name, key, self.issuing.subject, self.issuing_key, ca=False, days=days
        )
        return Material.of([leaf, self.issuing, self.root], key)


def refresh_statistics() -> None:
    """After a bulk load, let PostgreSQL's planner see the new row counts (autovacuum's analyze
    would, a minute later, in a running site); SQLite plans without statistics."""
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")


def bulk_insert(model, rows, *, batch_size: int = 2000) -> None:
    """Insert rows in batches, each batch in one transaction."""
    from django.db import transaction

    batch: list = []
    for row in rows:
        batch.append(row)
        if len(batch) >= batch_size:
            with transaction.atomic():
                model.objects.bulk_create(batch, batch_size=batch_size)
            batch = []
    if batch:
        with transaction.atomic():
            model.objects.bulk_create(batch, batch_size=batch_size)
