"""An AMQP broker in memory that eda's runtime runs on unchanged: the transport of ``eda.testing.TestBus``.

``Broker`` (``eda.memory.broker``) holds exchanges, queues and consumers as RabbitMQ does, on a
``Clock`` that moves only when told; ``open_connection(broker)`` (``eda.memory.client``) gives a
kombu connection on it whose channels speak py-amqp's API.
"""

from eda.memory.broker import Broker, Clock, Published
from eda.memory.client import open_connection

__all__ = ["Broker", "Clock", "Published", "open_connection"]
