"""The app's workers: the named ``Worker`` classes its modules define or import, or, where no module is
named, those of installed packages' ``eda.workers`` entry points (``eda.app`` imports them).

Commands that list workers (``eda status``, ``eda dlq list``, ``eda topology declare``) concern the
app's workers only, never every worker some installed package ships. Discovery runs once per
process; eda itself imports no project, not even its reference shop.
"""

import logging

from eda import app
from eda.app import app_modules, use_app  # noqa: F401  (what commands call before discovering)
from eda.errors import DefinitionError, UnknownWorker
from eda.worker import Worker
from eda.worker_checks import nameless_with_handlers

log = logging.getLogger("eda.discovery")

_workers: dict[str, type[Worker]] = {}
_from: app.App | None = None  # the load the catalogue was made from


def _add(cls, where: str) -> None:
    if nameless_with_handlers(cls):
        raise DefinitionError(f"{cls.__module__}.{cls.__qualname__} ({where}): a worker with handlers needs a name "
                              f"(name = \"...\"): its queue, variables and log lines are named after it")
    if not (isinstance(cls, type) and issubclass(cls, Worker) and cls.name):
        return
    known = _workers.get(cls.name)
    if known is not None and known is not cls:
        if f"{known.__module__}.{known.__qualname__}" == f"{cls.__module__}.{cls.__qualname__}":
            return  # the same class reached twice
        raise DefinitionError(f"two workers are named {cls.name!r}: {known.__module__}.{known.__qualname__} "
                              f"and {cls.__module__}.{cls.__qualname__} ({where})")
    _workers[cls.name] = cls


def load() -> None:
    """Load the app (``eda.app.load``) and list its workers, once."""
    global _from
    loaded = app.load()
    if loaded is _from:
        return
    _workers.clear()
    for module in loaded.modules:
        for value in list(vars(module).values()):
            _add(value, module.__name__)
    for entry_point, cls in loaded.entry_points:
        try:
            cls.handlers  # every contract source is loaded now: its event names must resolve
        except DefinitionError:
            raise  # two handlers of one type: the package's mistake, said at once
        except Exception as exc:  # e.g. a project's own `workers` package shadows the plug-in's
            log.warning("cannot load worker entry point %s: %s", entry_point, exc)
            continue
        _add(cls, f"entry point {entry_point.split()[0]}")
    _from = loaded  # only a complete catalogue counts as made: an error above is raised again at each call


def discover() -> dict[str, type[Worker]]:
    """Every known worker class by name."""
    load()
    return dict(sorted(_workers.items()))


def get(name: str) -> type[Worker]:
    known = discover()
    if name not in known:
        raise UnknownWorker(f"unknown worker {name!r}; known workers: {', '.join(known) or 'none'}")
    return known[name]


def consumers_of(event_type: str) -> list[str]:
    return [name for name, cls in discover().items() if event_type in cls.handlers]
