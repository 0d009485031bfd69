"""The ``eda`` command line's commands, and what a package's own command uses.

Command groups of eda's own live in this package's modules (cli.py adds each: ``request``,
``schedule``); they are eda's machinery. Public is this module itself: a package adds a click command
to ``eda`` through an ``eda.commands`` entry point (as the reference shop adds ``eda demo`` and
``eda gateway``), and takes the framework's settings as its options with ``settings_options``::

    import click
    from eda.commands import COMMON, settings_options

    @click.command("report")
    @settings_options(*COMMON)
    def command(settings):
        ...                                  # settings: eda.Settings from the options and EDA_* variables

``settings_options(*names)`` adds one option per named setting, each with its ``EDA_*`` variable, and
passes the built ``Settings`` as ``settings`` (logging configured as they say). ``COMMON`` names the
broker, namespace and logging settings every command takes; ``WORKER`` those of running workers.
An ``EdaError`` the command raises is one line on stderr and its exit code, as for eda's own commands.
"""

from eda.cli_support import COMMON, WORKER, settings_options

__all__ = ["COMMON", "WORKER", "settings_options"]
