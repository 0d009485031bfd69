"""A real `eda worker` speaks systemd's notify protocol to a socket the test listens on, as systemd would."""

import signal

import pytest

from tests.monitoring import free_port

pytestmark = pytest.mark.integration

WATCHDOG_USEC = 1_000_000  # systemd asks for a ping at least every second; eda pings every half of it


def test_the_worker_is_ready_only_once_consuming_pings_the_watchdog_and_says_when_it_stops(
        eda, broker, namespace, notify_socket):
    # Given a worker started the way systemd starts a Type=notify unit with WatchdogSec=1
    proc = eda.start("worker", "shipping", NOTIFY_SOCKET=notify_socket.name, WATCHDOG_USEC=WATCHDOG_USEC)
    # When it says READY=1
    ready = notify_socket.wait_for("READY")
    # Then the broker already counts its consumer on the worker queue, and it logged that it consumes
    assert broker.channel.queue_declare(f"{namespace}.shipping", passive=True).consumer_count == 1
    assert ready["READY"] == "1" and ready["STATUS"] == "consuming: shipping"
    proc.wait_ready()
    # And it keeps answering the watchdog while it runs
    for _ in range(2):
        assert notify_socket.wait_for("WATCHDOG")["WATCHDOG"] == "1"
    # When systemd stops it with SIGTERM
    proc.send(signal.SIGTERM)
    # Then it says STOPPING=1 and exits cleanly
    stopping = notify_socket.wait_for("STOPPING")
    assert stopping["STOPPING"] == "1" and stopping["STATUS"].startswith("stopping")
    assert proc.wait() == 0
    assert [m for m in notify_socket.messages if "READY" in m] == [ready]


def test_a_worker_that_cannot_reach_the_broker_never_says_ready_but_feeds_the_watchdog(eda, notify_socket):
    # Given no broker on the URL the worker is given, and a short reconnect window
    closed = free_port()
    proc = eda.start("worker", "shipping", NOTIFY_SOCKET=notify_socket.name, WATCHDOG_USEC=WATCHDOG_USEC,
                     EDA_BROKER_URL=f"amqp://guest:guest@127.0.0.1:{closed}//", EDA_RECONNECT_WINDOW=1.5)
    # When it tries to connect
    status = notify_socket.wait_for("STATUS")
    # Then systemd hears that it reconnects, and the watchdog is fed while it does
    assert status["STATUS"].startswith("reconnecting: ") and "connection refused" in status["STATUS"]
    assert "guest:guest" not in status["STATUS"]
    notify_socket.wait_for("WATCHDOG")
    # And it gives up with the broker-unavailable exit code without ever saying READY=1
    assert proc.wait() == 3, proc.output
    notify_socket.drain()
    assert not [m for m in notify_socket.messages if "READY" in m]
    assert "guest:guest" not in proc.output
