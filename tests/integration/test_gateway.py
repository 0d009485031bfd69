"""`eda gateway` as a load target: HTTP/1.1 keep-alive, hundreds of clients at once, a clean stop."""

import http.client
import json
import signal
import threading

import pytest

from tests.monitoring import free_port
from tests.support import port_open, wait_until

pytestmark = pytest.mark.integration

CLIENTS = 256
REQUESTS_EACH = 3


@pytest.fixture
def gateway_process(eda):
    """`eda gateway` on a free port, slow enough (0.2s an answer) that every client waits at once."""
    port = free_port()
    proc = eda.start("gateway", "--port", str(port), "--latency", "0.2")
    wait_until(lambda: port_open("127.0.0.1", port), timeout=30, message="the gateway listening")
    return proc, port


def charge(conn: http.client.HTTPConnection, order_id: str) -> tuple[int, dict, bool]:
    conn.request("POST", "/charges", body=json.dumps({"orderId": order_id, "amount": "30.00", "currency": "USD"}),
                 headers={"Content-Type": "application/json", "Idempotency-Key": order_id})
    resp = conn.getresponse()
    return resp.status, json.loads(resp.read()), resp.will_close


def test_a_gateway_under_256_concurrent_clients_answers_every_request(gateway_process):
    # Given `eda gateway` taking 0.2s an answer, and 256 clients that connect at the same moment
    _, port = gateway_process
    start = threading.Barrier(CLIENTS)
    answers, failures = [], []

    def client(n):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            start.wait()
            first_socket = None
            for i in range(REQUESTS_EACH):
                answers.append(charge(conn, f"ord-{n}-{i}"))
                first_socket = first_socket or conn.sock
                if conn.sock is not first_socket:
                    failures.append(f"client {n}: a new connection for request {i}")
        except Exception as exc:  # a reset or a timeout is what this test looks for
            failures.append(f"client {n}: {type(exc).__name__}: {exc}")
        finally:
            conn.close()

    # When each sends three charges on its one connection
    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    # Then every request is answered, on the connection it came on (keep-alive), none refused or reset
    assert failures == []
    assert len(answers) == CLIENTS * REQUESTS_EACH
    assert {status for status, _, _ in answers} == {201}
    assert all(body["status"] == "succeeded" and body["paymentId"] for _, body, _ in answers)
    assert not any(will_close for _, _, will_close in answers)


def test_the_gateway_answers_health_and_stops_on_sigterm_with_exit_0(gateway_process):
    # Given a running `eda gateway` with a client connected and idle (keep-alive)
    proc, port = gateway_process
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/health")
    resp = conn.getresponse()
    assert (resp.status, json.loads(resp.read())) == (200, {"status": "ok"})
    # When it gets SIGTERM
    proc.send(signal.SIGTERM)
    # Then it exits 0, with no traceback, and the port is free again
    assert proc.wait(timeout=30) == 0
    assert "Traceback" not in proc.output
    assert not port_open("127.0.0.1", port)
    conn.close()


def test_a_busy_port_is_one_error_line_and_exit_2(eda, gateway_process):
    # Given a gateway on a port, when a second one is asked to listen on it
    _, port = gateway_process
    code, output = eda.run("gateway", "--port", str(port))
    # Then it says so in one line and exits 2
    assert code == 2, output
    assert output.strip().startswith(f"error: cannot listen on 127.0.0.1:{port}"), output
    assert "Traceback" not in output
