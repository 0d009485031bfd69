"""Opening broker connections that fail fast and say why, without ever showing the password."""

from urllib.parse import urlsplit

import amqp.exceptions
import kombu

from eda import frame_reader
from eda.errors import AccessRefused, BrokerUnavailable
from eda.frames import guarded_frame_handler
from eda.settings import Settings, redact_url


def broker_urls(url: str) -> list[str]:
    """The brokers of ``url``: one, or each of a failover list (``amqp://h1//;amqp://h2//``, as kombu
    writes it), in the order given."""
    return [part.strip() for part in url.split(";") if part.strip()] or [url]


def open_connection(settings: Settings, *, heartbeat: int | None = None, timeout: float = 5.0,
                    url: str | None = None) -> kombu.Connection:
    """A connected kombu connection to the first broker of the URL's list that answers (each tried
    in turn, so a worker that lost its node reconnects to another of the cluster), or BrokerUnavailable
    within about ``timeout`` seconds per broker. A refused login or virtual host is AccessRefused (a
    ConfigError): retrying cannot help, so nobody retries. Heartbeats (``EDA_HEARTBEAT`` unless given)
    find a broker that went silent without closing. A ``memory://`` URL is eda's in-memory broker of
    this process (``eda.memory.shared``), which the runtime uses as it uses RabbitMQ."""
    url = url or settings.broker_url
    heartbeat = settings.heartbeat if heartbeat is None else heartbeat
    if url.strip().lower().startswith("memory:"):  # eda's in-memory broker of this process
        from eda.memory import shared

        return shared.open_connection(url, heartbeat)
    failures = []
    for candidate in broker_urls(url):
        conn = kombu.Connection(candidate, heartbeat=heartbeat, connect_timeout=timeout,
                                transport_options={"confirm_publish": False,
                                                   # a message whose properties py-amqp cannot decode is
                                                   # delivered without them, not fatal to the connection
                                                   "frame_handler": guarded_frame_handler})
        try:
            # One try: kombu's connect() tries again 2 s later, and every caller of this function has a
            # retry of its own (the worker's reconnect backoff, publish's failover) or fails at once.
            try:
                conn.ensure_connection(max_retries=0)
            except kombu.exceptions.OperationalError as wrapped:  # a socket error, wrapped by kombu
                raise wrapped.__cause__ or wrapped from None
            frame_reader.install(conn.connection)  # frames read in large chunks, not three recvs each
            return conn
        except Exception as exc:  # kombu raises transport-specific errors: OSError, AccessRefused, ...
            vhost = conn.virtual_host
            conn.release()
            failures.append((candidate, exc, vhost))
    error = AccessRefused if any(is_refusal(exc) for _, exc, _ in failures) else BrokerUnavailable
    if len(failures) == 1:
        _, exc, vhost = failures[0]
        raise error(f"cannot reach the broker at {redact_url(url)}: {describe_connection_error(exc, vhost)}") from None
    reasons = "; ".join(f"{broker_address(candidate)} {describe_connection_error(exc, vhost)}"
                        for candidate, exc, vhost in failures)
    raise error(f"cannot reach any of the {len(failures)} brokers of {redact_url(url)}: {reasons}") from None


def broker_address(url: str) -> str:
    """``host:port`` of one broker URL, for logs and messages (no user name, no password)."""
    try:
        parts = urlsplit(url)
        return f"{parts.hostname or 'localhost'}:{parts.port or (5671 if parts.scheme == 'amqps' else 5672)}"
    except ValueError:
        return "<broker address not shown: it cannot be parsed>"


def is_refusal(exc: BaseException) -> bool:
    """True when the broker refused the login (403 ACCESS_REFUSED) or the virtual host (530 NOT_ALLOWED:
    it does not exist, or the user has no permission on it): configuration errors, not outages."""
    if isinstance(exc, (amqp.exceptions.AccessRefused, amqp.exceptions.NotAllowed)):
        return True
    text = str(exc)
    return "ACCESS_REFUSED" in text or "NOT_ALLOWED" in text


def describe_connection_error(exc: BaseException, vhost: str | None = None) -> str:
    """A short reason for a failed connection, free of the URL (which may hold a password)."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, amqp.exceptions.NotAllowed) or "NOT_ALLOWED" in text:
        where = f"virtual host {vhost!r}" if vhost else "the virtual host"
        return f"the broker refused {where} (it does not exist, or the user may not use it)"
    if isinstance(exc, amqp.exceptions.AccessRefused) or "ACCESS_REFUSED" in text or "403" in text:
        return "access refused (check the user name and password)"
    if isinstance(exc, ConnectionRefusedError) or "Connection refused" in text:
        return "connection refused (is RabbitMQ running?)"
    if isinstance(exc, TimeoutError) or "timed out" in text:
        return "timed out"
    return text.splitlines()[0][:200]


def connected_address(conn: kombu.Connection) -> str:
    """``host:port`` of the broker ``conn`` is connected to (of a failover list, the one that answered)."""
    return f"{conn.hostname or 'localhost'}:{conn.port}" if conn.port else str(conn.hostname or conn.transport_cls)
