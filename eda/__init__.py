"""eda: event-driven workers on RabbitMQ. What a service built on eda imports (docs/api.md):

    from eda import Worker, handles, contract, EventData, Setting, Settings, PermanentError, ContractError
    from eda import Saga, starts                    # flows over many events and time (process managers)
    from eda import Producer, Outbox, schedule      # publishing from an application, now, later or by cron
    from eda import partition_headers, stamp        # for events published another way: key header, trace context
    from eda import Breaker, open_store             # what handlers often need
    from eda import Middleware, Outgoing            # around handling and publishing
    from eda import running, watch, delete_topology # workers in this process, a live view, clean-up
    from eda.fields import Money, Id, Currency
    from eda.testing import TestBus

The public API is these names and the modules ``eda.fields``, ``eda.testing``, ``eda.errors``,
``eda.commands`` and ``eda.memory`` (a test bus's broker); every other module under ``eda`` is the framework's machinery and may change. The
names load on first use, so ``import eda.settings`` stays cheap.
"""

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_API = {
    # Declaring events and workers
    "contract": "eda.contracts.registry", "EventData": "eda.contracts.data", "upcaster": "eda.contracts.versions",
    "Worker": "eda.worker", "handles": "eda.worker", "Context": "eda.context", "Event": "eda.contracts.envelope",
    "FLOW": "eda.names", "Saga": "eda.sagas", "starts": "eda.sagas",
    "Setting": "eda.worker_settings", "Settings": "eda.settings",
    # Around handling and publishing
    "Middleware": "eda.middleware", "Outgoing": "eda.middleware",
    # What handlers use
    "Breaker": "eda.breaker", "open_store": "eda.store",
    # Publishing from an application
    "Producer": "eda.producer", "Outbox": "eda.outbox", "schedule": "eda.outbox.recurring",
    "Scheduled": "eda.outbox.outbox",
    # For events published another way (an application's own client, its own outbox)
    "partition_headers": "eda.publishing.partitioning", "stamp": "eda.tracing",
    # Running and watching in a program of one's own
    "running": "eda.inprocess", "watch": "eda.tail", "delete_topology": "eda.deletion",
    # Errors (the whole tree: eda.errors)
    "EdaError": "eda.errors", "ContractError": "eda.errors", "PermanentError": "eda.errors",
    "RequestTimeout": "eda.errors", "RequestFailed": "eda.errors",
}

__all__ = sorted(_API)

if TYPE_CHECKING:  # what type checkers see (`X as X`: re-exported); at run time each loads on first use, below
    from eda.breaker import Breaker as Breaker
    from eda.contracts.data import EventData as EventData
    from eda.contracts.envelope import Event as Event
    from eda.contracts.registry import contract as contract
    from eda.contracts.versions import upcaster as upcaster
    from eda.errors import ContractError as ContractError, EdaError as EdaError, PermanentError as PermanentError
    from eda.errors import RequestFailed as RequestFailed, RequestTimeout as RequestTimeout
    from eda.inprocess import running as running
    from eda.middleware import Middleware as Middleware, Outgoing as Outgoing
    from eda.names import FLOW as FLOW
    from eda.outbox import Outbox as Outbox
    from eda.outbox.outbox import Scheduled as Scheduled
    from eda.outbox.recurring import schedule as schedule
    from eda.publishing.partitioning import partition_headers as partition_headers
    from eda.producer import Producer as Producer
    from eda.sagas import Saga as Saga, starts as starts
    from eda.settings import Settings as Settings
    from eda.store import open_store as open_store
    from eda.tail import watch as watch
    from eda.deletion import delete_topology as delete_topology
    from eda.context import Context as Context
    from eda.tracing import stamp as stamp
    from eda.worker import Worker as Worker, handles as handles
    from eda.worker_settings import Setting as Setting


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'eda' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
