"""``eda topology``: declare a namespace's exchanges and every worker's queues ahead of its workers, or
delete them, saying what went."""

import click

from eda.cli_support import COMMON, app_option, complete_workers, settings_options
from eda.errors import ConfigError


@click.group()
def topology():
    """Exchanges and queues."""


@topology.command("declare")
@settings_options(*COMMON, "retry_delays", "queue_type", "delivery_limit", "partitions")
@app_option
def topology_declare(settings):
    """Declare the exchanges and every known worker's queues, so events wait for workers not started yet."""
    from eda.connection import open_connection
    from eda.topology import Topology
    from eda import discovery

    conn = open_connection(settings)
    try:
        channel = conn.channel()
        topo = Topology.from_settings(settings)
        topo.declare_exchanges(channel)
        click.echo(f"exchange {topo.events.name} (topic), {topo.dlx.name} (direct)")
        for name, cls in discovery.discover().items():
            if cls.ordered_by:  # partitions through a consistent-hash exchange (eda.runtime.partitions)
                queues = topo.declare_ordered(channel, name, cls.event_types(), cls.ordered_by)
                click.echo(f"partitions {queues[0]}..{queues[-1]} ({len(queues)}, by {cls.ordered_by}) <- "
                           f"{', '.join(cls.event_types())}")
                continue
            queue = topo.declare_worker(channel, name, cls.event_types())
            click.echo(f"queue {queue.name} <- {', '.join(cls.event_types())}")
    finally:
        conn.release()


@topology.command("delete")
@click.argument("workers", nargs=-1, shell_complete=complete_workers)
@click.option("--yes", is_flag=True, help="Confirm that the queues, and the events in them, are deleted for good.")
@click.option("--force", is_flag=True, help="Delete queues that running workers consume from as well (they "
                                            "declare them again at once: stop them first).")
@settings_options(*COMMON, "retry_delays")
@app_option
def topology_delete(workers, yes, force, settings):
    """Delete the queues of the named workers (work, retry, dead-letter and partition queues), or with no
    worker named those of every worker of the app and the namespace's exchanges; print what was deleted
    and how many events went with each queue."""
    from eda import discovery
    from eda.deletion import consumed, delete_topology, describe, summary

    named = [discovery.get(name).name for name in dict.fromkeys(workers)]  # an unknown worker: one line, exit 2
    targets = named or list(discovery.discover())
    what = (f"the queues of {', '.join(named)}" if named else
            f"the queues of every worker ({', '.join(targets) or 'none'}) and the exchanges of namespace "
            f"{settings.namespace}")
    if not yes:
        raise ConfigError(f"topology delete deletes {what}, and the events in them, for good; add --yes to confirm")
    in_use = {} if force else consumed(settings, targets)
    if in_use:
        shown = ", ".join(f"{queue} ({count})" for queue, count in list(in_use.items())[:5])
        more = f" and {len(in_use) - 5} more" if len(in_use) > 5 else ""
        raise ConfigError(f"workers are consuming from {shown}{more}: they would declare their queues again at "
                          f"once; stop them first (or add --force); nothing was deleted")
    deleted = delete_topology(settings, *targets, exchanges=not named)
    for item in deleted:
        click.echo(describe(item))
    click.echo(summary(deleted, settings.namespace) if deleted else f"nothing to delete: {what} are not there")
