"""Shared by the keystore and renewals migrations that add `root_known` (not a migration: the
loader skips modules starting with an underscore)."""

from cryptography import x509


def chain_top_is_self_signed(chain_pem: str) -> bool:
    from keystore import crypto

    top = x509.load_pem_x509_certificates(chain_pem.encode("ascii"))[-1]
    return crypto.certificate_facts(top).self_signed


def fill(model) -> None:
    unknown = [
        pk
        for pk, chain_pem in model.objects.values_list("pk", "chain_pem").iterator()
        if not chain_top_is_self_signed(chain_pem)
    ]
    model.objects.filter(pk__in=unknown).update(root_known=False)
