"""Fixtures of the unit tests."""

import pytest

from eda.contracts import registry


@pytest.fixture
def own_contracts():
    """Contracts a test registers are forgotten after it, so that tests cannot see each other's."""
    saved = dict(registry._CONTRACTS), dict(registry._BY_KEY)
    yield
    for table, before in zip((registry._CONTRACTS, registry._BY_KEY), saved):
        table.clear()
        table.update(before)
