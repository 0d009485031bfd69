"""Workers run inside another program: ``eda.running`` starts them on a thread of their own, as ``eda
worker`` runs them in a process, and stops them gracefully at the end of its ``with`` block.

    from eda import Settings, running

    with running(Payment, Inventory, settings=Settings.from_env()) as workers:
        ...                                  # they consume, react and settle as under `eda worker`
        workers.worker("inventory")          # a running instance, to look at its state

For demos, notebooks and end-to-end tests of an application that starts its own workers; in
production, ``eda worker`` (a process per worker, under systemd or supervisor) stays the way to run them.
"""

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from eda.errors import BrokerUnavailable, EdaError
from eda.middleware import Middleware
from eda.runtime.runner import Runner
from eda.settings import Settings
from eda.worker import Worker


class Running:
    """The workers of one ``running`` block."""

    def __init__(self, runner: Runner):
        self._runner = runner

    @property
    def workers(self) -> list[Worker]:
        return list(self._runner.workers)

    def worker(self, name: str) -> Worker:
        """The running instance of the named worker."""
        found = [w for w in self._runner.workers if w.name == name]
        if not found:
            raise KeyError(f"no worker {name!r} runs here; these do: {', '.join(w.name for w in self._runner.workers)}")
        return found[0]


@contextmanager
def running(*worker_classes: type[Worker], settings: Settings, middleware: Sequence[Middleware] = (),
            ready_timeout: float = 15.0) -> Iterator[Running]:
    """Run the workers on one connection, on a thread of their own, while the block runs; return once
    each consumes (its queues declared), or raise what stopped them: ``BrokerUnavailable`` when no
    broker answers within ``ready_timeout``, the ``ConfigError`` of a wrong setting. ``middleware``
    wraps every worker's handling and publishing, as process-wide middleware does under ``eda worker``.
    Leaving the block stops them as SIGTERM stops ``eda worker``: running handlers finish within
    ``shutdown_timeout`` and what was not settled returns to the broker; past it, the block ends with
    those handlers left running on their threads (``eda worker`` would exit: this process is not eda's)."""
    runner = Runner(list(worker_classes), settings, middleware=middleware)
    failure: list[BaseException] = []

    def run():
        try:
            runner.run()
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)
            runner.ready.set()

    thread = threading.Thread(target=run, name="eda-workers", daemon=True)
    thread.start()
    try:
        if not runner.ready.wait(ready_timeout):
            raise BrokerUnavailable(f"the workers did not start consuming within {ready_timeout:g}s")
        _raise_failure(failure)
        yield Running(runner)
    finally:
        runner.stop()
        thread.join(settings.shutdown_timeout + 5)
    _raise_failure(failure)  # what ended them while the block ran (say the broker gone for good)


def _raise_failure(failure: list[BaseException]) -> None:
    if failure:
        error = failure[0]
        if isinstance(error, EdaError):
            raise error
        raise EdaError(f"the workers stopped: {type(error).__name__}: {error}") from error
