"""Finding the app's workers and contracts.

The app is the modules named by ``--app`` / ``EDA_APP`` (imported with the current directory first on
the path, as ``flask --app`` does, so a project runs without being installed); where none are named,
it is the workers of installed packages' ``eda.workers`` entry points. Commands that list workers
(``eda status``, ``eda dlq list``, ``eda topology declare``) concern the app's workers only, never every
worker some installed package ships. Contracts are a shared vocabulary: those of every ``eda.contracts``
entry point are known beside the app's own, so a team's worker may handle another package's events.

Discovery runs once per process; eda itself imports no project, not even its reference shop.
"""

import importlib
import logging
import os
import pkgutil
import sys
from importlib.metadata import entry_points

from eda.errors import ConfigError, DefinitionError, UnknownWorker
from eda.worker import Worker

log = logging.getLogger("eda.discovery")

WORKERS, CONTRACTS = "eda.workers", "eda.contracts"

_app: str | None = None  # set by --app; None: EDA_APP
_loaded = False
_workers: dict[str, type] = {}


def use_app(app: str | None) -> None:
    """The modules ``--app`` named (comma-separated); they win over EDA_APP. Call before ``load``."""
    global _app
    _app = app


def app_modules() -> list[str]:
    text = _app if _app is not None else os.environ.get("EDA_APP", "")
    return [name.strip() for name in text.split(",") if name.strip()]


def _add(cls, where: str) -> None:
    if not (isinstance(cls, type) and issubclass(cls, Worker) and cls.name):
        return
    known = _workers.get(cls.name)
    if known is not None and known is not cls:
        if f"{known.__module__}.{known.__qualname__}" == f"{cls.__module__}.{cls.__qualname__}":
            return  # the same class reached twice
        raise DefinitionError(f"two workers are named {cls.name!r}: {known.__module__}.{known.__qualname__} "
                              f"and {cls.__module__}.{cls.__qualname__} ({where})")
    _workers[cls.name] = cls


def _workers_in(module) -> None:
    """The named workers a module defines or imports, and those of its submodules if it is a package."""
    for value in list(vars(module).values()):
        _add(value, module.__name__)
    for info in pkgutil.iter_modules(getattr(module, "__path__", ())):
        if not info.name.startswith("_"):
            sub = _import_app(f"{module.__name__}.{info.name}")
            for value in list(vars(sub).values()):
                _add(value, sub.__name__)


def _import_app(name: str):
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        if exc.name and name.startswith(exc.name):
            raise ConfigError(f"--app (EDA_APP): cannot import {name!r}: {exc}") from None
        raise ConfigError(f"--app (EDA_APP): importing {name!r} failed: {type(exc).__name__}: {exc}") from None
    except SyntaxError as exc:
        raise ConfigError(f"--app (EDA_APP): {name!r} is not valid Python: {exc}") from None


def load() -> None:
    """Import the app modules (or, with none named, the workers' entry points) and the contracts' entry
    points, once; a broken entry point is a warning, not an end."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    modules = app_modules()
    if modules and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for name in modules:
        _workers_in(_import_app(name))
    for ep in entry_points(group=CONTRACTS):
        try:
            ep.load()  # importing the module registers its contracts
        except DefinitionError:
            raise
        except Exception as exc:  # one broken plug-in must not stop the others
            log.warning("cannot load contracts entry point %s (%s): %s", ep.name, ep.value, exc)
    if modules:
        return  # the app named is the app: installed packages' workers are not its workers
    for ep in entry_points(group=WORKERS):
        try:
            cls = ep.load()
            cls.handlers  # every contract source is loaded now: its event names must resolve
        except Exception as exc:  # e.g. a project's own `workers` package shadows the plug-in's
            log.warning("cannot load worker entry point %s (%s): %s", ep.name, ep.value, exc)
            continue
        _add(cls, f"entry point {ep.name}")


def discover() -> dict[str, type]:
    """Every known worker class by name."""
    load()
    return dict(sorted(_workers.items()))


def get(name: str) -> type:
    known = discover()
    if name not in known:
        raise UnknownWorker(f"unknown worker {name!r}; known workers: {', '.join(known) or 'none'}")
    return known[name]


def consumers_of(event_type: str) -> list[str]:
    return [name for name, cls in discover().items() if event_type in cls.handlers]
