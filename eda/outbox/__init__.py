"""The transactional outbox: events written in the application's own database transaction, published
by ``eda outbox relay`` once committed (``Outbox`` for the application, ``Relay`` for the relay)."""

from eda.outbox.outbox import Outbox

__all__ = ["Outbox"]
