"""Lists of middleware: checked where a worker, a producer or a runner is given one, each middleware
once, and the process-wide ones ``EDA_MIDDLEWARE`` names, loaded by import path (eda.middleware)."""

import inspect

from eda.errors import DefinitionError
from eda.middleware.api import Middleware, name_of, overrides


def checked(middleware, where: str) -> list:
    """``middleware`` as a list of Middleware instances, or a DefinitionError naming what is wrong."""
    if isinstance(middleware, Middleware) or isinstance(middleware, type) and issubclass(middleware, Middleware):
        kind = middleware if isinstance(middleware, type) else type(middleware)
        raise DefinitionError(f"{where}: middleware is a list or tuple of instances: ({kind.__name__}(...),) "
                              f"(mind the comma)")
    if isinstance(middleware, (str, bytes)) or not hasattr(middleware, "__iter__"):
        raise DefinitionError(f"{where}: middleware is a list of eda.Middleware instances, not {middleware!r}")
    found = list(middleware)
    for m in found:
        if isinstance(m, type) and issubclass(m, Middleware):
            raise DefinitionError(f"{where}: middleware {name_of(m)} is a class: give an instance, {m.__name__}(...)")
        if not isinstance(m, Middleware):
            raise DefinitionError(f"{where}: {m!r} is not an eda.Middleware")
        for method, coroutine in (("handle", False), ("handle_async", True)):
            if overrides(m, method) and inspect.iscoroutinefunction(getattr(m, method)) != coroutine:
                raise DefinitionError(f"{where}: middleware {name_of(m)}: {method} must be "
                                      f"{'an `async def`' if coroutine else 'a plain `def`'}")
    return found


def unique(middleware) -> list:
    """Each middleware once, in first-seen order (one listed process-wide and by a worker observes once)."""
    seen, found = set(), []
    for m in middleware:
        if id(m) not in seen:
            seen.add(id(m))
            found.append(m)
    return found


def from_settings(settings) -> list:
    """The process-wide middleware ``EDA_MIDDLEWARE`` names (see ``load``)."""
    text = getattr(settings, "middleware", None)
    return load(text) if text else []


def load(text: str) -> list:
    """Middleware from import paths, comma-separated: ``module:name`` (or ``module.name``), naming a
    Middleware instance, a Middleware class (made without arguments) or a list of instances. Modules
    are found as ``--app`` finds them (the current directory first)."""
    import importlib
    import os
    import sys

    from eda import app

    app.load()  # the app's modules first (their contracts, their middleware)
    if os.getcwd() not in sys.path:  # a project's modules are found without installing it, as --app's are
        sys.path.insert(0, os.getcwd())
    found = []
    where = "--middleware (EDA_MIDDLEWARE)"
    for path in (p.strip() for p in text.split(",")):
        if not path:
            continue
        module_name, _, attr = path.partition(":") if ":" in path else path.rpartition(".")
        if not module_name or not attr:
            raise DefinitionError(f"{where}: {path!r} is not module:name")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise DefinitionError(f"{where}: cannot import {module_name!r}: {exc}") from None
        try:
            value = getattr(module, attr)
        except AttributeError:
            raise DefinitionError(f"{where}: module {module_name!r} has no {attr!r}") from None
        if isinstance(value, type) and issubclass(value, Middleware):
            value = value()
        found.extend(checked(value if isinstance(value, (list, tuple)) else [value], f"{where}: {path}"))
    return found
