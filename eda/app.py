"""The app: the modules ``--app`` / ``EDA_APP`` names, or installed packages' entry points, imported once.

Importing them is what registers their contracts and defines their workers. The modules named are
imported with the current directory first on the path, as ``flask --app`` does, so a project runs
without being installed, each package's submodules too; where none are named, the app is the
``eda.workers`` entry points of installed packages. Contracts are a shared vocabulary: those of every
``eda.contracts`` entry point are loaded beside the app's own, so a worker may handle another
package's events.

This module only imports; it knows nothing of workers or contracts, so that the contract registry
(which loads the app on a miss) and ``eda.discovery`` (which lists the app's workers) both build on it.
"""

import importlib
import logging
import os
import pkgutil
import sys
from dataclasses import dataclass
from importlib.metadata import entry_points
from types import ModuleType

from eda.errors import ConfigError, DefinitionError

log = logging.getLogger("eda.discovery")

WORKERS, CONTRACTS = "eda.workers", "eda.contracts"


@dataclass(frozen=True)
class App:
    """What loading the app imported: the app's modules (packages' submodules included), or, where no
    module is named, the objects the ``eda.workers`` entry points name, each with its entry point
    (``name (module:attribute)``)."""

    modules: tuple[ModuleType, ...] = ()
    entry_points: tuple[tuple[str, object], ...] = ()


_app: str | None = None  # set by --app; None: EDA_APP
_loaded: App | None = None


def use_app(app: str | None) -> None:
    """The modules ``--app`` named (comma-separated); they win over EDA_APP. Call before ``load``."""
    global _app
    _app = app


def app_modules() -> list[str]:
    text = _app if _app is not None else os.environ.get("EDA_APP", "")
    return [name.strip() for name in text.split(",") if name.strip()]


def _import(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        if exc.name and name.startswith(exc.name):
            raise ConfigError(f"--app (EDA_APP): cannot import {name!r}: {exc}") from None
        raise ConfigError(f"--app (EDA_APP): importing {name!r} failed: {type(exc).__name__}: {exc}") from None
    except SyntaxError as exc:
        raise ConfigError(f"--app (EDA_APP): {name!r} is not valid Python: {exc}") from None


def _with_submodules(module: ModuleType) -> list[ModuleType]:
    """A module, and the public submodules of a package, imported."""
    return [module] + [_import(f"{module.__name__}.{info.name}")
                       for info in pkgutil.iter_modules(getattr(module, "__path__", ()))
                       if not info.name.startswith("_")]


def load() -> App:
    """Import the app modules (or, with none named, the workers' entry points) and the contracts' entry
    points, once; a broken entry point is a warning, not an end."""
    global _loaded
    if _loaded is not None:
        return _loaded
    _loaded = App()  # a module imported below may look a contract up: that must not load again
    try:
        _loaded = _load()
    except BaseException:
        _loaded = None  # nothing counts as loaded: the next call imports again, and says the error again
        raise
    return _loaded


def _load() -> App:
    """What ``load`` imports, each time it is called until it succeeds."""
    names = app_modules()
    if names and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    modules = [m for name in names for m in _with_submodules(_import(name))]
    for ep in entry_points(group=CONTRACTS):
        try:
            ep.load()  # importing the module registers its contracts
        except DefinitionError:
            raise
        except Exception as exc:  # one broken plug-in must not stop the others
            log.warning("cannot load contracts entry point %s (%s): %s", ep.name, ep.value, exc)
    loaded = []
    if not names:  # the app named is the app: installed packages' workers are not its workers
        for ep in entry_points(group=WORKERS):
            try:
                loaded.append((f"{ep.name} ({ep.value})", ep.load()))
            except DefinitionError:
                raise  # a worker defined wrongly (two handlers of one type): said at once, as for contracts
            except Exception as exc:  # e.g. a project's own `workers` package shadows the plug-in's
                log.warning("cannot load worker entry point %s (%s): %s", ep.name, ep.value, exc)
    return App(tuple(modules), tuple(loaded))
