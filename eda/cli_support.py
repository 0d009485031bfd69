"""CLI plumbing shared by the commands in cli.py: settings as options, shell completion, one-line errors."""

import functools
import os
import sys
from collections.abc import Callable
from typing import Any

import click

from eda import logs
from eda.errors import ConfigError, EdaError, UnknownWorker
from eda.settings import SPECS, Settings, redact_url

COMMON = ("broker_url", "broker_url_file", "namespace", "log_format", "log_level")
WORKER = ("state_dir", "database_url", "database_url_file", "prefetch", "concurrency", "processes", "retry_delays", "shutdown_timeout", "reconnect_window",
          "heartbeat", "queue_type", "delivery_limit", "partitions", "metrics_port", "metrics_address",
          "middleware")
METAVARS = {int: "INTEGER", float: "NUMBER"}  # --help shows numbers as numbers; the rest is TEXT
METAVAR_OF = {"metrics_port": "PORT", "metrics_address": "ADDRESS", "state_dir": "PATH", "broker_url_file": "PATH",
             "database_url_file": "PATH", "database_url": "URL", "processes": "N|auto",
             "middleware": "MODULE:NAME[,...]"}
OUTBOX = ("state_dir", "database_url", "database_url_file")  # where the outbox is: PostgreSQL, else SQLite


class Duration(click.ParamType):
    """``500ms``, ``5s``, ``2m``, ``1h`` or plain seconds, as seconds."""

    name = "DURATION"

    def convert(self, value, param, ctx):
        if isinstance(value, (int, float)):
            return float(value)
        from eda.names import parse_delay

        try:
            return parse_delay(str(value)) / 1000
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def settings_options(*names: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add one option per setting (with its ``EDA_*`` variable) and pass the built Settings as ``settings``."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(command)
        def wrapper(*args, **kwargs):
            values = {name: kwargs.pop(name) for name in names}
            settings = Settings.from_env(**values)
            logs.configure(settings.log_format, settings.log_level)
            return command(*args, settings=settings, **kwargs)

        for name in reversed(names):
            spec = SPECS[name]
            default = redact_url(str(spec.default)) if spec.secret and spec.default is not None else spec.default
            wrapper = click.option(
                spec.option, name, envvar=spec.env, show_envvar=True, default=None,
                metavar=None if spec.choices else METAVAR_OF.get(name) or METAVARS.get(type(spec.default)),
                type=click.Choice(spec.choices, case_sensitive=False) if spec.choices else None,
                help=spec.help + (f" [default: {default}]" if default not in (None, "") else ""),
            )(wrapper)
        return wrapper

    return decorate


def columns(rows) -> list[str]:
    """Rows of text cells as lines of aligned columns, two spaces apart; the last cell is not padded (it
    may be long: fields, a description)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)] if rows else []
    return ["  ".join([*(cell.ljust(width) for cell, width in zip(row, widths)), row[-1]]) for row in rows]


def stdout_lines():
    """A printer of lines on stdout that goes on quietly once a reader closed it (``eda publish | head -1``):
    the command's work is not undone, nor redone, for a reader that wanted fewer lines. Later writes
    (lines, log lines) go to /dev/null, as Python's documentation advises for a closed pipe."""
    closed = False

    def echo(line: str) -> None:
        nonlocal closed
        if closed:
            return
        try:
            click.echo(line)  # flushes: a closed pipe shows here
        except BrokenPipeError:
            closed = True
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)

    return echo


def check_event_options(correlation_id: str | None, source: str) -> None:
    """``--correlation-id`` and ``--source`` of a command that builds events, checked as the CloudEvents
    attributes they become: a one-line ConfigError naming the option."""
    from eda.contracts.envelope import check_attribute
    from eda.errors import ContractError

    for option, name, value in (("--correlation-id", "correlationid", correlation_id), ("--source", "source", source)):
        try:
            check_attribute(name, value, required=option == "--source")
        except ContractError as exc:
            raise ConfigError(f"{option}: {exc}") from None


APP_HELP = "Modules to import first (the current directory first on the path): a project's contracts and workers."


def app_option(command):
    """``--app MODULE[,MODULE...]`` on a command that knows events or workers, as on ``eda`` itself."""

    def remember(ctx, param, value):
        if value is not None:
            from eda import discovery

            discovery.use_app(value)

    return click.option("--app", metavar="MODULE[,MODULE...]", expose_value=False, is_eager=True,
                        callback=remember, help=APP_HELP + " [env var: EDA_APP]")(command)


def _app_in(args) -> str | None:
    """The value of ``--app`` among a command's arguments, before click parses them."""
    for i, arg in enumerate(args):
        if arg == "--app" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--app="):
            return arg[len("--app="):]
    return None


OWN = "worker_option__"  # prefix of the parameter names of the workers' own settings


def _worker_names(args) -> list[str]:
    """The worker names among ``eda worker``'s arguments: those that are not options or their values
    (every option but --help takes a value)."""
    names, value_next = [], False
    for arg in args:
        if value_next:
            value_next = False
        elif arg.startswith("-"):
            value_next = arg not in ("-h", "--help") and "=" not in arg
        else:
            names.append(arg)
    return names


class SettingOption(click.Option):
    """The option of one named worker's own setting: ``--<setting>`` (``--<worker>-<setting>`` where
    several named workers declare that setting), read from ``EDA_<WORKER>_<SETTING>`` when not given."""

    def __init__(self, worker: str, setting, option: str, index: int):
        self.worker, self.setting = worker, setting
        shown = " [required]" if setting.required else \
            f" [default: {setting.default}]" if setting.default not in (None, "") else ""
        super().__init__([option, f"{OWN}{index}"], envvar=setting.variable(worker), show_envvar=True, default=None,
                         metavar=setting.metavar, help=f"({worker}) {setting.help}{shown}")

    def value_of(self, raw):
        """The raw value as the setting's type, within its bounds, or a one-line error naming the option."""
        where = f"{self.opts[0]} ({self.envvar})"
        return self.setting.checked(self.setting.parse(raw, where), where)


class WorkerCommand(click.Command):
    """``eda worker NAMES...``: the settings the named workers declare join the command's options, so
    ``eda worker shipping --help`` offers shipping's settings and no other worker's. Two named workers
    declaring one setting name get one prefixed option each; a setting taking one of eda's options or
    variables is a one-line DefinitionError naming both (exit 2)."""

    def parse_args(self, ctx, args):
        ctx.meta["eda.worker_args"] = list(args)  # what each process of --processes N runs again
        ctx.meta["eda.worker_names"] = _worker_names(args)
        app = _app_in(args)
        if app is not None:  # the named workers' settings are looked up while parsing: --app goes first
            from eda import discovery

            discovery.use_app(app)
        return super().parse_args(ctx, args)

    def get_params(self, ctx):
        params = super().get_params(ctx)
        own = ctx.meta.get("eda.worker_params")
        if own is None:
            own = ctx.meta["eda.worker_params"] = self._own_params(ctx.meta.get("eda.worker_names", ()), params)
        helps = params and "--help" in params[-1].opts  # the help option stays last
        return [*params[:-1], *own, params[-1]] if helps else [*params, *own]

    def format_epilog(self, ctx, formatter):
        """``eda worker --help`` names the workers there are to run (the app's, not an example's)."""
        if not ctx.meta.get("eda.worker_names"):
            from eda import discovery

            with formatter.section("Workers (`eda worker NAME --help` shows a worker's own options)"):
                try:
                    workers = discovery.discover()
                except EdaError as exc:
                    formatter.write_text(f"cannot list them: {exc}")
                else:
                    rows = [(name, _kind(cls) + (cls.description or "")) for name, cls in workers.items()]
                    formatter.write_dl(rows) if rows else \
                        formatter.write_text("none found: name the app with --app (EDA_APP)")
        super().format_epilog(ctx, formatter)

    @staticmethod
    def help_path(ctx) -> str:
        """Where a usage error of ``eda worker NAMES`` points: that command's help, which has the named
        workers' own options (``eda worker --help`` has not)."""
        from eda import discovery

        try:
            known = discovery.discover()
        except EdaError:
            known = {}
        names = [n for n in dict.fromkeys(ctx.meta.get("eda.worker_names", ())) if n in known]
        return " ".join((ctx.command_path, *names))

    @staticmethod
    def _own_params(names, params) -> list[click.Option]:
        from eda import discovery, worker_settings

        classes = []
        for name in dict.fromkeys(names):
            try:
                classes.append(discovery.get(name))
            except UnknownWorker:
                continue  # the command says so when it runs
        worker_settings.check(classes, framework_options=[o for p in params for o in (*p.opts, *p.secondary_opts)])
        declared = {cls.name: {s.name: s for s in worker_settings.declared(cls)} for cls in classes}
        return [SettingOption(worker, declared[worker][name], option, index)
                for index, ((worker, name), option) in enumerate(worker_settings.options(classes).items())]


def _kind(cls) -> str:
    """What ``eda worker --help`` says before a worker's description: a saga, or ordered by what."""
    from eda.sagas.definition import Saga

    if issubclass(cls, Saga):
        return "[saga] "
    return f"[ordered by {cls.ordered_by}] " if cls.ordered_by else ""


def own_options(kwargs: dict) -> dict:
    """Take the workers' own settings out of ``eda worker``'s keyword arguments: worker name ->
    {setting name: value}, each value converted and checked (a one-line error naming its option)."""
    params = {p.name: p for p in click.get_current_context().meta.get("eda.worker_params", ())}
    values: dict[str, dict] = {}
    for key in [k for k in kwargs if k.startswith(OWN)]:
        raw = kwargs.pop(key)
        if raw is not None:
            param = params[key]
            values.setdefault(param.worker, {})[param.setting.name] = param.value_of(raw)
    return values


def complete_workers(ctx, param, incomplete):
    """Shell completion of worker names, with their descriptions."""
    from eda import discovery

    return [click.shell_completion.CompletionItem(name, help=cls.description)
            for name, cls in discovery.discover().items() if name.startswith(incomplete)]


def complete_events(ctx, param, incomplete):
    """Shell completion of event names (``order-placed``), or types once a dot is typed (``order.placed``)."""
    from eda.contracts.registry import all_contracts

    key = "type" if "." in incomplete else "name"
    return [click.shell_completion.CompletionItem(getattr(c, key), help=c.description)
            for c in all_contracts() if getattr(c, key).startswith(incomplete)]


COMMANDS = "eda.commands"  # entry-point group: commands a package adds (the shop's `eda demo`, `eda gateway`)


def _unavailable(name: str, ep, exc: Exception) -> click.Command:
    """Stands in for a plug-in command that cannot be imported (say a project's own ``workers``
    package shadows the one it lives in): listed, and a one-line error when run."""

    def fail(**_):
        raise ConfigError(f"command {name!r} is not available: cannot load {ep.value}: {exc}")

    return click.Command(name, callback=fail, short_help=f"(not available: cannot load {ep.value})",
                         context_settings={"ignore_unknown_options": True, "allow_extra_args": True})


class Group(click.Group):
    """Adds the commands of ``eda.commands`` entry points, loaded only when used, and shows expected
    errors as one line on stderr with their exit code, never as a traceback; click's usage errors (an
    unknown option, a missing argument, a file that cannot be opened) too, exit 2."""

    def _plugins(self) -> dict:
        from importlib.metadata import entry_points

        return {ep.name: ep for ep in entry_points(group=COMMANDS) if ep.name not in self.commands}

    def list_commands(self, ctx):
        return sorted({*super().list_commands(ctx), *self._plugins()})

    def get_command(self, ctx, name):
        command = super().get_command(ctx, name)
        if command is not None:
            return command
        ep = self._plugins().get(name)
        if ep is None:
            return None
        try:
            return ep.load()
        except Exception as exc:
            return _unavailable(name, ep, exc)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:  # `eda` or `eda dlq` alone: the help, as click shows it
            exc.show()
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            message = " ".join(exc.format_message().split())  # one line, whatever click wrapped
            ctx = getattr(exc, "ctx", None)
            hint = ""
            if isinstance(exc, click.UsageError) and ctx:
                worker = isinstance(ctx.command, WorkerCommand)
                hint = f" (see '{WorkerCommand.help_path(ctx) if worker else ctx.command_path} --help')"
            click.echo(f"error: {message}{hint}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("aborted", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except EdaError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
