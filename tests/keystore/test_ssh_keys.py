"""SSH key pair entries from key files that ssh-keygen writes: OpenSSH format with or without a
passphrase, unencrypted PEM; the passphrase's bcrypt rounds priced before any derivation; what is
refused says how to convert it and stores nothing."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from cryptography.hazmat.primitives import serialization

from keystore import services
from keystore.crypto import sshkeys
from keystore.models import KeystoreEntry
from keystore.services import KeystoreError

pytestmark = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen missing")


def keygen(tmp_path, name: str, *args: str) -> bytes:
    path = tmp_path / name
    subprocess.run(
        ["ssh-keygen", "-q", "-f", str(path), "-C", name, *args],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return path.read_bytes()


def public_line(tmp_path, name: str) -> bytes:
    return (tmp_path / f"{name}.pub").read_bytes().split()[1]


@pytest.mark.parametrize(
    ("kind", "args"),
    [
        ("ed25519", ("-t", "ed25519")),
        ("rsa", ("-t", "rsa", "-b", "2048")),
        ("ecdsa", ("-t", "ecdsa")),
    ],
)
def test_openssh_keys_become_key_pairs(tenant, tmp_path, kind, args):
    data = keygen(tmp_path, kind, *args, "-N", "")
    entry = services.import_ssh_key(tenant, f"id_{kind}", data, None, "CN=sftp-user")
    assert entry.entry_type == "key_pair" and entry.subject_cn == "sftp-user"
    key = entry.open_key_pair_key()
    ours = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    assert ours.split()[1] == public_line(tmp_path, kind)
    assert services.public_download(entry, "ssh").content.split()[1] == public_line(tmp_path, kind)


def test_a_passphrase_protected_key(tenant, tmp_path):
    data = keygen(tmp_path, "locked", "-t", "ed25519", "-N", "open sesame")
    with pytest.raises(KeystoreError, match="protected by a passphrase"):
        services.import_ssh_key(tenant, "id_locked", data, None, "CN=x")
    with pytest.raises(KeystoreError, match="Wrong passphrase"):
        services.import_ssh_key(tenant, "id_locked", data, "wrong", "CN=x")
    entry = services.import_ssh_key(tenant, "id_locked", data, "open sesame", "CN=x")
    assert entry.open_key_pair_key().public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).split()[1] == public_line(tmp_path, "locked")


def test_too_many_bcrypt_rounds_are_refused_before_deriving(tenant, tmp_path):
    data = keygen(tmp_path, "dear", "-t", "ed25519", "-N", "pass", "-a", "5000")
    assert sshkeys.bcrypt_rounds(data) == 5000
    with pytest.raises(KeystoreError, match="5000 bcrypt rounds"):
        services.import_ssh_key(tenant, "id_dear", data, "pass", "CN=x")
    assert not KeystoreEntry.objects.exists()


def test_unencrypted_pem_is_taken_encrypted_pem_and_putty_are_refused(tenant, tmp_path):
    pem = keygen(tmp_path, "pem", "-t", "rsa", "-b", "2048", "-m", "PEM", "-N", "")
    assert pem.startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    assert services.import_ssh_key(tenant, "id_pem", pem, None, "CN=x").key_type == "RSA"
    locked = keygen(
        tmp_path, "pem_locked", "-t", "rsa", "-b", "2048", "-m", "PEM", "-N", "secret-pw"
    )
    with pytest.raises(KeystoreError, match="Encrypted PEM keys are not taken; convert"):
        services.import_ssh_key(tenant, "id_pem_locked", locked, "secret-pw", "CN=x")
    with pytest.raises(KeystoreError, match="PuTTY key files are not taken"):
        services.import_ssh_key(tenant, "id_putty", b"PuTTY-User-Key-File-3: ssh-rsa\n", "", "CN=x")
    for junk in (b"", b"not a key", b"-----BEGIN OPENSSH PRIVATE KEY-----\n%%%\n", b"x" * 20_000):
        with pytest.raises(KeystoreError):
            services.import_ssh_key(tenant, "id_junk", junk, None, "CN=x")
    assert list(KeystoreEntry.objects.values_list("alias", flat=True)) == ["id_pem"]


def test_an_existing_alias_needs_overwrite(tenant, tmp_path):
    first = keygen(tmp_path, "one", "-t", "ed25519", "-N", "")
    second = keygen(tmp_path, "two", "-t", "ed25519", "-N", "")
    services.import_ssh_key(tenant, "id_ed25519", first, None, "CN=x")
    with pytest.raises(KeystoreError, match="exists already"):
        services.import_ssh_key(tenant, "id_ed25519", second, None, "CN=x")
    entry = services.import_ssh_key(tenant, "id_ed25519", second, None, "CN=x", overwrite=True)
    assert entry.version == 2
