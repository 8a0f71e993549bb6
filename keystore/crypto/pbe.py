"""Password-based decryption where cryptography offers none: PKCS#12 safes (PBES2, and the
legacy PKCS#12 schemes with 3DES, RC2 and RC4), and shrouded keys under the PKCS#12 schemes
cryptography's key loader lacks (two-key 3DES, 128-bit RC2, 40-bit RC4).

cryptography decrypts PKCS#8 keys (keystore.crypto.keys.untrusted_key), and its PKCS#12 reader
decrypts safes, but only together with every key and the MAC of the file, none of them priced
(see keystore.crypto.pkcs12_import). AES, 3DES, RC4, PBKDF2 and scrypt here are cryptography's;
the PKCS#12 key derivation is ours (keystore.crypto.kdf.pkcs12_kdf). RC2 is pycryptodomex's:
cryptography's RC2 takes 128-bit keys only, and 40-bit RC2 is what OpenSSL 1.x and Windows
encrypt certificates with, so one RC2 serves both key sizes; pycryptodomex is installed for
pyjks anyway.
"""

from __future__ import annotations

from typing import Any

from Cryptodome.Cipher import ARC2
from cryptography.hazmat.decrepit.ciphers.algorithms import ARC4, TripleDES
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from pyasn1.type import univ
from pyasn1_modules import rfc7292, rfc7914, rfc8018

from keystore.crypto import kdf
from keystore.crypto.asn1 import decode, parameters_of
from keystore.crypto.errors import CryptoError

_PBES2_CIPHERS: dict[str, tuple[str, int]] = {
    "2.16.840.1.101.3.4.1.2": ("aes", 16),
    "2.16.840.1.101.3.4.1.22": ("aes", 24),
    "2.16.840.1.101.3.4.1.42": ("aes", 32),
    "1.2.840.113549.3.7": ("3des", 24),
}


def pbe_decrypt(algorithm: Any, data: bytes, password: str, budget: kdf.KdfBudget) -> list[bytes]:
    """Candidate plaintexts (one per password encoding) of password-encrypted data.

    PKCS#12 PBE turns the password into BMPString bytes (see kdf.bmp_secrets), PBES2 into
    UTF-8. Undecryptable data gives ``[]``. Each derivation is paid for from ``budget`` first.
    """
    oid = str(algorithm["algorithm"])
    parameters = parameters_of(algorithm)
    cost = kdf.kdf_cost(algorithm)  # also refuses the schemes we cannot price
    if oid == str(rfc8018.id_PBES2):
        budget.spend(cost)
        plain = _pbes2_decrypt(parameters, data, password.encode("utf-8"))
        return [plain] if plain is not None else []
    scheme = kdf.PKCS12_PBE_SCHEMES.get(oid.removeprefix(kdf.PKCS12_PBE))
    if oid.startswith(kdf.PKCS12_PBE) and scheme is not None:
        params = decode(parameters, rfc7292.Pkcs_12PbeParams())
        salt, iterations = bytes(params["salt"]), int(params["iterations"])
        results = []
        for secret in kdf.bmp_secrets(password):
            budget.spend(cost)
            plain = _pkcs12_pbe_decrypt(scheme, secret, salt, iterations, data)
            if plain is not None:
                results.append(plain)
        return results
    raise CryptoError(kdf.UNSUPPORTED_ENCRYPTION)


def is_pkcs12_pbe(algorithm: Any) -> bool:
    """Whether an AlgorithmIdentifier names one of the PKCS#12 encryption schemes."""
    return str(algorithm["algorithm"]).startswith(kdf.PKCS12_PBE)


def _pbes2_decrypt(parameters: bytes, data: bytes, secret: bytes) -> bytes | None:
    params = decode(parameters, rfc8018.PBES2_params())
    scheme = params["encryptionScheme"]
    cipher_name, key_length = _PBES2_CIPHERS.get(str(scheme["algorithm"]), ("", 0))
    if not cipher_name:
        raise CryptoError(kdf.UNSUPPORTED_ENCRYPTION)
    derivation = params["keyDerivationFunc"]
    if derivation["algorithm"] == rfc8018.id_PBKDF2:
        key = kdf.pbkdf2_key(derivation, secret, key_length)
    elif derivation["algorithm"] == rfc7914.id_scrypt:
        key = kdf.scrypt_key(derivation, secret, key_length)
    else:
        raise CryptoError(kdf.UNSUPPORTED_KDF)
    iv = bytes(decode(bytes(scheme["parameters"]), univ.OctetString()))
    block = algorithms.AES(key) if cipher_name == "aes" else TripleDES(key)
    return _cbc_decrypt(block, iv, data)


def _cbc_decrypt(block: algorithms.AES | TripleDES, iv: bytes, data: bytes) -> bytes | None:
    if len(iv) * 8 != block.block_size or not data or len(data) % len(iv):
        return None
    decryptor = Cipher(block, modes.CBC(iv)).decryptor()
    return _unpad(decryptor.update(data) + decryptor.finalize(), block.block_size)


def _unpad(plain: bytes, block_bits: int) -> bytes | None:
    unpadder = padding.PKCS7(block_bits).unpadder()
    try:
        return unpadder.update(plain) + unpadder.finalize()
    except ValueError:
        return None


def _pkcs12_pbe_decrypt(
    scheme: tuple[str, int, int], secret: bytes, salt: bytes, iterations: int, data: bytes
) -> bytes | None:
    cipher_name, key_length, rc2_bits = scheme
    key = kdf.pkcs12_kdf(secret, salt, iterations, purpose=1, size=key_length)
    if cipher_name == "rc4":
        decryptor = Cipher(ARC4(key), mode=None).decryptor()
        return decryptor.update(data) + decryptor.finalize()
    iv = kdf.pkcs12_kdf(secret, salt, iterations, purpose=2, size=8)
    if cipher_name == "3des":
        # two-key 3DES is K1 K2 K1; spelled out because the 16-byte form is deprecated
        return _cbc_decrypt(TripleDES(key if len(key) == 24 else key + key[:8]), iv, data)
    if not data or len(data) % 8:
        return None
    # Legacy (OpenSSL 1.x / Windows) files encrypt certificates with RC2; we only decrypt.
    # pycryptodomex's stub omits effective_keylen, which ARC2.new takes (40 or 128 bits here)
    rc2 = ARC2.new(key, ARC2.MODE_CBC, iv=iv, effective_keylen=rc2_bits)  # type: ignore[call-arg]  # noqa: S304
    plain: bytes = rc2.decrypt(data)
    return _unpad(plain, 64)
