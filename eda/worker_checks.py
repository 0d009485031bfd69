"""What is checked about worker classes before they consume: a start error (a ``ConfigError``:
``UnknownEvent`` for an event name no contract knows, else ``DefinitionError``; one line and exit 2
under ``eda worker``, raised by ``Runner`` and by ``TestBus`` on enter) rather than events failing one
by one later.

Checked when the class is created (``eda.worker``): a reserved handler name, two ``@handles`` on one
method, two handlers of one event type as written. Checked here, at start: a name, every handler's
signature, every event name resolved (two spellings of one type are two handlers), the workers' own
settings (``eda.worker_settings.check``), and what a kind of worker checks of itself (``eda_check``, a
classmethod: a saga's correlation field).
"""

import inspect

from eda import worker_settings
from eda.errors import DefinitionError
from eda.settings import Settings
from eda.worker import Worker


def check(worker_classes, settings: Settings | None = None) -> None:
    """Refuse what can be known wrong about workers started together: a worker without a name, a
    handler whose signature cannot take ``(event, ctx)``, an event name no contract knows, two handlers
    of one type, a setting taking an option of eda's. Raises DefinitionError, UnknownEvent for an event
    name, or another ConfigError (``settings.worker_options`` naming what is not there)."""
    classes = list(worker_classes)
    for cls in classes:
        if not (isinstance(cls, type) and issubclass(cls, Worker)):
            raise DefinitionError(f"{cls!r} is not a Worker subclass")
        if not cls.name:
            raise DefinitionError(f"{_where(cls)}: a worker needs a name (name = \"...\"): its queue, variables "
                                  f"and log lines are named after it")
        cls.handlers  # every event name resolves, each type has one handler
        for attr in cls._eda_handler_names.values():
            problem = signature_problem(cls, attr)
            if problem:
                raise DefinitionError(f"{_where(cls)}.{attr}: eda calls handlers with (event, ctx); {problem}")
        own = getattr(cls, "eda_check", None)
        if own is not None:  # what a kind of worker checks of itself (a saga: its correlation field)
            own()
    worker_settings.check(classes, settings)


def nameless_with_handlers(cls) -> bool:
    """A Worker subclass with handlers but no name: refused wherever it is found (a team's base class
    without handlers needs no name)."""
    return isinstance(cls, type) and issubclass(cls, Worker) and not cls.name and bool(cls._eda_handler_names)


def signature_problem(cls, attr: str) -> str | None:
    """Why the handler ``attr`` cannot be called with (event, ctx), or None (also where its signature
    cannot be read: a call that fails then is dead-lettered at its first attempt)."""
    static = inspect.getattr_static(cls, attr)
    if isinstance(static, staticmethod):
        target, args = static.__func__, (None, None)
    elif inspect.isfunction(static):  # a method: called bound, with self
        target, args = static, (None, None, None)
    elif isinstance(static, classmethod) or (callable(static) and not hasattr(static, "__get__")):
        target, args = getattr(cls, attr), (None, None)  # bound to the class, or an object called as it is
    else:
        return None
    try:
        signature = inspect.signature(target)  # through functools.wraps to the function wrapped
    except (TypeError, ValueError):
        return None
    try:
        signature.bind(*args)
    except TypeError as exc:
        return _why(attr, signature, len(args) - 2, exc)
    return None


def _why(attr: str, signature: inspect.Signature, bound: int, exc: TypeError) -> str:
    """What about ``attr``'s signature keeps it from taking (event, ctx), the way round a reader looks at
    it: how many of the two it takes, or which parameter it wants that eda does not pass. ``bound``: the
    leading parameters eda fills itself (self)."""
    shown = f"{attr}{signature}"
    every = list(signature.parameters.values())
    params = every[bound:]
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) < 2 and not any(p.kind == p.VAR_POSITIONAL for p in params):
        self_named = f" ({every[0].name} is the worker: self)" if bound and every[0].name != "self" else ""
        return f"{shown} takes {('none', 'only 1')[len(positional)]} of them{self_named}"
    wanted = [p.name for p in positional[2:] if p.default is p.empty] + \
        [p.name for p in params if p.kind == p.KEYWORD_ONLY and p.default is p.empty]
    if wanted:
        them = "it" if len(wanted) == 1 else "them"
        return f"{shown} also wants {', '.join(wanted)}, which eda does not pass: give {them} a default"
    return f"{shown} cannot take them ({exc})"


def _where(cls) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"
