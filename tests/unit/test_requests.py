"""Request-reply without a broker: the requests in flight and their futures, which request a reply
answers, failure replies, and a reply validated against its contract where the handler makes it."""

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jsonschema
import orjson
import pytest
from click.testing import CliRunner
from marshmallow import fields

from cli import main
from eda import ContractError, EventData, Producer, Settings, Worker, contract, handles
from eda import replies
from eda.contracts.envelope import Event, decode, new_event
from eda.contracts.export import asyncapi_document, event_schema
from eda.contracts.registry import get
from eda.errors import ConfigError, DefinitionError, Expired, RequestFailed, RequestTimeout, UnknownEvent
from eda.fields import Id, Money
from eda.publishing.pending import PendingRequests
from eda.publishing.requester import timeout_message
from eda.testing import TestBus
from eda.worker import Context, dispatch, dispatch_async
from tests.support import wait_until


@pytest.fixture
def estimates(own_contracts):
    """A request and its reply, as README's "Request-reply" has them."""

    @contract("estimate.given", published_by=("quotes",))
    class EstimateGiven(EventData):
        sku = Id(required=True)
        price = Money(required=True)

    @contract("estimate.requested", reply="estimate.given")
    class EstimateRequested(EventData):
        sku = Id(required=True)
        quantity = fields.Integer(required=True)


def estimate_request(**data):
    return new_event("estimate.requested", {"sku": "A", "quantity": 2, **data}, "tests")


# The requests in flight


def test_a_reply_completes_the_future_of_its_request_only():
    pending = PendingRequests()
    first, second = request_of("r-1"), request_of("r-2")
    f1, f2 = pending.add(first, "estimate.given"), pending.add(second, "estimate.given")
    assert pending.settle("r-2", reply="the reply to r-2")
    assert f2.result(0) == "the reply to r-2" and not f1.done()
    assert "r-1" in pending and "r-2" not in pending and len(pending) == 1


def test_a_reply_after_the_caller_stopped_waiting_finds_no_one():
    pending = PendingRequests()
    future = pending.add(request_of("r-1"), "estimate.given")
    pending.discard("r-1")  # the caller's timeout
    assert not pending.settle("r-1", reply="late")
    assert not future.done()


def test_a_request_is_settled_once():
    pending = PendingRequests()
    future = pending.add(request_of("r-1"), "estimate.given")
    assert pending.settle("r-1", error=RequestFailed("failed"))
    assert not pending.settle("r-1", reply="the reply after the failure")
    with pytest.raises(RequestFailed):
        future.result(0)


def test_a_cancelled_future_is_not_completed_and_does_not_raise():
    pending = PendingRequests()
    future = pending.add(request_of("r-1"), "estimate.given")
    future.cancel()  # what an asyncio caller's timeout does to the future it waited on
    assert not pending.settle("r-1", reply="late")


def test_two_requests_with_one_id_are_refused():
    pending = PendingRequests()
    pending.add(request_of("r-1"), "estimate.given")
    with pytest.raises(ContractError, match="in flight already"):
        pending.add(request_of("r-1"), "estimate.given")


def test_a_lost_connection_fails_every_request_in_flight():
    pending = PendingRequests()
    futures = [pending.add(request_of(f"r-{i}"), "estimate.given") for i in range(3)]
    pending.fail_all(ConnectionError("lost"))
    assert all(isinstance(f.exception(0), ConnectionError) for f in futures) and len(pending) == 0


def test_concurrent_callers_each_get_their_own_reply():
    # Given 16 threads with 200 requests in flight between them
    pending = PendingRequests()
    requests = [request_of(f"r-{i}") for i in range(200)]

    def ask(share):
        futures = [(r.id, pending.add(r, "estimate.given")) for r in share]
        return [(request_id, future.result(5)) for request_id, future in futures]

    with ThreadPoolExecutor(16) as pool:
        callers = [pool.submit(ask, requests[i::16]) for i in range(16)]
        wait_until(lambda: len(pending) == 200, interval=0.001, message="the 200 requests in flight")
        # When the replies come in another order than the requests went out
        for request in reversed(requests):
            assert pending.settle(request.id, reply=f"answer to {request.id}")
        answers = [answer for caller in callers for answer in caller.result(5)]
    # Then each caller got the reply to its own request
    assert len(answers) == 200 and all(answer == f"answer to {rid}" for rid, answer in answers)


def request_of(request_id):
    return Event(type="estimate.requested", data={}, source="tests", id=request_id)


# Which request a reply answers


def test_a_reply_answers_the_request_its_causation_id_names(estimates):
    request = estimate_request()
    ctx = Context(request, "eda/quotes")
    _, body = reply_of(ctx, {"sku": "A", "price": "5.00"})
    assert replies.answered(body, {"correlation_id": "someone else"}, {}, {request.id}) == request.id


def test_a_binary_mode_reply_answers_by_its_causation_id_header():
    headers = {"ce-causationid": b"r-1", "ce-specversion": "1.0"}
    assert replies.answered(b"{}", {"content_type": "application/json"}, headers, {"r-1"}) == "r-1"


def test_a_reply_from_another_client_answers_by_the_correlation_id_it_copied():
    # The RPC convention: the replier copies correlation_id (eda's requests carry their own id there)
    assert replies.answered(b'{"price": 5}', {"correlation_id": "r-1"}, {}, {"r-1"}) == "r-1"
    assert replies.answered(b"not json", {"correlation_id": "r-1"}, {}, {"r-1"}) == "r-1"


def test_a_reply_to_no_request_waiting_answers_nothing():
    body = json.dumps({"causationid": "r-9"}).encode()
    assert replies.answered(body, {"correlation_id": "r-8"}, {}, {"r-1"}) is None
    assert replies.answered(b"[1, 2]", {}, {}, {"r-1"}) is None


def test_a_failure_reply_names_the_worker_and_the_reason(estimates):
    request = estimate_request()
    error = ContractError("estimate.given: invalid data: price: Missing data for required field.")
    body, properties = replies.failure(request, {"correlation_id": "c-1"}, error, worker="quotes",
                                       source="eda/quotes", reason=str(error))
    assert properties["type"] == replies.FAILED and properties["correlation_id"] == "c-1"
    assert replies.answered(body, properties, {}, {request.id}) == request.id
    failed = replies.failed(body, properties, request)
    assert isinstance(failed, RequestFailed) and failed.exit_code == 6
    assert str(failed).startswith("estimate.requested: worker quotes failed the request: ContractError: estimate.given: "
                                  "invalid data: price: Missing data for required field.")
    assert "\n" not in str(failed)


def test_a_reply_is_no_failure_reply(estimates):
    request = estimate_request()
    event, body = reply_of(Context(request, "eda/quotes"), {"sku": "A", "price": "5.00"})
    assert replies.failed(body, {"type": "estimate.given"}, request) is None


def test_a_timeout_is_one_line_naming_the_event_and_the_timeout(estimates):
    request = estimate_request()
    message = timeout_message(request, 0.5)
    assert message.startswith("estimate.requested: no reply within 500ms (request ")
    assert RequestTimeout(message).exit_code == 5 and "\n" not in message
    assert "within 5s" in timeout_message(request, 5)


# The reply, validated where the handler makes it


def reply_of(ctx, data):
    ctx.reply(data)
    return ctx.answer


def test_a_reply_is_the_requests_reaction_validated_against_the_reply_contract(estimates):
    request = estimate_request()
    reply = Context(request, "eda/quotes").reply({"sku": "A", "price": "5"})
    assert reply.type == "estimate.given" and str(reply.data["price"]) == "5.00"
    assert reply.causation_id == request.id and reply.correlation_id == request.correlation_id


def test_a_reply_keeps_its_id_when_the_request_is_handled_again_and_never_takes_a_reactions(estimates):
    request = estimate_request()
    first = Context(request, "eda/quotes")
    first.publish("estimate.given", {"sku": "A", "price": "5"})  # announced on the bus too
    reply = first.reply({"sku": "A", "price": "5"})
    again = Context(request, "eda/quotes").reply({"sku": "A", "price": "5"})  # a redelivery's handling
    assert reply.id == again.id and reply.id != first.reactions[0][0].id


def test_a_reply_that_breaks_its_contract_fails_the_handler_naming_the_reply(estimates):
    ctx = Context(estimate_request(), "eda/quotes")
    with pytest.raises(ContractError, match="estimate.given: invalid data: price: Missing data for required field"):
        ctx.reply({"sku": "A"})
    with pytest.raises(ContractError, match="estimate.given: invalid data: unknown field 'unitPrice'"):
        ctx.reply({"sku": "A", "price": "5", "unitPrice": "1"})
    assert ctx.answer is None


def test_a_request_has_one_reply(estimates):
    ctx = Context(estimate_request(), "eda/quotes")
    ctx.reply({"sku": "A", "price": "5"})
    with pytest.raises(ContractError, match="a request has one reply"):
        ctx.reply({"sku": "A", "price": "6"})


def test_an_event_that_is_no_request_is_not_answered():
    ctx = Context(new_event("order.shipped", {"order_id": "o", "tracking_number": "t", "carrier": "UPS"}, "t"), "s")
    with pytest.raises(ContractError, match="order.shipped declares no reply"):
        ctx.reply({})
    ctx.returned({"whatever": 1})  # a value returned by an ordinary handler is ignored, as always
    assert ctx.answer is None


class Quotes(Worker):
    name = "quotes"

    @handles("estimate.requested")
    def price(self, event, ctx):
        if event.data["quantity"] == 0:
            return None
        if event.data["quantity"] < 0:
            return "a price"
        return {"sku": event.data["sku"], "price": 2 * event.data["quantity"]}


class AsyncQuotes(Worker):
    name = "async-quotes"

    @handles("estimate.requested")
    async def price(self, event, ctx):
        ctx.reply({"sku": event.data["sku"], "price": 3})


def test_a_handler_answers_by_returning_the_replys_data(estimates):
    ctx = dispatch(Quotes(Settings()), estimate_request(quantity=4))
    event, body = ctx.answer
    assert decode(body).data == {"sku": "A", "price": event.data["price"]} and str(event.data["price"]) == "8.00"
    assert ctx.reactions == []
    assert dispatch(Quotes(Settings()), estimate_request(quantity=0)).answer is None


def test_a_request_handler_returning_no_dict_fails(estimates):
    with pytest.raises(ContractError, match="returns its reply's data as a dict, or None; it returned str"):
        dispatch(Quotes(Settings()), estimate_request(quantity=-1))


def test_an_async_handler_answers_with_ctx_reply(estimates):
    ctx = asyncio.run(dispatch_async(AsyncQuotes(Settings()), estimate_request()))
    assert orjson.loads(ctx.answer[1])["data"] == {"sku": "A", "price": "3.00"}


def test_the_test_bus_returns_a_requests_reply_and_fails_as_a_requester_would(estimates):
    with TestBus(Quotes) as bus:
        reply = bus.request("estimate.requested", {"sku": "B", "quantity": 3})
        assert reply.type == "estimate.given" and reply.data["sku"] == "B" and str(reply.data["price"]) == "6.00"
        with pytest.raises(RequestTimeout, match="no handler on the bus replied"):
            bus.request("estimate.requested", {"sku": "B", "quantity": 0})
        with pytest.raises(RequestFailed, match="worker quotes failed the request: ContractError"):
            bus.request("estimate.requested", {"sku": "B", "quantity": -1})
        bus.publish("estimate.requested", {"sku": "C", "quantity": 1})  # published, not requested: nobody waits
        assert [e.type for e in bus.published()].count("estimate.given") == 0


# Contracts that declare a reply


def test_a_reply_may_name_its_contract_by_class_and_is_kept_as_its_type(own_contracts):
    @contract("price.given")
    class PriceGiven(EventData):
        price = Money(required=True)

    @contract("price.asked", reply=PriceGiven)
    class PriceAsked(EventData):
        sku = Id(required=True)

    assert get("price.asked").reply == "price.given" and get("price.asked").reply_contract() is get("price.given")
    assert get("price.given").reply is None


def test_a_contract_registered_again_with_another_reply_is_an_error(estimates):
    with pytest.raises(DefinitionError, match="registered twice"):
        @contract("estimate.requested", reply="order.placed")
        class EstimateRequested(EventData):
            sku = Id(required=True)
            quantity = fields.Integer(required=True)


def test_a_worker_handling_a_request_whose_reply_is_unknown_fails_when_it_starts(own_contracts):
    @contract("stock.asked", reply="stock.told")
    class StockAsked(EventData):
        sku = Id(required=True)

    class Stock(Worker):
        name = "stock"

        @handles("stock.asked")
        def tell(self, event, ctx):
            return {}

    with pytest.raises(UnknownEvent, match="stock.asked declares the reply 'stock.told': unknown event 'stock.told'"):
        Stock.handlers


def test_a_request_of_an_event_that_is_no_request_is_refused_before_connecting():
    producer = Producer(Settings(broker_url="amqp://guest:guest@127.0.0.1:1//"))
    with pytest.raises(ConfigError, match="order.placed is no request: its contract declares no reply"):
        producer.request("order.placed", {}, timeout=1)


@pytest.mark.parametrize("timeout", [0, -1, "5", True, 10**9])
def test_a_requests_timeout_is_a_positive_number_of_seconds(estimates, timeout):
    producer = Producer(Settings(broker_url="amqp://guest:guest@127.0.0.1:1//"))
    with pytest.raises(ConfigError, match="a request's timeout is a number of seconds"):
        producer.request("estimate.requested", {"sku": "A", "quantity": 1}, timeout=timeout)


# The documents


def test_the_asyncapi_document_shows_a_request_and_its_reply(estimates):
    class Estimates(Worker):
        name = "estimates"

        @handles("estimate.requested")
        def estimate(self, event, ctx):
            return None

    doc = asyncapi_document("shop", {"estimates": Estimates})
    schema = json.loads((Path(__file__).parent.parent / "data" / "asyncapi-3.0.0.schema.json").read_text())
    assert [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(doc)] == []
    # The reply channel: the requester's address, set by the request's reply_to, with the reply and the failure
    channel = doc["channels"]["estimate.requested.reply"]
    assert channel["address"] is None and set(channel["messages"]) == {"estimate.given", "eda.request.failed"}
    reply = {"address": {"location": "$message.header#/replyTo",
                         "description": "The request's AMQP reply_to property (amq.rabbitmq.reply-to)."},
             "channel": {"$ref": "#/channels/estimate.requested.reply"},
             "messages": [{"$ref": "#/channels/estimate.requested.reply/messages/estimate.given"},
                          {"$ref": "#/channels/estimate.requested.reply/messages/eda.request.failed"}]}
    # on the clients' send of the request and the worker's receive of it, and on no other operation
    assert doc["operations"]["clients.send.estimate.requested"]["reply"] == reply
    assert doc["operations"]["estimates.receive.estimate.requested"]["reply"] == reply
    assert [name for name, o in doc["operations"].items() if "reply" in o] == [
        "clients.send.estimate.requested", "estimates.receive.estimate.requested"]
    assert doc["components"]["messages"]["eda.request.failed"]["payload"]["properties"]["type"] == {
        "const": "eda.request.failed"}
    # and the JSON Schema of the request names its reply
    assert event_schema(get("estimate.requested"))["x-reply"] == "estimate.given"
    assert "x-reply" not in event_schema(get("estimate.given"))


def test_eda_events_notes_a_requests_reply_beside_its_fields(estimates, own_contracts):
    @contract("refund.requested", reply="refund.decided")  # its reply's contract is not registered
    class RefundRequested(EventData):
        order_id = Id(required=True)

    result = CliRunner().invoke(main, ["events"])
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.output.splitlines()[1:]}
    assert lines["estimate-requested"].endswith("sku*, quantity*; reply estimate.given")
    assert lines["estimate-given"].endswith("sku*, price*")  # a reply is no request
    assert lines["refund-requested"].endswith("orderId*; reply refund.decided (no such contract)")


def test_a_test_bus_request_with_a_timeout_times_out_as_a_requester_does_while_the_worker_retries(estimates):
    # Given a responder that fails twice (its database away, say), then answers
    failures, answered = [RuntimeError("the database is away"), RuntimeError("still away")], []

    class Flaky(Worker):
        name = "flaky"

        @handles("estimate.requested")
        def estimate(self, event, ctx):
            if failures:
                raise failures.pop(0)
            answered.append(event.id)
            return {"sku": event.data["sku"], "price": "1.00"}

    with TestBus(Flaky) as bus:  # retries 1s, 5s, ...
        # When a requester waits 2 s for the reply
        with pytest.raises(RequestTimeout, match=r"^estimate.requested: no reply within 2s \(request "):
            bus.request("estimate.requested", {"sku": "B", "quantity": 1}, timeout=2)
        # Then it timed out as it would in production (two attempts failed meanwhile, nothing answered)
        assert failures == [] and answered == []
        # and the worker's next attempt, past the request's deadline, does not run the handler: the
        # request expired with its requester's timeout, and is dead-lettered saying so
        with bus.expect_dead_letters():
            bus.advance(10)
        assert answered == []
        [dead] = bus.dead_letters("flaky")
        assert dead.headers["eda-exception-type"] == "Expired" and dead.headers["eda-failure-category"] == "permanent"
        assert "before a handler could take it (eda-expires-at 20" in dead.headers["eda-exception-message"]


def test_a_test_bus_request_without_a_timeout_never_expires(estimates):
    # Given a responder that fails once, then answers
    failures = [RuntimeError("the database is away")]

    class Flaky(Worker):
        name = "flaky"

        @handles("estimate.requested")
        def estimate(self, event, ctx):
            if failures:
                raise failures.pop(0)
            return {"sku": event.data["sku"], "price": "1.00"}

    with TestBus(Flaky) as bus:
        # When a request waits for as long as it takes
        # Then its retry is answered (no deadline: it carries no eda-expires-at)
        assert bus.request("estimate.requested", {"sku": "B", "quantity": 1}).data["sku"] == "B"


# A request's deadline (eda-expires-at), without a broker

def test_a_request_expires_with_its_requesters_timeout_on_the_broker_and_at_the_worker():
    # Given a request sent at 12:00:00.000 UTC whose requester waits 1.5 s
    now = 1_796_558_400.0  # 2026-12-06T12:00:00Z
    expiration, headers = replies.expiry(1.5, now)
    # Then the broker drops it after 1500 ms in a queue, and a worker refuses it after 12:00:01.500
    assert expiration == "1500" and headers == {"eda-expires-at": "2026-12-06T12:00:01.500Z"}
    replies.check_expiry(headers, now + 1.5)  # not past it yet
    with pytest.raises(Expired, match=r"^expired 0.250s before a handler could take it \(eda-expires-at "
                                      r"2026-12-06T12:00:01.500Z: its requester stopped waiting then\): not handled$"):
        replies.check_expiry(headers, now + 1.75)
    assert replies.expiry(0.0001, now)[0] == "1"  # the broker takes no 0 ms TTL as "expires now": at least 1


@pytest.mark.parametrize("value", [None, "", "soon", "2026-12-06T12:00:00", 1_796_558_400, b"\xff", "9" * 100])
def test_an_expiry_that_cannot_be_told_is_no_expiry(value):
    # A header another client set, that is no RFC 3339 time with a zone, never fails the event
    replies.check_expiry({"eda-expires-at": value}, 2_000_000_000.0)
    replies.check_expiry(None, 2_000_000_000.0)


def test_an_expiry_sent_as_bytes_by_another_client_is_read():
    with pytest.raises(Expired):
        replies.check_expiry({"eda-expires-at": b"2026-12-06T12:00:00+01:00"}, 1_796_558_400.0)
