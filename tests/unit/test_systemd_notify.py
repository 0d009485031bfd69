"""The notify protocol's pieces: addresses, the watchdog interval, datagrams on a real socket."""

import os
import socket

import pytest

from eda.systemd import Notifier, socket_address, watchdog_interval


@pytest.fixture
def listener(tmp_path):
    """A datagram socket on a path, in systemd's role."""
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    yield sock
    sock.close()


def test_an_at_sign_names_an_abstract_socket_and_a_path_stays_a_path():
    assert socket_address("@/org/freedesktop/systemd1/notify") == b"\0/org/freedesktop/systemd1/notify"
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"


@pytest.mark.parametrize("environ, interval", [
    ({"WATCHDOG_USEC": "30000000"}, 15.0),
    ({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid())}, 0.5),
    ({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}, None),  # the watchdog is another process's
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "soon"}, None),
    ({}, None),
])
def test_the_watchdog_is_pinged_at_half_the_interval_systemd_asks_for(environ, interval):
    assert watchdog_interval(environ) == interval


def test_without_notify_socket_nothing_is_sent():
    notifier = Notifier.from_env({"WATCHDOG_USEC": "1000000"})
    assert not notifier.enabled
    assert notifier.notify(READY=1) is False
    assert notifier.ping_if_due() is False


def test_a_message_is_one_datagram_of_key_value_lines(listener):
    notifier = Notifier.from_env({"NOTIFY_SOCKET": listener.getsockname()})
    assert notifier.notify(READY=1, STATUS="consuming: payment")
    assert listener.recv(4096) == b"READY=1\nSTATUS=consuming: payment"
    notifier.close()


def test_watchdog_pings_are_spaced_by_the_interval(listener):
    # Given a watchdog of 10 s (a ping every 5 s)
    notifier = Notifier(listener.getsockname(), watchdog=5.0)
    # When the I/O loop ticks every second for 11 seconds
    sent = [now for now in range(100, 112) if notifier.ping_if_due(now=float(now))]
    # Then a ping went out at the first tick and every 5 s after it
    assert sent == [100, 105, 110]
    assert [listener.recv(64) for _ in sent] == [b"WATCHDOG=1"] * 3
    notifier.close()


def test_an_unreachable_socket_never_stops_the_worker(tmp_path):
    notifier = Notifier(str(tmp_path / "gone"))
    assert notifier.notify(STOPPING=1) is False
