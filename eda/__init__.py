"""eda: event-driven workers on RabbitMQ. What a service built on eda imports:

    from eda import Worker, handles, contract, EventData, Producer, Settings, PermanentError, ContractError
    from eda import upcaster                  # reads an older version of an event as the newest
    from eda import Setting                   # a worker's own setting
    from eda import Middleware, Outgoing      # around handling and publishing
    from eda import schedule                  # a recurring schedule: eda.schedule("0 9 * * *", "reminder.due", {...})
    from eda.fields import Money, Id, Currency

The names load on first use, so ``import eda.settings`` stays cheap (see docs/api.md).
"""

import importlib

__version__ = "0.1.0"

_API = {
    "Worker": "eda.worker", "handles": "eda.worker", "Context": "eda.worker",
    "contract": "eda.contracts.registry", "EventData": "eda.contracts.data", "Event": "eda.contracts.envelope",
    "upcaster": "eda.contracts.versions",
    "Producer": "eda.publishing.producer", "Settings": "eda.settings", "Setting": "eda.worker_settings",
    "Middleware": "eda.middleware", "Outgoing": "eda.middleware",
    "PermanentError": "eda.errors", "ContractError": "eda.errors", "EdaError": "eda.errors",
    "RequestTimeout": "eda.errors", "RequestFailed": "eda.errors",
    "schedule": "eda.outbox.recurring",
    "FLOW": "eda.names",
}

__all__ = sorted(_API)


def __getattr__(name):
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'eda' has no attribute {name!r}")
