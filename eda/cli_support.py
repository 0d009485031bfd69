"""CLI plumbing shared by the commands in cli.py: settings as options, shell completion, one-line errors."""

import functools
import sys

import click

from eda import logs
from eda.errors import ConfigError, EdaError
from eda.settings import SPECS, Settings, redact_url

COMMON = ("broker_url", "broker_url_file", "namespace", "log_format", "log_level")
WORKER = ("state_dir", "payment_gateway_url", "prefetch", "concurrency", "retry_delays", "shutdown_timeout",
          "breaker_fail_max", "breaker_reset_timeout", "gateway_timeout", "stock_threshold", "reconnect_window",
          "heartbeat", "queue_type", "delivery_limit", "metrics_port")


def settings_options(*names):
    """Add one option per setting (with its ``EDA_*`` variable) and pass the built Settings as ``settings``."""

    def decorate(command):
        @functools.wraps(command)
        def wrapper(*args, **kwargs):
            values = {name: kwargs.pop(name) for name in names}
            settings = Settings.from_env(**values)
            logs.configure(settings.log_format, settings.log_level)
            return command(*args, settings=settings, **kwargs)

        for name in reversed(names):
            spec = SPECS[name]
            default = redact_url(str(spec.default)) if spec.secret else spec.default
            wrapper = click.option(
                spec.option, name, envvar=spec.env, show_envvar=True, default=None,
                type=click.Choice(spec.choices, case_sensitive=False) if spec.choices else None,
                help=spec.help + (f" [default: {default}]" if default not in (None, "") else ""),
            )(wrapper)
        return wrapper

    return decorate


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
    errors as one line on stderr with their exit code, never as a traceback."""

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

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except EdaError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
