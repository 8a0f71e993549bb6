"""Backfill of the facts the Cloud Integration API reports (SHA-1 and SHA-512 fingerprints, the
elliptic curve) for rows stored before they were columns; shared by the keystore and renewals
migrations. Reads each row's leaf from its PEM chain, in batches."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

BATCH = 500


def _hex_pairs(cert: x509.Certificate, algorithm: hashes.HashAlgorithm) -> str:
    digest = cert.fingerprint(algorithm).hex().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def fill(apps, app_label: str, model_names: tuple[str, ...]) -> None:
    for model_name in model_names:
        model = apps.get_model(app_label, model_name)
        rows = model.objects.filter(fingerprint_sha1="").only("pk", "chain_pem")
        changed = []
        for row in rows.iterator(chunk_size=BATCH):
            leaf = x509.load_pem_x509_certificates(row.chain_pem.encode("ascii"))[0]
            row.fingerprint_sha1 = _hex_pairs(leaf, hashes.SHA1())  # noqa: S303  a name only
            row.fingerprint_sha512 = _hex_pairs(leaf, hashes.SHA512())
            try:
                key = leaf.public_key()
            except ValueError:
                key = None
            row.elliptic_curve = (
                key.curve.name if isinstance(key, ec.EllipticCurvePublicKey) else ""
            )
            changed.append(row)
            if len(changed) >= BATCH:
                model.objects.bulk_update(
                    changed, ["fingerprint_sha1", "fingerprint_sha512", "elliptic_curve"]
                )
                changed = []
        model.objects.bulk_update(
            changed, ["fingerprint_sha1", "fingerprint_sha512", "elliptic_curve"]
        )
