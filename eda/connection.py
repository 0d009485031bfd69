"""Opening broker connections that fail fast and say why, without ever showing the password."""

import kombu

from eda.errors import AccessRefused, BrokerUnavailable
from eda.frames import guarded_frame_handler
from eda.settings import Settings


def open_connection(settings: Settings, *, heartbeat: int | None = None, timeout: float = 5.0,
                    url: str | None = None) -> kombu.Connection:
    """A connected kombu connection, or BrokerUnavailable within about ``timeout`` seconds.
    Heartbeats (``EDA_HEARTBEAT`` unless given) find a broker that went silent without closing."""
    url = url or settings.broker_url
    heartbeat = settings.heartbeat if heartbeat is None else heartbeat
    conn = kombu.Connection(url, heartbeat=heartbeat, connect_timeout=timeout,
                            transport_options={"confirm_publish": False,
                                               # a message whose properties py-amqp cannot decode is
                                               # delivered without them, not fatal to the connection
                                               "frame_handler": guarded_frame_handler})
    try:
        conn.connect()
    except Exception as exc:  # kombu raises transport-specific errors: OSError, AccessRefused, ...
        conn.release()
        reason = describe_connection_error(exc)
        error = AccessRefused if reason.startswith("access refused") else BrokerUnavailable
        raise error(f"cannot reach the broker at {settings.safe_broker_url}: {reason}") from None
    return conn


def describe_connection_error(exc: BaseException) -> str:
    """A short reason for a failed connection, free of the URL (which may hold a password)."""
    text = str(exc) or type(exc).__name__
    if "ACCESS_REFUSED" in text or "403" in text:
        return "access refused (check the user name and password)"
    if isinstance(exc, ConnectionRefusedError) or "Connection refused" in text:
        return "connection refused (is RabbitMQ running?)"
    if isinstance(exc, TimeoutError) or "timed out" in text:
        return "timed out"
    return text.splitlines()[0][:200]


def is_amqp(conn: kombu.Connection) -> bool:
    """True on a real AMQP broker; False on kombu's in-memory transport (used by ``eda demo --embedded``)."""
    return conn.transport.driver_type == "amqp"
