"""CLI plumbing shared by the commands in cli.py: settings as options, shell completion, one-line errors."""

import functools
import sys

import click

from eda import logs
from eda.errors import EdaError
from eda.settings import SPECS, Settings, redact_url

COMMON = ("broker_url", "broker_url_file", "namespace", "log_format", "log_level")
WORKER = ("state_dir", "payment_gateway_url", "prefetch", "concurrency", "retry_delays", "shutdown_timeout",
          "breaker_fail_max", "breaker_reset_timeout", "gateway_timeout", "stock_threshold", "reconnect_window",
          "heartbeat", "queue_type", "delivery_limit", "metrics_port", "metrics_address")


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
    from workers import registry

    return [click.shell_completion.CompletionItem(name, help=cls.description)
            for name, cls in registry.discover().items() if name.startswith(incomplete)]


def complete_events(ctx, param, incomplete):
    """Shell completion of event names (``order-placed``), or types once a dot is typed (``order.placed``)."""
    from contracts import CONTRACTS

    key = "type" if "." in incomplete else "name"
    return [click.shell_completion.CompletionItem(getattr(c, key), help=c.description)
            for c in CONTRACTS if getattr(c, key).startswith(incomplete)]


class Group(click.Group):
    """Shows expected errors as one line on stderr with their exit code, never as a traceback; click's
    usage errors (an unknown option, a missing argument, a file that cannot be opened) too, exit 2."""

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
            hint = f" (see '{ctx.command_path} --help')" if isinstance(exc, click.UsageError) and ctx else ""
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
