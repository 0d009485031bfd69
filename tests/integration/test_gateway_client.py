"""The payment worker's gateway client: a pool of keep-alive connections, timeouts, and its answers mapped
to what the worker does (charged, declined, retried and counted by the breaker, or dead-lettered at once)."""

import socket
import threading
from decimal import Decimal

import pytest

from eda import PermanentError
from eda_shop.workers.gateway import GatewayError, HttpGateway, _answer

pytestmark = pytest.mark.integration


def test_concurrent_charges_share_a_pool_of_keep_alive_connections_no_larger_than_asked(gateway):
    # Given a gateway that takes a little while, and a client with a pool of 4 (a call waits for a free
    # connection within its timeout: generous here, where 16 threads share 4 connections)
    gateway.simulation.latency = 0.05
    client = HttpGateway(gateway.url, pool_size=4, timeout=120)
    answers = []

    def charges(n):
        for i in range(10):
            answers.append(client.charge(f"ord-{n}-{i}", Decimal("30.00"), "USD"))

    # When 16 threads charge 10 orders each
    threads = [threading.Thread(target=charges, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    client.close()
    # Then every order is charged, never more than 4 at once, over 4 connections kept open
    assert len(answers) == 160 and all(a.succeeded and a.id for a in answers)
    assert gateway.simulation.charges == 160
    assert gateway.simulation.peak_in_flight == 4
    assert gateway.connections == 4


def test_a_charge_a_decline_and_a_refund(gateway):
    client = HttpGateway(gateway.url + "/")
    paid = client.charge("ord-1", Decimal("30.00"), "USD")
    assert paid.succeeded and paid.id.startswith("pay_")
    declined = client.charge("ord-2", Decimal("20000"), "USD")
    assert (declined.status, declined.reason) == ("declined", "amount over the limit of 10000")
    refunded = client.refund("ord-1", paid.id, Decimal("30.00"))
    assert refunded.succeeded and refunded.id.startswith("ref_")
    # and a charge asked again is answered as the first time, not charged twice
    assert client.charge("ord-1", Decimal("30.00"), "USD") == paid
    assert gateway.simulation.charges == 1


def test_a_gateway_down_is_a_gateway_error(gateway):
    gateway.simulation.down = True
    with pytest.raises(GatewayError, match="gateway answered 503 gateway unavailable"):
        HttpGateway(gateway.url).charge("ord-1", Decimal("30.00"), "USD")


def test_a_request_the_gateway_refuses_is_permanent(gateway):
    # A wrong path (404) and a body the gateway cannot read (400): retrying cannot help
    with pytest.raises(PermanentError, match="gateway answered 404"):
        HttpGateway(gateway.url + "/elsewhere").charge("ord-1", Decimal("30.00"), "USD")
    with pytest.raises(PermanentError, match="gateway answered 400"):
        HttpGateway(gateway.url).charge("ord-2", "thirty", "USD")


def test_a_slow_answer_is_a_gateway_error_after_the_timeout(gateway):
    gateway.simulation.latency = 5
    with pytest.raises(GatewayError, match="did not answer within 0.3s"):
        HttpGateway(gateway.url, timeout=0.3).charge("ord-1", Decimal("30.00"), "USD")


def test_no_gateway_listening_is_a_gateway_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        with pytest.raises(GatewayError, match=f"gateway at http://127.0.0.1:{port} unreachable"):
            HttpGateway(f"http://127.0.0.1:{port}").charge("ord-1", Decimal("30.00"), "USD")


def test_a_gateway_that_accepts_and_never_answers_times_out():
    # A listening socket that nobody serves: the connection is made (backlog), the answer never comes
    with socket.create_server(("127.0.0.1", 0)) as s:
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
        with pytest.raises(GatewayError, match="did not answer within 0.2s"):
            HttpGateway(url, timeout=0.2).charge("ord-1", Decimal("30.00"), "USD")


@pytest.mark.parametrize("status, raised", [(500, GatewayError), (502, GatewayError), (503, GatewayError),
                                            (408, GatewayError), (429, GatewayError), (400, PermanentError),
                                            (401, PermanentError), (404, PermanentError), (422, PermanentError),
                                            (302, GatewayError)])
def test_answers_other_than_success_and_decline(status, raised):
    with pytest.raises(raised, match=f"charge of order o-1: gateway answered {status} why"):
        _answer(status, {"reason": "why"}, "charge of order o-1")


def test_the_payment_worker_charges_over_no_more_connections_than_its_concurrency(eda, broker, gateway, make_order):
    # Given a payment worker at concurrency 4 on a gateway that takes 20 ms an answer
    gateway.simulation.latency = 0.02
    eda.worker("payment", EDA_PAYMENT_GATEWAY_URL=gateway.url, EDA_CONCURRENCY=4)
    spy = broker.spy("payment.*")
    # When 40 orders arrive
    eda.publish("order-placed", *(make_order() for _ in range(40)))
    # Then each is charged once, over at most 4 connections that stayed open from one charge to the next
    assert len(spy.wait_for("payment.succeeded", count=40, timeout=60)) == 40
    assert gateway.simulation.charges == 40
    assert 1 <= gateway.connections <= 4


@pytest.mark.parametrize("style", [{}, {"EDA_APP": "eda_shop.workers.payment_async"}], ids=["threads", "async"])
@pytest.mark.parametrize("url", ["ftp://gateway.example", "notaurl"])
def test_a_gateway_url_that_is_not_http_is_a_config_error_naming_the_option(eda, style, url):
    # Given a payment worker whose gateway URL is not http(s), when it starts
    code, output = eda.run("worker", "payment", EDA_PAYMENT_GATEWAY_URL=url, **style)
    # Then it says so in one line naming the option and variable, and exits 2
    assert code == 2, output
    assert output.strip().splitlines()[-1] == (f"error: --gateway-url (EDA_PAYMENT_GATEWAY_URL): not an http(s) URL: "
                                               f"{url!r}")
    assert "Traceback" not in output
