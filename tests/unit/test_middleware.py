"""Middleware: chains composed once, in order (process-wide outside, a worker's own inside), plain and
async handlers, the start error for a middleware of the other style, and the publish chain (headers,
confirms, a refused publish). No broker: the Producer runs on eda's in-memory broker (memory://)."""

import asyncio
import json
import uuid

import kombu
import pytest

import eda
from eda import Middleware, Outgoing, Producer, Worker, handles
from eda.connection import open_connection
from eda.contracts.envelope import new_event
from eda.errors import DefinitionError, PublishError
from eda.middleware import Chains, checked, from_settings, handling, load, publish_through, publishing
from eda.settings import Settings
from eda.worker import dispatch, dispatch_async


class Recording(Middleware):
    """Writes where the chain went into a shared list."""

    def __init__(self, name, trail):
        self.name, self.trail = name, trail

    def handle(self, event, ctx, call_next):
        self.trail.append(f"{self.name} in")
        try:
            return call_next(event, ctx)
        finally:
            self.trail.append(f"{self.name} out")

    async def handle_async(self, event, ctx, call_next):
        self.trail.append(f"{self.name} in")
        try:
            return await call_next(event, ctx)
        finally:
            self.trail.append(f"{self.name} out")

    def publish(self, message, call_next):
        self.trail.append(f"{self.name} publish")
        message.headers[self.name] = "seen"
        return call_next(message)


class PlainOnly(Middleware):
    def handle(self, event, ctx, call_next):
        return call_next(event, ctx)


class AsyncOnly(Middleware):
    async def handle_async(self, event, ctx, call_next):
        return await call_next(event, ctx)


class Observer(Middleware):
    def on_outcome(self, worker, event_type, outcome, seconds):
        pass


def billing_class(trail, own=(), asynchronous=False):
    def send(self, event, ctx):
        trail.append("handler")
        ctx.publish("invoice.sent", {"invoice_id": event.data["invoice_id"]})

    async def send_async(self, event, ctx):
        send(self, event, ctx)

    return type("Billing", (Worker,), {"name": "billing", "middleware": own,
                                       "send": handles("invoice.requested")(send_async if asynchronous else send)})


def requested():
    return new_event("invoice.requested", {"invoice_id": "i-1", "amount": 5}, "tests")


@pytest.mark.parametrize("asynchronous", [False, True])
def test_process_wide_middleware_wraps_the_worker_s_own_and_the_first_of_a_list_is_outermost(invoices,
                                                                                             asynchronous):
    # Given two process-wide middleware and a worker with two of its own
    trail = []
    a, b, c, d = (Recording(name, trail) for name in "abcd")
    worker = billing_class(trail, own=(c, d), asynchronous=asynchronous)(Settings())
    chains = Chains(worker, [a, b], asynchronous)
    # When an event is handled through the chain composed for the worker
    event = requested()
    ctx = asyncio.run(dispatch_async(worker, event, chains.handle)) if asynchronous \
        else dispatch(worker, event, chains.handle)
    # Then each middleware ran around the next, process-wide outside, and the handler ran once inside
    assert trail == ["a in", "b in", "c in", "d in", "handler", "d out", "c out", "b out", "a out"]
    assert [r.type for r, _ in ctx.reactions] == ["invoice.sent"]
    assert ctx.worker is worker and ctx.event is event


def test_without_middleware_around_handling_the_handler_is_called_directly(invoices):
    # Given middleware that only observes or only publishes
    trail = []
    worker = billing_class(trail)(Settings())
    chains = Chains(worker, [Observer(), Middleware()], False)
    publish_only = type("PublishOnly", (Middleware,), {"publish": lambda self, message, call_next: call_next(message)})
    # Then there is no handling chain at all: dispatch calls the handler itself
    assert chains.handle is None
    assert Chains(worker, [publish_only()], False).handle is None
    assert Chains(worker, [publish_only()], False).publish is not None
    assert Chains(worker, [Observer()], False).publish is None
    assert len(chains.on_outcome) == 1 and chains.on_settled == [] and chains.on_published == []


def test_a_middleware_may_answer_without_calling_the_handler_and_sees_its_exception(invoices):
    class Skip(Middleware):
        def handle(self, event, ctx, call_next):
            if event.data["invoice_id"] == "skip":
                return None  # not handled: acked without reactions
            try:
                return call_next(event, ctx)
            except RuntimeError as exc:
                raise RuntimeError(f"wrapped: {exc}") from exc

    trail = []

    def boom(self, event, ctx):
        trail.append("handler")
        raise RuntimeError("gateway down")

    Failing = type("Failing", (Worker,), {"name": "failing", "boom": handles("invoice.requested")(boom)})
    worker = Failing(Settings())
    chain = handling(worker, [Skip()], asynchronous=False)
    skipped = new_event("invoice.requested", {"invoice_id": "skip", "amount": 1}, "tests")
    assert dispatch(worker, skipped, chain).reactions == [] and trail == []
    with pytest.raises(RuntimeError, match="wrapped: gateway down"):
        dispatch(worker, requested(), chain)
    assert trail == ["handler"]


@pytest.mark.parametrize("middleware, asynchronous, has, lacks", [
    (PlainOnly(), True, "handle", "handle_async"),
    (AsyncOnly(), False, "handle_async", "handle"),
])
def test_a_middleware_for_the_other_style_of_handler_is_a_start_error_naming_both(invoices, middleware,
                                                                                  asynchronous, has, lacks):
    worker = billing_class([], own=(middleware,), asynchronous=asynchronous)(Settings())
    with pytest.raises(DefinitionError) as err:
        Chains(worker, [], asynchronous)
    message = str(err.value)
    assert f"middleware {type(middleware).__module__}.{type(middleware).__qualname__}" in message
    assert "worker 'billing'" in message and f"it has {has} but no {lacks}" in message
    assert "\n" not in message and err.value.exit_code == 2


def test_a_middleware_with_both_styles_or_neither_wraps_either_kind_of_worker(invoices):
    for asynchronous in (False, True):
        worker = billing_class([], asynchronous=asynchronous)(Settings())
        Chains(worker, [Recording("r", []), Observer()], asynchronous)


@pytest.mark.parametrize("middleware, message", [
    ([PlainOnly], "middleware tests.unit.test_middleware.PlainOnly is a class: give an instance, PlainOnly(...)"),
    (PlainOnly, "middleware is a list or tuple of instances: (PlainOnly(...),) (mind the comma)"),
    ([lambda event, ctx, call_next: None], "is not an eda.Middleware"),
    (PlainOnly(), "middleware is a list or tuple of instances: (PlainOnly(...),) (mind the comma)"),
    ([type("Wrong", (Middleware,), {"handle_async": lambda self, event, ctx, call_next: None})()],
     "handle_async must be an `async def`"),
])
def test_what_is_not_a_list_of_middleware_instances_is_refused_saying_what(middleware, message):
    with pytest.raises(DefinitionError) as err:
        checked(middleware, "worker 'billing'")
    assert str(err.value).startswith("worker 'billing': ") and message in str(err.value)


def test_middleware_and_outgoing_are_part_of_eda_s_api():
    assert eda.Middleware is Middleware and eda.Outgoing is Outgoing
    assert {"Middleware", "Outgoing"} <= set(eda.__all__)


# Publishing

def outgoing(trail, callback=None, send=None):
    event = new_event("invoice.sent", {"invoice_id": "i-1"}, "tests")

    def sent(message):
        message.sent = True
        trail.append(("sent", dict(message.headers), message.body))

    return Outgoing(event, "ns.events", event.type, b'{"id": "x"}', {}, {"message_id": event.id},
                    callback=callback, send=send or sent)


def test_publish_middleware_runs_in_order_changes_headers_and_hears_the_confirm_before_the_caller(invoices):
    # Given two publish middleware, the second reading the broker's answer
    trail = []

    class Confirmed(Middleware):
        def publish(self, message, call_next):
            message.on_confirm(lambda error: trail.append(("middleware heard", error)))
            message.body = b'{"id": "y"}'
            return call_next(message)

    chain = publishing([Recording("tenant", trail), Confirmed()])
    message = outgoing(trail, callback=lambda error: trail.append(("caller heard", error)))
    # When an event is published through them and the broker confirms it
    publish_through(chain, message)
    message.settle(None)
    # Then the message went out as they left it, and the middleware heard the confirm before the caller
    assert trail == ["tenant publish", ("sent", {"tenant": "seen"}, b'{"id": "y"}'), ("middleware heard", None),
                     ("caller heard", None)]
    late = []
    message.on_confirm(late.append)  # asked after the answer: told at once
    assert late == [None]


def test_a_publish_middleware_that_raises_or_does_not_call_next_fails_the_publish_and_sends_nothing(invoices):
    class Refuse(Middleware):
        def publish(self, message, call_next):
            raise PermissionError("no tenant")

    class Drop(Middleware):
        def publish(self, message, call_next):
            return None

    for middleware, expected in ((Refuse(), "no tenant"), (Drop(), "returned without calling call_next")):
        trail, heard = [], []
        message = outgoing(trail, callback=heard.append)
        publish_through(publishing([middleware]), message)
        assert trail == [] and len(heard) == 1 and expected in str(heard[0])
    assert isinstance(heard[0], PublishError)


def test_an_error_of_the_send_itself_propagates_and_one_after_the_send_leaves_the_confirm_to_settle_it(invoices,
                                                                                                      caplog):
    def lost(message):
        message.sent = True
        message.send_failed = True
        raise ConnectionResetError("socket closed")

    with pytest.raises(ConnectionResetError):
        publish_through(publishing([Recording("r", [])]), outgoing([], send=lost))

    class Late(Middleware):
        def publish(self, message, call_next):
            call_next(message)
            raise ValueError("bookkeeping failed")

    heard, trail = [], []
    message = outgoing(trail, callback=heard.append)
    publish_through(publishing([Late()]), message)
    assert len(trail) == 1 and heard == []  # sent; the broker's answer settles it, once
    message.settle(None)
    assert heard == [None] and "failed after invoice.sent was sent" in caplog.text


def test_a_producer_s_middleware_adds_a_header_to_what_it_publishes(invoices):
    namespace = f"mw{uuid.uuid4().hex[:6]}"

    class Tenant(Middleware):
        def publish(self, message, call_next):
            message.headers["tenant"] = "acme"
            return call_next(message)

    with open_connection(Settings(broker_url="memory://")) as conn:
        queue = kombu.Queue(f"{namespace}.spy", kombu.Exchange(f"{namespace}.events", "topic"), "invoice.#")
        queue(conn.channel()).declare()
        with Producer(Settings(broker_url="memory://", namespace=namespace), middleware=[Tenant()]) as producer:
            event = producer.publish("invoice.requested", {"invoice_id": "i-9", "amount": 3})
        message = queue(conn.channel()).get(no_ack=True)
    assert message.headers["tenant"] == "acme"
    assert json.loads(message.body)["id"] == event.id


# EDA_MIDDLEWARE

def test_eda_middleware_names_instances_classes_and_lists_by_import_path():
    found = load("docs.examples.tenant_header:TenantHeader, tests.unit.test_middleware:EVERYWHERE,"
                 "tests.unit.test_middleware.PLAIN")
    assert [type(m).__name__ for m in found] == ["TenantHeader", "Observer", "Recording", "PlainOnly"]
    assert from_settings(Settings(middleware="tests.unit.test_middleware:PLAIN"))[0] is PLAIN
    assert from_settings(Settings()) == []


@pytest.mark.parametrize("text, message", [
    ("nowhere.at_all:Thing", "cannot import 'nowhere.at_all'"),
    ("tests.unit.test_middleware:Missing", "module 'tests.unit.test_middleware' has no 'Missing'"),
    ("tests.unit.test_middleware:requested", "is not an eda.Middleware"),
    ("justaname", "'justaname' is not module:name"),
])
def test_a_wrong_eda_middleware_is_one_line_naming_the_setting(text, message):
    with pytest.raises(DefinitionError) as err:
        load(text)
    assert str(err.value).startswith("--middleware (EDA_MIDDLEWARE): ") and message in str(err.value)
    assert err.value.exit_code == 2


EVERYWHERE = [Observer(), Recording("everywhere", [])]
PLAIN = PlainOnly()
