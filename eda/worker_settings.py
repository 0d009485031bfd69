"""Settings a worker declares for itself: each an option of ``eda worker`` and an ``EDA_*`` variable,
offered in ``--help`` only when that worker is named.

    class Inventory(Worker):
        stock_threshold = Setting(5, "Publish inventory.depleted when a SKU's stock falls to or below this.")

``self.stock_threshold`` is then the value: the option given to ``eda worker`` (or in
``Settings.worker_options``), else ``EDA_STOCK_THRESHOLD``, else the default. A value that is not of
the setting's type fails when the worker starts, as a one-line error naming the option and variable.
"""

import builtins
import math
import os

from eda.errors import ConfigError

METAVARS = {int: "INTEGER", float: "NUMBER", bool: "BOOLEAN", str: "TEXT"}
EXPECTED = {int: "an integer", float: "a number", bool: "true or false"}
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


class Setting:
    """One setting of a worker: a default, a help line, a type (that of the default unless given)."""

    def __init__(self, default=None, help: str = "", *, type: type | None = None, env: str | None = None,
                 low=None, high=None):
        self.default = default
        self.low, self.high = low, high  # bounds of a number, checked when the worker starts
        self.help = help
        self.type = type or (builtins.type(default) if default is not None else str)
        self.env = env
        self.name = ""

    def __set_name__(self, owner, name: str) -> None:
        self.name = name
        self.env = self.env or f"EDA_{name.upper()}"

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def metavar(self) -> str:
        return METAVARS.get(self.type, "TEXT")

    def parse(self, raw):
        """The value of a raw string (from an option or variable), or the default when there is none."""
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
        raise ConfigError(f"{self.option} ({self.env}): not {EXPECTED.get(self.type, 'valid')}: {raw!r}")

    def checked(self, value):
        """``value`` within the setting's bounds, or a one-line ConfigError naming the option."""
        if value is None or self.type not in (int, float):
            return value
        where = f"{self.option} ({self.env})"
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{where}: must be a finite number, not {value!r}")
        if self.low is not None and value < self.low:
            raise ConfigError(f"{where}: must be at least {self.low}")
        if self.high is not None and value > self.high:
            raise ConfigError(f"{where}: must be at most {self.high}, not {value}")
        return value

    def __get__(self, worker, cls):
        if worker is None:
            return self
        values = worker.__dict__.setdefault("_eda_setting_values", {})
        if self.name not in values:
            given = dict(getattr(worker.settings, "worker_options", ())).get(self.name)
            values[self.name] = self.checked(self.parse(given if given is not None else os.environ.get(self.env)))
        return values[self.name]


def declared(worker_class) -> list[Setting]:
    """The settings a worker class declares (its bases' too), in the order they were declared."""
    found = {}
    for klass in reversed(worker_class.__mro__):
        for value in vars(klass).values():
            if isinstance(value, Setting):
                found[value.name] = value
    return list(found.values())
