"""Request-reply on a real broker: `eda request` and the Producer ask, a worker under `eda worker` answers
(tests/integration/quotes_app.py: the same handler with threads, inline and async def), many requests
in flight on one connection, timeouts, unroutable requests, requesters that went away, invalid replies,
retries, and other AMQP clients following the RPC convention."""

import asyncio
import json
import signal
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from urllib.parse import urlsplit

import amqp
import kombu
import pytest

from eda import Producer, Settings
from eda.errors import BrokerUnavailable, RequestFailed, RequestTimeout, Unroutable
from eda.topology import Topology
from tests.conftest import TEST_RETRY_DELAYS
from tests.proxy import TcpProxy
from tests.registry_scope import contracts_of
from tests.support import handled, wait_until

pytestmark = pytest.mark.integration

APP = "tests.integration.quotes_app"
STYLES = ["quotes", "quotes-inline", "quotes-async"]


@pytest.fixture(scope="module", autouse=True)
def quotes_app():
    """The quote contracts, registered in this process for this module's Producers only."""
    with contracts_of(APP) as module:
        yield module


@pytest.fixture(autouse=True)
def quote_queues(broker_url, namespace):
    """The quote workers' queues are deleted afterwards (the shared clean-up knows the installed workers only)."""
    yield
    conn = kombu.Connection(broker_url)
    try:
        channel = conn.channel()
        delays = tuple(int(d.removesuffix("ms")) for d in TEST_RETRY_DELAYS.split(","))
        for worker in STYLES:
            for retry_delays in ((), delays):
                Topology(namespace, retry_delays).delete_worker(channel, worker)
    finally:
        conn.release()


@pytest.fixture
def producer(broker_url, namespace):
    with Producer(Settings(broker_url=broker_url, namespace=namespace), source="tests/web") as p:
        yield p


def asking(request_no: int, **data) -> dict:
    """A quote request's wire data, as `eda request --data` takes it."""
    return {"requestNo": request_no, "sku": f"SKU-{request_no}", "quantity": request_no % 7 + 1, **data}


def request(eda, data: dict, *args, timeout="5s"):
    """`eda request quote-requested`: (exit code, output lines, seconds it took)."""
    started = time.monotonic()
    code, output = eda.run("request", "quote-requested", "--data", json.dumps(data), "--timeout", timeout, *args,
                           EDA_APP=APP)
    return code, output.splitlines(), time.monotonic() - started


@pytest.mark.parametrize("style", STYLES)
def test_eda_request_prints_the_reply_of_a_worker(style, eda, broker, namespace):
    # Given a quote worker running under `eda worker`, and a spy on the events exchange
    worker = eda.worker(style, EDA_APP=APP)
    spy = broker.spy("#")
    # When a quote is asked for with `eda request`
    code, lines, _ = request(eda, asking(7))
    # Then the reply's data is printed as JSON and the command exits 0
    assert code == 0, lines
    assert json.loads(lines[-1]) == {"requestNo": 7, "sku": "SKU-7", "price": "2.50"}
    worker.wait_for_log(handled("quote.requested", style))
    # and the request is still an event on the bus, while the reply went to the requester alone
    [seen] = spy.wait_for("quote.requested")
    assert seen["data"]["requestNo"] == 7
    assert spy.of_type("quote.given") == []
    assert broker.depth(f"{namespace}.{style}") == 0 and broker.depth(f"{namespace}.{style}.dlq") == 0


def test_the_reply_is_a_cloudevent_caused_by_the_request_in_its_flow(eda):
    eda.worker("quotes", EDA_APP=APP)
    code, lines, _ = request(eda, asking(3), "--envelope", "--correlation-id", "flow-42", "--source", "shop/web")
    assert code == 0, lines
    reply = json.loads(lines[-1])
    assert reply["type"] == "quote.given" and reply["source"] == "eda/quotes" and reply["specversion"] == "1.0"
    assert reply["correlationid"] == "flow-42" and reply["causationid"] and reply["causationid"] != reply["id"]
    assert reply["data"] == {"requestNo": 3, "sku": "SKU-3", "price": "10.00"}


def test_200_concurrent_requests_from_16_threads_on_one_producer_each_get_their_own_answer(eda, producer,
                                                                                         quotes_app):
    # Given a quote worker with 16 handler threads, and 16 threads sharing one Producer
    eda.worker("quotes", EDA_APP=APP, EDA_CONCURRENCY=16)
    answers, errors = {}, []

    def ask(numbers):
        try:
            for n in numbers:
                answers[n] = producer.request("quote-requested", {"request_no": n, "sku": f"SKU-{n}",
                                                                  "quantity": n % 7 + 1, "delay_ms": n % 5},
                                              timeout=30)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    # When they ask 200 quotes between them, in flight at once
    threads = [threading.Thread(target=ask, args=(range(i, 200, 16),)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    # Then each request got its own answer: the reply to its number, caused by its own request
    assert errors == []
    assert sorted(answers) == list(range(200))
    for n, reply in answers.items():
        assert reply.type == "quote.given"
        assert reply.data == {"request_no": n, "sku": f"SKU-{n}", "price": quotes_app.UNIT_PRICE * (n % 7 + 1)}
        assert reply.correlation_id == reply.causation_id  # each request began its flow
    assert len({reply.causation_id for reply in answers.values()}) == 200
    # and they shared one connection: its single I/O thread
    assert sum(t.name == "eda-requests" for t in threading.enumerate()) == 1


def test_200_concurrent_async_requests_each_get_their_own_answer(eda, producer, quotes_app):
    # Given the async quote worker with 64 in flight
    eda.worker("quotes-async", EDA_APP=APP, EDA_CONCURRENCY=64)

    async def ask_all():
        return await asyncio.gather(*(
            producer.request_async("quote.requested", {"request_no": n, "sku": f"SKU-{n}", "quantity": n % 7 + 1,
                                                       "delay_ms": 20}, timeout=30)
            for n in range(200)))

    # When 200 coroutines ask at once on one event loop
    replies = asyncio.run(ask_all())
    # Then each got the answer to its own request
    assert [r.data["request_no"] for r in replies] == list(range(200))
    assert all(r.data["price"] == quotes_app.UNIT_PRICE * (n % 7 + 1) for n, r in enumerate(replies))
    assert len({r.causation_id for r in replies}) == 200


def test_a_request_nobody_answers_times_out_in_one_line_and_expires_in_the_queue(eda, broker, namespace):
    # Given the worker's queue, but the worker stopped
    worker = eda.worker("quotes", EDA_APP=APP)
    worker.send(signal.SIGTERM)
    assert worker.wait(15) == 0
    # When a quote is asked for with a 1 s timeout
    code, lines, seconds = request(eda, asking(1), timeout="1s")
    # Then it fails after the timeout in one line, with exit 5
    assert code == 5, lines
    [line] = lines
    assert line.startswith("error: quote.requested: no reply within 1s (request ")
    assert 1 <= seconds < 10
    # and the request expired with its requester's timeout: the broker dead-lettered it from the queue
    wait_until(lambda: broker.depth(f"{namespace}.quotes.dlq") == 1, message="the request dead-lettered")
    assert broker.depth(f"{namespace}.quotes") == 0
    [dead] = broker.dead_letters("quotes")
    assert dead.headers["x-death"][0]["reason"] == "expired" and "expiration" not in dead.properties
    assert dead.headers["eda-expires-at"].endswith("Z")
    # so a worker back later never handles it; `eda dlq show` says why it is there
    worker = eda.worker("quotes", EDA_APP=APP)
    worker.wait_ready()
    code, output = eda.run("dlq", "show", "quotes", EDA_APP=APP)
    assert code == 0 and f"expired in {namespace}.quotes" in output, output
    time.sleep(0.5)
    assert worker.count(handled("quote.requested", "quotes")) == 0, worker.output


def test_a_request_delivered_in_time_but_reached_past_its_deadline_is_dead_lettered_unhandled(
        eda, broker, namespace, producer):
    # Given an inline worker (one event at a time) busy for 2 s with a first request
    worker = eda.worker("quotes-inline", EDA_APP=APP)
    worker.wait_ready()
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(producer.request, "quote.requested",
                           {"request_no": 1, "sku": "A", "quantity": 1, "delay_ms": 2000}, timeout=30)
        time.sleep(0.5)  # the first one is in the handler
        # When a second request, delivered to it meanwhile (prefetched), gives up after 500 ms
        with pytest.raises(RequestTimeout):
            producer.request("quote.requested", {"request_no": 2, "sku": "B", "quantity": 1}, timeout=0.5)
        # Then the first is answered
        assert slow.result(timeout=30).data["request_no"] == 1
    # and the second is not handled once the worker comes to it: dead-lettered with the reason, the worker goes on
    record = worker.wait_for_log(lambda r: str(r.get("message", "")).startswith("dead-lettered"), timeout=10)
    assert record["error"].startswith("Expired: expired ") and "its requester stopped waiting" in record["error"]
    [dead] = broker.dead_letters("quotes-inline")
    assert json.loads(dead.body)["data"]["requestNo"] == 2 and dead.headers["eda-exception-type"] == "Expired"
    assert worker.count(handled("quote.requested", "quotes-inline")) == 1
    assert producer.request("quote.requested", {"request_no": 3, "sku": "C", "quantity": 1},
                            timeout=10).data["request_no"] == 3


@pytest.mark.parametrize("option", ["--correlation-id", "--source"])
def test_an_attribute_longer_than_amqp_carries_is_a_wrong_option_of_eda_request(eda, option):
    code, lines, _ = request(eda, asking(1), option, "é" * 150)
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"error: {option}: ") and "300 bytes" in lines[0] and "255" in lines[0]


def test_a_request_no_worker_takes_fails_at_once(eda, producer):
    # Given no worker bound to quote.requested
    # When a quote is asked for with a long timeout
    code, lines, seconds = request(eda, asking(1), timeout="60s")
    # Then it fails at once, in one line, with exit 4
    assert code == 4, lines
    [line] = lines
    assert line.startswith("error: quote.requested: routed to no queue: no worker takes this request (request ")
    assert seconds < 15
    started = time.monotonic()
    with pytest.raises(Unroutable, match="quote.requested: routed to no queue"):
        producer.request("quote.requested", {"request_no": 1, "sku": "A", "quantity": 1}, timeout=60)
    assert time.monotonic() - started < 5


def test_a_requester_that_went_away_does_not_make_the_worker_dead_letter_the_request(eda, broker, namespace):
    # Given a worker that takes 1.5 s to answer
    worker = eda.worker("quotes", EDA_APP=APP)
    # When its requester gives up after 300 ms and exits before the answer
    code, lines, _ = request(eda, asking(2, delayMs=1500), timeout="300ms")
    assert code == 5 and lines[0].startswith("error: quote.requested: no reply within 300ms"), lines
    # Then the worker still handles the request and acks it; nothing is dead-lettered or retried
    worker.wait_for_log(handled("quote.requested", "quotes"), timeout=10)
    wait_until(lambda: broker.depth(f"{namespace}.quotes") == 0, message="the request acked")
    time.sleep(0.5)
    assert broker.depth(f"{namespace}.quotes.dlq") == 0
    assert worker.count(lambda r: r.get("level") in ("WARNING", "ERROR")) == 0, worker.output


def rpc_client(broker_url):
    """A plain py-amqp connection, as another client's RPC code would open it."""
    conn = kombu.Connection(broker_url)
    conn.connect()
    return conn


def drain_until(conn, condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the reply"
        try:
            conn.drain_events(timeout=0.2)
        except socket.timeout:
            pass


def test_another_amqp_client_gets_the_reply_by_the_rpc_convention(eda, broker_url, namespace):
    # Given a worker, and another client consuming direct reply-to
    eda.worker("quotes", EDA_APP=APP)
    conn = rpc_client(broker_url)
    try:
        channel = conn.channel()
        replies = []
        channel.basic_consume("amq.rabbitmq.reply-to", no_ack=True, callback=replies.append)
        request_id = str(uuid.uuid4())
        body = {"specversion": "1.0", "id": request_id, "source": "other/client", "type": "quote.requested",
                "data": asking(5)}
        # When it publishes a request with its own correlation id and reply_to
        channel.basic_publish(amqp.Message(json.dumps(body).encode(), content_type="application/cloudevents+json",
                                           reply_to="amq.rabbitmq.reply-to", correlation_id="rpc-5"),
                              exchange=f"{namespace}.events", routing_key="quote.requested")
        drain_until(conn, lambda: replies)
    finally:
        conn.release()
    # Then the reply copies its correlation id, and is the reply CloudEvent caused by the request
    [message] = replies
    assert message.properties["correlation_id"] == "rpc-5" and message.properties["type"] == "quote.given"
    reply = json.loads(message.body)
    assert reply["causationid"] == request_id and reply["data"] == {"requestNo": 5, "sku": "SKU-5", "price": "15.00"}


def test_a_reply_queue_that_is_gone_is_logged_and_the_request_acked(eda, broker, broker_url, namespace):
    # Given a slow worker, and a client whose reply queue is a queue of its own
    worker = eda.worker("quotes", EDA_APP=APP)
    conn = rpc_client(broker_url)
    try:
        channel = conn.channel()
        reply_queue = f"{namespace}.replies.{uuid.uuid4().hex[:6]}"
        channel.queue_declare(reply_queue, durable=False, auto_delete=False)
        body = {"specversion": "1.0", "id": str(uuid.uuid4()), "source": "other/client", "type": "quote.requested",
                "data": asking(6, delayMs=1000)}
        channel.basic_publish(amqp.Message(json.dumps(body).encode(), content_type="application/cloudevents+json",
                                           reply_to=reply_queue, correlation_id="rpc-6"),
                              exchange=f"{namespace}.events", routing_key="quote.requested")
        # When the reply queue is deleted before the answer
        channel.queue_delete(reply_queue)
    finally:
        conn.release()
    # Then the worker says the reply was not delivered, acks the request and dead-letters nothing
    record = worker.wait_for_log(lambda r: str(r.get("message", "")).startswith("reply not delivered"), timeout=10)
    assert reply_queue in record["message"] and record["event_type"] == "quote.requested"
    worker.wait_for_log(handled("quote.requested", "quotes"))
    wait_until(lambda: broker.depth(f"{namespace}.quotes") == 0, message="the request acked")
    assert broker.depth(f"{namespace}.quotes.dlq") == 0


def test_a_reply_that_breaks_its_contract_dead_letters_the_request_and_fails_the_requester_at_once(
        eda, broker, namespace):
    worker = eda.worker("quotes", EDA_APP=APP)
    # When the handler answers without a price
    code, lines, seconds = request(eda, asking(4, answer="invalid"), timeout="30s")
    # Then the requester fails at once in one line, with exit 6, saying which worker failed it and why
    assert code == 6, lines
    [line] = lines
    assert line.startswith("error: quote.requested: worker quotes failed the request: ContractError: quote.given: "
                           "invalid data: price: Missing data for required field.")
    assert seconds < 15
    # and the request is in the worker's DLQ with that reason, dead-lettered at once (no retry)
    [letter] = broker.dead_letters("quotes")
    assert letter.headers["eda-exception-type"] == "ContractError"
    assert "quote.given: invalid data: price" in letter.headers["eda-exception-message"]
    assert json.loads(letter.body)["data"]["requestNo"] == 4
    assert worker.count(lambda r: str(r.get("message", "")).startswith("failed; retrying")) == 0


@pytest.mark.parametrize("style", STYLES)
def test_a_request_that_fails_transiently_is_retried_and_still_answered(style, eda, broker, namespace):
    # Given a worker whose handler fails twice before it answers (retried after 200 ms, then 400 ms)
    worker = eda.worker(style, EDA_APP=APP)
    # When a quote is asked for with time enough for the retries
    code, lines, _ = request(eda, asking(9, failTimes=2), timeout="20s")
    # Then the reply of the third attempt reaches the requester: the retry copies kept reply_to
    assert code == 0, lines
    assert json.loads(lines[-1]) == {"requestNo": 9, "sku": "SKU-9", "price": "7.50"}
    assert worker.count(lambda r: str(r.get("message", "")).startswith("failed; retrying")) == 2
    assert broker.depth(f"{namespace}.{style}.dlq") == 0


def test_a_handler_that_does_not_reply_is_a_warning_and_its_requester_times_out(eda, producer):
    worker = eda.worker("quotes", EDA_APP=APP)
    with pytest.raises(RequestTimeout, match=r"quote.requested: no reply within 1s"):
        producer.request("quote.requested", {"request_no": 8, "sku": "A", "quantity": 1, "answer": "none"}, timeout=1)
    record = worker.wait_for_log(lambda r: str(r.get("message", "")).startswith("a request handled without a reply"))
    assert record["level"] == "WARNING" and record["event_type"] == "quote.requested"
    # and a handler answering with ctx.reply is answered like one returning the data
    reply = producer.request("quote.requested", {"request_no": 8, "sku": "A", "quantity": 2, "answer": "ctx"},
                             timeout=5)
    assert reply.data["price"] == Decimal("5.00")


def test_a_failure_reply_reaches_an_async_caller_too(eda, producer):
    eda.worker("quotes-async", EDA_APP=APP)

    async def ask():
        return await producer.request_async("quote.requested", {"request_no": 1, "sku": "A", "quantity": 1,
                                                                "answer": "invalid"}, timeout=30)

    started = time.monotonic()
    with pytest.raises(RequestFailed, match="worker quotes-async failed the request: ContractError"):
        asyncio.run(ask())
    assert time.monotonic() - started < 15


def test_a_lost_connection_fails_the_requests_in_flight_and_the_next_request_connects_again(eda, broker, broker_url,
                                                                                           namespace):
    # Given the quote workers' queues, no worker answering yet, and a Producer whose requests go through a
    # proxy that the test can cut
    assert eda.run("topology", "declare", EDA_APP=APP)[0] == 0
    parts = urlsplit(broker_url)
    proxy = TcpProxy(parts.hostname or "localhost", parts.port or 5672)
    try:
        with Producer(Settings(broker_url=proxy.url(broker_url), namespace=namespace)) as producer:
            outcomes = []

            def ask(n):
                try:
                    outcomes.append(producer.request("quote.requested", {"request_no": n, "sku": "A", "quantity": 1},
                                                     timeout=30))
                except Exception as exc:  # noqa: BLE001 - the outcome under test
                    outcomes.append(exc)

            threads = [threading.Thread(target=ask, args=(n,)) for n in range(4)]
            for thread in threads:
                thread.start()
            # the requests are out (in the worker's queue), their replies not yet
            wait_until(lambda: broker.depth(f"{namespace}.quotes") == 4, message="the four requests in the queue")
            # When the connection is cut
            started = time.monotonic()
            proxy.cut()
            for thread in threads:
                thread.join(30)
            # Then every request in flight fails at once, saying it may have been handled
            assert time.monotonic() - started < 10
            assert len(outcomes) == 4 and all(isinstance(o, BrokerUnavailable) for o in outcomes), outcomes
            assert all("it may have been handled" in str(o) for o in outcomes)
            # and once a worker answers, the next request connects again and gets its reply
            eda.worker("quotes", EDA_APP=APP)
            reply = producer.request("quote.requested", {"request_no": 9, "sku": "A", "quantity": 1}, timeout=10)
            assert reply.data["request_no"] == 9
    finally:
        proxy.close()
