"""Contracts registered for a while: a test app's or a test's own contracts are forgotten afterwards, so
that no test sees another's (pytest imports every test module before it runs any test)."""

import contextlib
import importlib
import sys
import types
import typing

from eda.contracts import registry, versions


@contextlib.contextmanager
def registry_kept() -> typing.Iterator[None]:
    """The contract registry as it is now, put back on leaving whatever was registered inside."""
    tables = (registry._CONTRACTS, registry._BY_KEY, versions._VERSIONS, versions._UPCASTERS)
    saved = [{k: dict(v) if isinstance(v, dict) else v for k, v in table.items()} for table in tables]
    try:
        yield
    finally:
        for table, before in zip(tables, saved):
            table.clear()
            table.update(before)


@contextlib.contextmanager
def contracts_of(module_name: str) -> typing.Iterator[types.ModuleType]:
    """A test app's module with its contracts registered in this process while inside (imported again
    when an earlier test had it: its contracts were forgotten then)."""
    with registry_kept():
        module = sys.modules.get(module_name)
        yield importlib.reload(module) if module is not None else importlib.import_module(module_name)
