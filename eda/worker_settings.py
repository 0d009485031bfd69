"""Settings a worker declares for itself, named after the worker so they never share eda's or another
worker's option or variable.

    class Inventory(Worker):
        name = "inventory"
        stock_threshold = Setting(5, "Publish inventory.depleted when a SKU's stock falls to or below this.")

``self.stock_threshold`` is then the value given for this worker (``eda worker inventory
--stock-threshold 3``, or ``Settings(worker_options={"inventory": {"stock_threshold": 3}})``), else
the variable ``EDA_INVENTORY_STOCK_THRESHOLD`` (for settings read by ``Settings.from_env``: a
``Settings`` built by hand, a TestBus's, reads no variable), else the default. ``eda worker a b``, where both
declare a setting of one name, offers ``--a-<setting>`` and ``--b-<setting>`` instead of the bare
option. A setting whose option or variable would be eda's own (``--concurrency``) is a start error
(``check``); a value that is not of the setting's type fails when the worker starts, as a one-line
error naming the option and variable, and so does no value (or an empty one) for a setting declared
``required=True``.
"""

import builtins
import math
import re
from collections.abc import Mapping
from typing import Any, Generic, Literal, TypeVar, overload

from eda.errors import ConfigError, DefinitionError
from eda.settings import SPECS

METAVARS = {int: "INTEGER", float: "NUMBER", bool: "BOOLEAN", str: "TEXT"}
EXPECTED = {int: "an integer", float: "a number", bool: "true or false"}
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
T = TypeVar("T")

# eda's own options and variables (those of eda/settings.py, and the CLI's --app, --help, --version):
# a worker's setting may take none of them.
FRAMEWORK_OPTIONS = {**{spec.option: spec.env for spec in SPECS.values()},
                     "--app": "EDA_APP", "--help": None, "--version": None}
FRAMEWORK_VARIABLES = {variable: option for option, variable in FRAMEWORK_OPTIONS.items() if variable}


def _upper(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", text).upper()


def variable_name(worker: str, setting: str) -> str:
    """``EDA_<WORKER>_<SETTING>``: upper case, any character but a letter or digit as ``_``."""
    return f"EDA_{_upper(worker)}_{_upper(setting)}"


def prefixed_option(worker: str, setting: str) -> str:
    """``--<worker>-<setting>``: the option of a setting that several workers started together declare."""
    return "--" + re.sub(r"[^A-Za-z0-9]", "-", f"{worker}-{setting}").lower()


class Setting(Generic[T]):
    """One setting of a worker: a default, a help line, a type (that of the default unless given).

    Typed for a type checker by what it gives (``Setting[int]``): the default's type (``Setting(5)``),
    or ``type`` (``Setting(30, type=float)``); a setting without a default gives None when unset
    (``Setting(None)`` is a ``Setting[str | None]``, ``Setting(None, type=int)`` a ``Setting[int | None]``).

    ``env`` names a variable outside eda's ``EDA_*`` names to read instead of ``EDA_<WORKER>_<SETTING>``:
    for a value a platform or another tool already provides under a name of its own (a vendor's API
    URL, a variable every service of a host reads). Workers naming one ``env`` share it on purpose.

    ``required=True`` (no default then) makes a missing or empty value a start error naming the option
    and variable, instead of None: ``Setting(help="Billing API URL.", required=True)`` is a
    ``Setting[str]``, ``Setting(type=int, required=True)`` a ``Setting[int]``."""

    @overload
    def __init__(self: "Setting[T]", default: None = None, help: str = "", *, type: "builtins.type[T]",
                 required: Literal[True], env: str | None = None, low: Any = None, high: Any = None) -> None: ...

    @overload
    def __init__(self: "Setting[str]", default: None = None, help: str = "", *, type: None = None,
                 required: Literal[True], env: str | None = None, low: Any = None, high: Any = None) -> None: ...

    @overload
    def __init__(self: "Setting[T | None]", default: None = None, help: str = "", *, type: "builtins.type[T]",
                 env: str | None = None, low: Any = None, high: Any = None) -> None: ...

    @overload
    def __init__(self: "Setting[T]", default: T, help: str = "", *, type: "builtins.type[T]",
                 env: str | None = None, low: Any = None, high: Any = None) -> None: ...

    @overload
    def __init__(self: "Setting[str | None]", default: None = None, help: str = "", *, type: None = None,
                 env: str | None = None, low: Any = None, high: Any = None) -> None: ...

    @overload
    def __init__(self: "Setting[T]", default: T, help: str = "", *, type: None = None, env: str | None = None,
                 low: Any = None, high: Any = None) -> None: ...

    def __init__(self, default: Any = None, help: str = "", *, type: "builtins.type[Any] | None" = None,
                 required: bool = False, env: str | None = None, low: Any = None, high: Any = None) -> None:
        if env is not None and (not env or env.upper().startswith("EDA_")):
            raise DefinitionError(f"Setting(env={env!r}): EDA_* variables are eda's; leave env unset to read "
                                  f"EDA_<WORKER>_<SETTING>, or name a variable of your own")
        if required and default is not None:
            raise DefinitionError(f"Setting({default!r}, required=True): a required setting has no default; "
                                  f"drop one or the other")
        self.required = required
        self.default = default
        self.low, self.high = low, high  # bounds of a number, checked when the worker starts
        self.help = help
        self.type = type or (builtins.type(default) if default is not None else str)
        self.env = env
        self.name = ""

    def __set_name__(self, owner, name: str) -> None:
        self.name = name

    @property
    def option(self) -> str:
        """``--<setting>``, its option under ``eda worker NAME``."""
        return "--" + self.name.replace("_", "-")

    def variable(self, worker: str) -> str:
        """The environment variable this setting of the named worker reads."""
        return self.env or variable_name(worker, self.name)

    @property
    def metavar(self) -> str:
        return METAVARS.get(self.type, "TEXT")

    def parse(self, raw, where: str = ""):
        """The value of a raw string (from an option or variable), or the default when there is none;
        ``where`` names the option and variable in the error."""
        if raw is None or raw == "":
            return self.default
        if isinstance(raw, self.type) and not (isinstance(raw, bool) and self.type is not bool):
            return raw
        text = str(raw).strip()
        if self.type is bool:
            if text.lower() in TRUE + FALSE:
                return text.lower() in TRUE
        else:
            try:
                return self.type(text)
            except (TypeError, ValueError):
                pass
        raise ConfigError(f"{where or self.option}: not {EXPECTED.get(self.type, 'valid')}: {raw!r}")

    def checked(self, value, where: str = ""):
        """``value`` within the setting's bounds, or a one-line ConfigError naming the option."""
        if value is None or self.type not in (int, float):
            return value
        where = where or self.option
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{where}: must be a finite number, not {value!r}")
        if self.low is not None and value < self.low:
            raise ConfigError(f"{where}: must be at least {self.low}")
        if self.high is not None and value > self.high:
            raise ConfigError(f"{where}: must be at most {self.high}, not {value}")
        return value

    @overload
    def __get__(self, worker: None, cls: "builtins.type[Any] | None" = None) -> "Setting[T]": ...

    @overload
    def __get__(self, worker: object, cls: "builtins.type[Any] | None" = None) -> T: ...

    def __get__(self, worker: Any, cls: "builtins.type[Any] | None" = None) -> Any:
        """The worker's value (see the module docstring), read once; on the class, the setting itself."""
        if worker is None:
            return self
        values = worker.__dict__.setdefault("_eda_setting_values", {})
        if self.name not in values:
            where = f"{self.option} ({self.variable(worker.name)})"
            value = self.checked(self.parse(self.raw(worker.settings, worker.name), where), where)
            if self.required and (value is None or isinstance(value, str) and not value.strip()):
                raise ConfigError(self.missing(worker.name, self.option, worker.settings))
            values[self.name] = value
        return values[self.name]

    def raw(self, settings, worker: str):
        """What was given for this setting of the named worker: its ``worker_options`` value (the option
        under ``eda worker``), else its variable's in the settings' environment, else None."""
        given = given_values(settings, worker).get(self.name)
        return given if given is not None else getattr(settings, "environ", {}).get(self.variable(worker))

    def missing(self, worker: str, option: str, settings=None) -> str:
        """The error of a required setting given no value (or an empty one); where the settings read
        no variable (built by hand, a TestBus's), it says how to give one."""
        where = "" if settings is None or getattr(settings, "environ", None) else \
            " (these settings read no variable: give it in worker_options, or use Settings.from_env())"
        return (f"{option} ({self.variable(worker)}): worker {worker!r} requires a value for its setting "
                f"{self.name!r}, and none was given{where}")


def declared(worker_class) -> "list[Setting[Any]]":
    """The settings a worker class declares (its bases' too), in the order they were declared."""
    found = {}
    for klass in reversed(worker_class.__mro__):
        for value in vars(klass).values():
            if isinstance(value, Setting):
                found[value.name] = value
    return list(found.values())


def given_values(settings, worker: str) -> Mapping:
    """The values ``settings.worker_options`` gives the named worker's settings ({} when none)."""
    return (getattr(settings, "worker_options", None) or {}).get(worker) or {}


def options(worker_classes) -> dict[tuple[str, str], str]:
    """(worker, setting) -> the option ``eda worker`` offers for it: ``--<setting>``, or
    ``--<worker>-<setting>`` where several of the workers declare that setting name."""
    classes = list({cls.name: cls for cls in worker_classes}.values())
    owners: dict[str, int] = {}
    for cls in classes:
        for setting in declared(cls):
            owners[setting.name] = owners.get(setting.name, 0) + 1
    return {(cls.name, s.name): prefixed_option(cls.name, s.name) if owners[s.name] > 1 else s.option
            for cls in classes for s in declared(cls)}


def check(worker_classes, settings=None, *, framework_options=()) -> None:
    """Refuse, as a one-line DefinitionError naming both, a setting that would take an option or a
    variable of eda's (``framework_options`` adds a command's own) or share one with another worker's
    setting; and, as a ConfigError, ``worker_options`` naming a worker or setting that is not there,
    or a required setting given no value (by ``worker_options`` or its variable)."""
    classes = list({cls.name: cls for cls in worker_classes}.values())
    taken = {**{option: None for option in framework_options}, **FRAMEWORK_OPTIONS}
    for cls in classes:
        for s in declared(cls):
            if s.option in taken:
                raise DefinitionError(f"worker {cls.name!r}: its setting {s.name!r} would take {s.option}, "
                                      f"which is eda's option {s.option}{_variable_of(taken[s.option])}; "
                                      f"rename the setting")
    variables: dict[str, tuple[str, str]] = {}
    for cls in classes:
        for s in declared(cls):
            variable = s.variable(cls.name)
            if variable in FRAMEWORK_VARIABLES:
                raise DefinitionError(f"worker {cls.name!r}: its setting {s.name!r} would read {variable}, which is "
                                      f"eda's variable of {FRAMEWORK_VARIABLES[variable]}; rename the setting")
            other = variables.setdefault(variable, (cls.name, s.name))
            if other != (cls.name, s.name) and s.env is None:
                raise DefinitionError(f"worker {cls.name!r}: its setting {s.name!r} and worker {other[0]!r}'s setting "
                                      f"{other[1]!r} would both read {variable}; rename one")
    seen: dict[str, tuple[str, str]] = {}
    for (worker, name), option in options(classes).items():
        if option in taken:
            raise DefinitionError(f"worker {worker!r}: its setting {name!r} would take {option}, which is eda's "
                                  f"option {option}{_variable_of(taken[option])}; rename the setting")
        other = seen.setdefault(option, (worker, name))
        if other != (worker, name):
            raise DefinitionError(f"worker {worker!r}: its setting {name!r} and worker {other[0]!r}'s setting "
                                  f"{other[1]!r} would both take {option}; rename one")
    if settings is not None:
        _check_given(classes, settings)
        offered = options(classes)
        for cls in classes:  # a required setting given no value: before any worker is made
            for s in declared(cls):
                if s.required and str(s.raw(settings, cls.name) or "").strip() == "":
                    raise ConfigError(s.missing(cls.name, offered[(cls.name, s.name)], settings))


def _variable_of(variable) -> str:
    return f" ({variable})" if variable else ""


def _check_given(classes, settings) -> None:
    by_name = {cls.name: cls for cls in classes}
    for worker, values in (settings.worker_options or {}).items():
        if worker not in by_name:
            raise ConfigError(f"worker_options: no worker {worker!r} here (workers: {', '.join(by_name) or 'none'})")
        known = {s.name for s in declared(by_name[worker])}
        for name in values:
            if name not in known:
                raise ConfigError(f"worker_options: worker {worker!r} has no setting {name!r} "
                                  f"(its settings: {', '.join(sorted(known)) or 'none'})")
