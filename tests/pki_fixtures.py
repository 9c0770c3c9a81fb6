"""Session fixtures for the PKI tests, loaded with ``pytest_plugins = ("tests.pki_fixtures",)``:
keys from the fixed groups and two unrelated root CAs, made once."""

from __future__ import annotations

import pytest

from skip.crypto.dh import GROUPS
from skip.pki import generate_key

from .pki_support import Ca, Keys, make_ca


@pytest.fixture(scope="session")
def dh_keys() -> Keys:
    names = ("ffdhe2048", "skip-1024", "skip-2048", "modp-3072", "x25519", "x448")
    return {name: generate_key(GROUPS[name]) for name in names}


@pytest.fixture(scope="session")
def root_ca() -> Ca:
    return make_ca("skip test root")


@pytest.fixture(scope="session")
def other_ca() -> Ca:
    return make_ca("unrelated root")
