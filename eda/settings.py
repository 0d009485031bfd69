"""The framework's settings object, built from ``EDA_*`` variables and CLI options in one place.

Each setting is declared once in ``SPECS``: its environment variable, default and help. A worker's
own settings (a gateway URL, a threshold) are declared by the worker (``eda.worker_settings``). The CLI turns
the specs into click options (so ``--help`` shows both), and ``Settings.from_env`` reads the same
variables for code that runs without the CLI.
"""

import ipaddress
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from eda.errors import ConfigError
from eda.names import check_namespace, parse_delay

DEFAULT_BROKER_URL = "amqp://guest:guest@localhost:5672//"
MAX_SECONDS = 365 * 24 * 3600.0  # the longest timeout or window: past it, thread and socket waits overflow
MAX_CONCURRENCY = 1000
MAX_PROCESSES = 128  # a broker connection and ~35 MB of memory each


@dataclass(frozen=True)
class Spec:
    """How one setting is named on the command line and in the environment."""

    name: str
    env: str
    default: object
    help: str
    choices: tuple = ()
    secret: bool = False
    low: float | None = None  # the smallest and largest number the setting takes (both included)
    high: float | None = None
    why: str = ""  # why ``high`` is where it is, for the error message

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")


SPECS = {
    spec.name: spec
    for spec in (
        Spec("broker_url", "EDA_BROKER_URL", DEFAULT_BROKER_URL,
             "AMQP URL of the broker, or of several separated by ';' (the first that answers is used, another "
             "when it goes away); prefer the variable or --broker-url-file, which ps does not show.",
             secret=True),
        Spec("broker_url_file", "EDA_BROKER_URL_FILE", None,
             "File holding the broker URL (a docker or systemd secret); wins over the URL."),
        Spec("namespace", "EDA_NAMESPACE", "eda", "Prefix of every exchange and queue name."),
        Spec("state_dir", "EDA_STATE_DIR", None,
             "Where workers keep their state [default: $XDG_STATE_HOME/eda or ~/.local/state/eda]."),
        Spec("database_url", "EDA_DATABASE_URL", None,
             "postgresql://... URL of the database holding every worker's state (several instances, several "
             "hosts); unset: SQLite under the state folder. Prefer the variable or --database-url-file.",
             secret=True),
        Spec("database_url_file", "EDA_DATABASE_URL_FILE", None,
             "File holding the database URL (a docker or systemd secret); wins over the URL."),
        Spec("log_format", "EDA_LOG_FORMAT", "json", "Log lines as JSON, or text for people.",
             choices=("json", "text")),
        Spec("log_level", "EDA_LOG_LEVEL", "INFO", "Least severe level logged.",
             choices=("DEBUG", "INFO", "WARNING", "ERROR")),
        Spec("prefetch", "EDA_PREFETCH", 100, "Deliveries held unacked per worker (at least the concurrency).",
             low=1, high=65535, why="basic.qos carries a 16-bit count"),
        Spec("concurrency", "EDA_CONCURRENCY", 4, "Handlers running at once per worker.",
             low=1, high=MAX_CONCURRENCY, why="a thread each"),
        Spec("processes", "EDA_PROCESSES", 1,
             "Worker processes, each running the named workers with its own connection, under one parent that "
             "restarts them; auto: one per core this process may use (affinity and cgroup quota); 1: no parent.",
             low=1, high=MAX_PROCESSES, why="a broker connection and ~35 MB of memory each"),
        Spec("retry_delays", "EDA_RETRY_DELAYS", "1s,5s,30s,2m,10m",
             "Delays between attempts of a failing event, comma-separated; empty: no retries."),
        Spec("shutdown_timeout", "EDA_SHUTDOWN_TIMEOUT", 30.0,
             "Seconds running handlers get to finish after SIGTERM, SIGINT or SIGHUP.",
             low=0, high=MAX_SECONDS, why="a year"),
        Spec("reconnect_window", "EDA_RECONNECT_WINDOW", 60.0,
             "Seconds a worker keeps trying to reach a lost broker before it exits non-zero.",
             low=0, high=MAX_SECONDS, why="a year"),
        Spec("heartbeat", "EDA_HEARTBEAT", 30,
             "Seconds between AMQP heartbeats; a broker silent for two of them counts as lost (0: no heartbeats, "
             "a silent broker found only by TCP).",
             low=0, high=65535, why="AMQP carries a 16-bit heartbeat"),
        Spec("queue_type", "EDA_QUEUE_TYPE", "classic",
             "RabbitMQ type of the work queues; quorum adds a delivery limit against crash loops.",
             choices=("classic", "quorum")),
        Spec("delivery_limit", "EDA_DELIVERY_LIMIT", 20,
             "Quorum work queues dead-letter an event delivered this many times (a crash loop).",
             low=1, high=2**31 - 1, why="RabbitMQ's limit"),
        Spec("partitions", "EDA_PARTITIONS", 8,
             "Partition queues of each ordered worker (ordered_by): its events are spread over them by key; every "
             "instance of the worker must use the same number.",
             low=1, high=1000, why="a channel each"),
        Spec("metrics_port", "EDA_METRICS_PORT", None,
             "Serve Prometheus metrics on this port at /metrics; unset: no metrics server."),
        Spec("middleware", "EDA_MIDDLEWARE", None,
             "Process-wide middleware around handling and publishing (README, 'Middleware'): import paths "
             "module:name, comma-separated, each an eda.Middleware, a Middleware class (made without "
             "arguments) or a list of them; modules are found as --app's are."),
        Spec("metrics_address", "EDA_METRICS_ADDRESS", "0.0.0.0",
             "Address the metrics server listens on: 0.0.0.0 every IPv4 interface, :: every interface, "
             "127.0.0.1 this host only."),
    )
}


PASSWORD_PARAMETER = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&;]*)", re.IGNORECASE)


def _without_password(url: str) -> str:
    """A database URL with its password replaced, wherever it stands: in the user part, as a query
    parameter (``?password=``) or in a libpq ``key=value`` string; not shown where it cannot be parsed."""
    url = PASSWORD_PARAMETER.sub(r"\1***", url)
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.netloc.rpartition("@")[2]
        return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))
    except ValueError:
        return "<database URL not shown: it cannot be parsed>"


def redact_url(url: str) -> str:
    """The URL with its password replaced, for logs and messages; never raises. A URL that cannot be
    parsed is not shown at all, since any part of it may be the password."""
    if broker_url_problem(url):
        return "<broker URL not shown: it cannot be parsed>"
    shown = []
    for part in url.split(";"):  # kombu's failover list: amqp://h1//;amqp://h2//
        try:
            parts = urlsplit(part)
            parts.port  # noqa: B018 (raises ValueError where the port is not a number)
        except ValueError:
            return "<broker URL not shown: it cannot be parsed>"
        if parts.password is not None:
            host = parts.netloc.rsplit("@", 1)[1]
            userinfo = f"{parts.username}:***" if parts.username else ":***"
            part = urlunsplit(parts._replace(netloc=f"{userinfo}@{host}"))
        shown.append(part)
    return ";".join(shown)


BROKER_SCHEMES = ("amqp", "amqps", "pyamqp", "memory")
URL_HINT = ("percent-encode special characters of the user name and password: / ? # @ ; : % [ ] as "
            "%2F %3F %23 %40 %3B %3A %25 %5B %5D")


def broker_url_problem(url: str) -> str | None:
    """What keeps kombu from using ``url`` as its user meant, told without any part of the URL (a
    password with a ``/``, ``#``, ``?`` or ``;`` makes the rest of it look like a host, port or path)."""
    for part in url.split(";"):  # kombu splits failover URLs at ';', a password's ';' included
        try:
            parts = urlsplit(part.strip())
            parts.port  # noqa: B018 (raises ValueError for a port that is not a number)
        except ValueError:
            return "its host and port cannot be parsed"
        if parts.scheme not in BROKER_SCHEMES:
            return f"it does not start with {', '.join(s + '://' for s in BROKER_SCHEMES)}"
        if "@" in part.split("//", 1)[-1][len(parts.netloc):]:
            return "an '@' follows the host"
    return None


def _check_broker_url(url: str, file: str | None = None) -> None:
    """A URL kombu cannot use is a one-line error naming the setting, or the file it was read from
    (never echoing any of the URL)."""
    problem = "the file is empty" if file and not url else broker_url_problem(url)
    if problem:
        where = f"--broker-url-file (EDA_BROKER_URL_FILE) {file}" if file else "--broker-url (EDA_BROKER_URL)"
        hint = "" if problem == "the file is empty" else f"; {URL_HINT}"
        raise ConfigError(f"{where}: not a broker URL like amqp://user:password@host:5672/vhost ({problem}){hint}")


HOST_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*")


def _check_address(address: str) -> str:
    """An IP address or host name to listen on."""
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        if len(address) <= 253 and HOST_NAME.fullmatch(address):
            return address
    shown = address if len(address) <= 60 else f"{address[:60]}..."
    raise ConfigError(f"--metrics-address (EDA_METRICS_ADDRESS): {shown!r} is not an IP address or host name")


def _check_range(name: str, value) -> None:
    spec = SPECS.get(name)
    if spec is None or spec.low is None:
        return
    where = f"{spec.option} ({spec.env})"
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: must be a finite number, not {value!r}")
    if value < spec.low:
        raise ConfigError(f"{where}: must be at least {_number(spec.low)}")
    if spec.high is not None and value > spec.high:
        why = f" ({spec.why})" if spec.why else ""
        raise ConfigError(f"{where}: must be at most {_number(spec.high)}{why}, not {_number(value)}")


def _number(x) -> str:
    text = str(int(x)) if isinstance(x, int) or (abs(x) < 1e15 and float(x).is_integer()) else repr(x)
    return text if len(text) <= 30 else f"{text[:30]}..."


def _port(value, spec: Spec) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{spec.option} ({spec.env}): not a port number: {value!r}") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"{spec.option} ({spec.env}): {port} is not a port number (0-65535)")
    return port


def _processes(value):
    """``auto`` as the cores this process may use; anything else is left to the number checks."""
    if not isinstance(value, str) or not value.strip():
        return value  # unset: the default
    text = value.strip().lower()
    if text == "auto":
        from eda.cores import available_cores

        return min(available_cores(), MAX_PROCESSES)
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        shown = value if len(value) <= 30 else f"{value[:30]}..."
        raise ConfigError(f"--processes (EDA_PROCESSES): {shown!r} is neither a number of processes nor auto")
    return int(text)


def _read_secret(spec: Spec, path) -> str:
    """A URL kept in a file (a docker or systemd secret), or a one-line error naming the option."""
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{spec.option}: cannot read {path}: {exc.strerror}") from None


def _worker_options(given) -> Mapping:
    """``worker_options`` as a mapping worker -> {setting: value} of its own (plain dicts: Settings may be
    pickled to another process), or a one-line error."""
    if not isinstance(given, Mapping) or not all(isinstance(w, str) and isinstance(v, Mapping)
                                                 for w, v in given.items()):
        raise ConfigError(f"worker_options: a mapping of worker name to {{setting name: value}} "
                          f"(e.g. {{'inventory': {{'stock_threshold': 3}}}}), not {given!r:.80}")
    return {worker: dict(values) for worker, values in given.items()}


def _default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "eda"


@dataclass(frozen=True)
class Settings:
    """Everything a producer or worker is configured with; immutable once built."""

    broker_url: str = DEFAULT_BROKER_URL
    broker_url_file: str | None = None
    database_url: str | None = None
    database_url_file: str | None = None
    namespace: str = "eda"
    state_dir: Path | None = None
    log_format: str = "json"
    log_level: str = "INFO"
    prefetch: int = 100
    concurrency: int = 4
    processes: int = 1
    retry_delays: str = "1s,5s,30s,2m,10m"
    shutdown_timeout: float = 30.0
    reconnect_window: float = 60.0
    heartbeat: int = 30
    queue_type: str = "classic"
    delivery_limit: int = 20
    partitions: int = 8
    metrics_port: int | None = None
    metrics_address: str = "0.0.0.0"
    middleware: str | None = None  # import paths, resolved by eda.middleware.from_settings where it runs
    # Values of the workers' own settings given explicitly, worker name -> {setting name: value} (``eda
    # worker`` fills it from its options; a test passes it). A worker declares those settings itself
    # (eda.worker_settings), which reads its EDA_<WORKER>_<SETTING> variables where no value is given.
    worker_options: Mapping = field(default_factory=dict, hash=False)
    # Where those variables are read: the process environment as Settings.from_env found it; none for
    # Settings built by hand, which read no variable at all (so a shell's EDA_* never reaches a TestBus).
    environ: Mapping = field(default_factory=dict, hash=False, compare=False, repr=False)

    def __post_init__(self):
        # Values arrive as strings from the environment: coerce and check them here, once.
        object.__setattr__(self, "processes", _processes(self.processes))
        for f in fields(self):
            if f.name not in SPECS:
                continue
            value = getattr(self, f.name)
            spec = SPECS[f.name]
            if value is None or (value == "" and f.name != "retry_delays"):
                object.__setattr__(self, f.name, spec.default)
                continue
            kind = type(spec.default) if spec.default is not None else str
            if kind in (int, float) and not isinstance(value, kind):
                try:
                    value = kind(value)
                except (TypeError, ValueError):
                    raise ConfigError(f"{spec.option} ({spec.env}): not a number: {value!r}") from None
                object.__setattr__(self, f.name, value)
            if spec.choices and str(value).lower() not in [c.lower() for c in spec.choices]:
                raise ConfigError(f"{spec.option} ({spec.env}): {value!r} is not one of {', '.join(spec.choices)}")
        if self.broker_url_file:
            object.__setattr__(self, "broker_url", _read_secret(SPECS["broker_url_file"], self.broker_url_file))
        _check_broker_url(self.broker_url, self.broker_url_file)
        if self.database_url_file:
            object.__setattr__(self, "database_url",
                               _read_secret(SPECS["database_url_file"], self.database_url_file) or None)
        object.__setattr__(self, "state_dir", Path(self.state_dir) if self.state_dir else _default_state_dir())
        object.__setattr__(self, "log_format", self.log_format.lower())
        object.__setattr__(self, "log_level", self.log_level.upper())
        object.__setattr__(self, "queue_type", self.queue_type.lower())
        for f in fields(self):
            _check_range(f.name, getattr(self, f.name))
        check_namespace(self.namespace)
        if self.metrics_port is not None:
            object.__setattr__(self, "metrics_port", _port(self.metrics_port, SPECS["metrics_port"]))
        object.__setattr__(self, "metrics_address", _check_address(str(self.metrics_address).strip()))
        self.retry_delays_ms  # parse now, so a bad value fails at start and not at the first failure
        object.__setattr__(self, "worker_options", _worker_options(self.worker_options))

    @classmethod
    def from_env(cls, environ=None, **overrides) -> "Settings":
        """Settings from ``EDA_*`` variables, with explicit values (e.g. CLI options) winning; the
        workers' own settings read their variables from the same environment."""
        environ = dict(os.environ if environ is None else environ)  # a plain dict: Settings may be pickled
        values = {name: environ.get(spec.env) for name, spec in SPECS.items()}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**{k: v for k, v in values.items() if v is not None}, environ=environ)

    def __repr__(self) -> str:
        """The settings with no password in them (a repr ends up in test failures and debug logs)."""
        shown = {f.name: getattr(self, f.name) for f in fields(self) if f.repr}
        shown["broker_url"] = redact_url(self.broker_url)
        shown["database_url"] = self.safe_database_url
        return f"Settings({', '.join(f'{name}={value!r}' for name, value in shown.items())})"

    def with_(self, **changes) -> "Settings":
        return replace(self, **changes)

    @property
    def effective_prefetch(self) -> int:
        return max(self.prefetch, self.concurrency)

    @property
    def retry_delays_ms(self) -> tuple[int, ...]:
        text = self.retry_delays.strip()
        if not text:
            return ()
        try:
            return tuple(parse_delay(part) for part in text.split(","))
        except ValueError as exc:
            raise ConfigError(f"--retry-delays (EDA_RETRY_DELAYS): {exc}") from None

    @property
    def safe_database_url(self) -> str | None:
        """The database URL with its password masked, or None where state stays in SQLite."""
        return _without_password(self.database_url) if self.database_url else None

    @property
    def safe_broker_url(self) -> str:
        return redact_url(self.broker_url)
