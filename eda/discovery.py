"""Finding named workers: the modules of the ``workers`` package and the ``eda.workers`` entry points,
so a separate package can add a worker without editing this repository."""

import importlib
import logging
import pkgutil
from importlib.metadata import entry_points

from eda.errors import UnknownWorker
from workers.base import Worker

log = logging.getLogger("eda.registry")


def _from_package() -> list[type]:
    import workers

    found = []
    for info in pkgutil.iter_modules(workers.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"workers.{info.name}")
        found += [v for v in vars(module).values()
                  if isinstance(v, type) and issubclass(v, Worker) and v.name and v.__module__ == module.__name__]
    return found


def _from_entry_points() -> list[type]:
    found = []
    for ep in entry_points(group="eda.workers"):
        try:
            cls = ep.load()
        except Exception as exc:  # one broken plug-in must not stop the others
            log.warning("cannot load worker entry point %s: %s", ep.name, exc)
            continue
        if isinstance(cls, type) and issubclass(cls, Worker) and cls.name:
            found.append(cls)
    return found


def discover() -> dict[str, type]:
    """Every known worker class by name; the package's own win over entry points of the same name."""
    workers = {}
    for cls in _from_entry_points() + _from_package():
        workers[cls.name] = cls
    return dict(sorted(workers.items()))


def get(name: str) -> type:
    known = discover()
    if name not in known:
        raise UnknownWorker(f"unknown worker {name!r}; known workers: {', '.join(known) or 'none'}")
    return known[name]


def consumers_of(event_type: str) -> list[str]:
    return [name for name, cls in discover().items() if event_type in cls.handlers]
