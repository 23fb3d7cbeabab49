"""Fixtures shared by the tests. The environment (quick mode, offline mode) is set in the
repository's root conftest.py, which every way of running pytest loads."""

import pytest


def _raises_naming(call, error, words):
    """``call()`` raises ``error`` whose message contains every one of ``words``."""
    with pytest.raises(error) as info:
        call()
    for word in words:
        assert word in str(info.value), f"{word!r} not in {str(info.value)!r}"


@pytest.fixture
def raises_naming():
    """The check of the bad-input tables: ``raises_naming(call, error, words)``."""
    return _raises_naming
