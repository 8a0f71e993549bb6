"""Fixtures of the keystore.crypto tests: two test PKIs (root, intermediate, leaf)."""

from __future__ import annotations

import pytest

from tests import pki


@pytest.fixture(scope="module")
def chain_a() -> pki.Pki:
    return pki.make_pki("Alpha")


@pytest.fixture(scope="module")
def chain_b() -> pki.Pki:
    return pki.make_pki("Beta")
