"""A broker that goes away under a running worker: `rabbitmqctl stop_app` / `start_app` on the test broker,
a network cut and a broker gone silent (through a TCP proxy the test controls).

The tests that stop the broker's app need rabbitmqctl on the broker's own machine. Outside CI they skip
without it; under CI=true they fail instead, so a CI run never counts a skip as a pass.
"""

import shutil
import signal
import subprocess
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.proxy import TcpProxy
from tests.support import Accounting, Broker, handled, in_ci, wait_until

pytestmark = pytest.mark.integration

# The payment worker with handler threads, and with `async def` handlers run on the event loop that its I/O
# thread drives (a lost connection's socket must leave that loop before the next one's joins it).
STYLES = pytest.mark.parametrize("style", [{}, {"EDA_APP": "eda_shop.workers.payment_async"}],
                                 ids=["threads", "async"])


class BrokerApp:
    """The RabbitMQ application of the local node, stopped and started with rabbitmqctl."""

    def __init__(self, rabbitmqctl: str):
        self.rabbitmqctl = rabbitmqctl
        self.stopped = False

    def _run(self, *args):
        done = subprocess.run([self.rabbitmqctl, *args], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"rabbitmqctl {' '.join(args)}: {done.stdout}{done.stderr}"

    def stop(self):
        self.stopped = True
        self._run("stop_app")

    def start(self):
        self._run("start_app")
        self._run("await_startup")
        self.stopped = False


@pytest.fixture
def broker_app(broker_url, namespace):
    """Control of the test broker's app; it is always started again, whatever the test did."""
    rabbitmqctl = shutil.which("rabbitmqctl")
    host = urlsplit(broker_url).hostname
    problem = (None if rabbitmqctl and host in ("localhost", "127.0.0.1", "::1")
               else f"cannot stop the broker at {host} from here: rabbitmqctl "
                    f"{'found' if rabbitmqctl else 'missing'}, broker {'local' if host == 'localhost' else 'remote'}")
    if problem:
        if in_ci():
            pytest.fail(problem)
        pytest.skip(problem)
    app = BrokerApp(rabbitmqctl)
    try:
        yield app
    finally:
        if app.stopped:
            app.start()


def connection_lost(r):
    return str(r.get("message", "")).startswith("broker connection lost")


def consuming(r):
    return r.get("message") == "consuming"


def test_a_worker_rides_out_a_broker_restart(eda, broker_app, broker_url, namespace, gateway, make_order):
    # Given a payment worker with orders in its queue, some of them being charged on a slow gateway
    gateway.simulation.latency = 0.2
    worker = eda.worker("payment", EDA_PAYMENT_GATEWAY_URL=gateway.url, EDA_CONCURRENCY=2)
    before = eda.publish("order-placed", *(make_order() for _ in range(10)))
    worker.wait_for_log(handled("order.placed"))
    # When the broker stops under it, and comes back
    broker_app.stop()
    worker.wait_for_log(connection_lost, what="the worker noticing the broker is gone")
    broker_app.start()
    # Then it reconnects by itself and consumes again
    wait_until(lambda: worker.count(consuming) >= 2, message="the worker consuming again")
    broker = Broker(broker_url, namespace)
    try:
        spy = broker.spy("payment.*")
        gateway.simulation.latency = 0
        # and processes what is published afterwards, without a restart
        after = eda.publish("order-placed", *(make_order() for _ in range(5)))
        Accounting(after, spy=spy, broker=broker, dlqs=[f"{namespace}.payment.dlq"]).wait_all_accounted()
        # and the orders it held when the broker stopped were not lost: all charged, none twice
        wait_until(lambda: gateway.simulation.charges == len(before) + len(after), message="every order charged")
        worker.wait_for_log(lambda r: handled("order.placed")(r) and r.get("event_id") == before[-1])
        assert broker.depth(f"{namespace}.payment") == 0
        assert broker.depth(f"{namespace}.payment.dlq") == 0
    finally:
        broker.close()
    assert worker.proc.poll() is None
    assert gateway.simulation.charges == len(before) + len(after)


def test_a_worker_whose_broker_stays_away_exits_non_zero(eda, broker_app):
    # Given a worker that waits for a lost broker for 2 seconds at most
    worker = eda.worker("shipping", EDA_RECONNECT_WINDOW=2)
    # When the broker stops and stays stopped
    broker_app.stop()
    # Then the worker gives up with a clear message and a non-zero exit, for its supervisor to act on
    code = worker.wait(timeout=30)
    broker_app.start()
    assert code == 3, worker.output
    assert worker.count(connection_lost) >= 1
    assert "error: the broker stayed unreachable for over 2s" in worker.output
    assert "Traceback" not in worker.output
    assert "guest:guest" not in worker.output


def test_a_worker_started_where_no_broker_answers_says_so_and_tries_again_on_its_backoff(eda, broker_url):
    from tests.monitoring import free_port

    # Given a broker URL where nothing listens (the broker not started yet)
    parts = urlsplit(broker_url)
    nowhere = urlunsplit(parts._replace(netloc=f"{parts.netloc.rsplit('@', 1)[0]}@127.0.0.1:{free_port()}"))
    # When a worker starts with a reconnect window of 3 s
    worker = eda.start("worker", "shipping", EDA_BROKER_URL=nowhere, EDA_RECONNECT_WINDOW=3)
    # Then it says it cannot reach the broker (nothing was lost), tries again after 0.5, 1 and 2 s (each
    # try one attempt, not kombu's two 2 s apart), and exits 3 once the window is over
    assert worker.wait(timeout=30) == 3, worker.output
    tries = [r["message"] for r in worker.records if r.get("level") == "WARNING"]
    assert len(tries) >= 3, tries
    assert all(t.startswith("cannot reach the broker at ") for t in tries), tries
    assert [t.rsplit("trying again in ", 1)[1] for t in tries[:3]] == ["0.5s", "1.0s", "2.0s"]
    assert not worker.count(connection_lost)


@pytest.fixture
def proxy(broker_url):
    parts = urlsplit(broker_url)
    tcp_proxy = TcpProxy(parts.hostname or "localhost", parts.port or 5672)
    yield tcp_proxy
    tcp_proxy.close()


@STYLES
def test_a_network_cut_is_reconnected_and_loses_nothing(eda, broker, proxy, broker_url, namespace, gateway,
                                                        make_order, style):
    # Given a payment worker reaching the broker through a proxy, charging orders on a slow gateway
    gateway.simulation.latency = 0.2
    worker = eda.worker("payment", EDA_BROKER_URL=proxy.url(broker_url), EDA_PAYMENT_GATEWAY_URL=gateway.url,
                        EDA_CONCURRENCY=2, **style)
    spy = broker.spy("payment.*")
    order_ids = eda.publish("order-placed", *(make_order() for _ in range(10)))
    worker.wait_for_log(handled("order.placed"))
    # When the network cuts every connection in the middle of the batch
    proxy.cut()
    # Then the worker reconnects by itself, and every order is paid, none charged twice
    worker.wait_for_log(connection_lost, what="the worker noticing the cut")
    wait_until(lambda: worker.count(consuming) >= 2, message="the worker consuming again")
    Accounting(order_ids, spy=spy, broker=broker, dlqs=[f"{namespace}.payment.dlq"]).wait_all_accounted()
    assert gateway.simulation.charges == len(order_ids)
    assert worker.proc.poll() is None


@STYLES
@pytest.mark.parametrize("mid_frame", [False, True], ids=["between-frames", "mid-frame"])
def test_a_broker_gone_silent_is_found_by_heartbeats_and_reconnected(eda, broker, proxy, broker_url, make_order,
                                                                     mid_frame, style):
    # Given a worker with 1s heartbeats, through a proxy
    worker = eda.worker("payment", EDA_BROKER_URL=proxy.url(broker_url), EDA_HEARTBEAT=1, **style)
    # When the broker goes silent: no byte, no close, nothing (or half a frame, then nothing)
    proxy.go_silent(mid_frame=mid_frame)
    # Then the missed heartbeats tell the worker the connection is lost
    lost = worker.wait_for_log(connection_lost, what="the worker noticing the silence")
    assert "heartbeats missed" in lost["message"]
    # and once the broker answers again it consumes again and processes new orders
    proxy.silent = False
    wait_until(lambda: worker.count(consuming) >= 2, message="the worker consuming again")
    spy = broker.spy("payment.*")
    [order_id] = eda.publish("order-placed", make_order())
    assert spy.wait_for("payment.succeeded")[0]["causationid"] == order_id
    assert worker.proc.poll() is None


def test_an_exchange_deleted_under_a_running_worker_is_redeclared_and_nothing_is_lost(eda, broker, namespace):
    # Given a running shipping worker, and its reactions' exchange deleted under it
    worker = eda.worker("shipping")
    broker.channel.exchange_delete(f"{namespace}.events")
    # When an event reaches its queue and the worker publishes its reaction to the missing exchange
    broker.publish(f"{namespace}.shipping", {
        "specversion": "1.0", "id": "evt-exchange-gone", "source": "test", "type": "inventory.reserved",
        "data": {"orderId": "ord-exchange-gone", "items": [{"sku": "A", "quantity": 1}]}}, exchange="")
    # Then the worker survives the channel error: it reconnects, redeclares, and handles the event
    worker.wait_for_log(lambda r: str(r.get("message", "")).startswith("broker connection lost"))
    worker.wait_for_log(handled("inventory.reserved"))
    assert broker.exists(f"{namespace}.shipping") and wait_until(lambda: broker.depth(f"{namespace}.shipping") == 0)
    assert worker.proc.poll() is None and "Traceback" not in worker.output


def test_a_connection_lost_during_a_graceful_stop_with_handlers_unfinished_exits_non_zero(
        eda, broker, proxy, broker_url, namespace, gateway, make_order):
    # Given a payment worker, through a proxy, whose four charges hang on a gateway taking 30 s an answer
    gateway.simulation.latency = 30
    worker = eda.worker("payment", EDA_BROKER_URL=proxy.url(broker_url), EDA_PAYMENT_GATEWAY_URL=gateway.url,
                        EDA_PAYMENT_GATEWAY_TIMEOUT=60, EDA_CONCURRENCY=4, EDA_SHUTDOWN_TIMEOUT=120)
    order_ids = eda.publish("order-placed", *(make_order() for _ in range(4)))
    wait_until(lambda: gateway.simulation.in_flight == 4, message="four charges under way")
    # When SIGTERM begins a graceful stop, and the network cuts the connection before the charges end
    worker.send(signal.SIGTERM)
    worker.wait_for_log(lambda r: "SIGTERM received" in str(r.get("message", "")))
    proxy.cut()
    # Then the worker exits 1, not 0: it did not drain, and says so; the orders go back to the queue
    assert worker.wait(timeout=30) == 1
    worker.wait_for_log(lambda r: str(r.get("message", "")).startswith("stopping without the broker's connection"))
    wait_until(lambda: broker.depth(f"{namespace}.payment") == len(order_ids), message="the orders back in the queue")
