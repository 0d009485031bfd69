"""Mistakes fail fast and loud: what can be known before a worker starts is a start error
(DefinitionError: exit 2 under `eda worker`, raised by Runner and on entering a TestBus); what shows
only when a handler runs (a reaction of a type no contract knows, a handler the call cannot take) is
dead-lettered at its first attempt as a programming error. What may pass with time is still retried."""

import functools
import re

import pytest

from eda import Worker, handles
from eda.errors import BrokerUnavailable, ConfigError, DefinitionError, UnknownEvent
from eda.runtime import failures
from eda.runtime.runner import Runner
from eda.settings import Settings
from eda.testing import TestBus
from eda.worker_checks import check

REQUEST = {"invoice_id": "i-1", "amount": "5.00"}


def drops_ctx(method):
    """A team's decorator whose wrapper forgets ctx: its signature (after functools.wraps) looks right,
    only the call shows it."""

    @functools.wraps(method)
    def wrapper(self, event):
        return method(self, event, None)

    return wrapper


@pytest.fixture
def mistakes(invoices):
    class Mistakes(Worker):
        name = "mistakes"
        what = None

        @handles("invoice.requested")
        def send(self, event, ctx):
            if self.what == "unknown reaction":
                ctx.publish("invoice.lost", {"invoice_id": "i-1"})
            elif self.what == "key error":
                event.data["no_such_field"]
            elif self.what == "type error inside":
                event.data["invoice_id"] + 1

    return Mistakes


def settle(worker_class, what, delays="1s,5s"):
    worker_class.what = what
    with TestBus(worker_class, settings=Settings(retry_delays=delays)) as bus, bus.expect_dead_letters():
        bus.publish("invoice.requested", REQUEST)
        return bus.dead_letters()


def test_a_reaction_of_a_type_no_contract_knows_is_dead_lettered_at_its_first_attempt(mistakes):
    [dead] = settle(mistakes, "unknown reaction")
    assert (dead.exception_type, dead.attempts, dead.headers[failures.CATEGORY]) == ("UnknownEvent", 1, "programming")
    assert "unknown event 'invoice.lost'" in dead.reason


def test_a_handler_the_call_cannot_take_is_dead_lettered_at_its_first_attempt(invoices):
    class Wrapped(Worker):
        name = "wrapped"

        @handles("invoice.requested")
        @drops_ctx
        def send(self, event, ctx):
            pass

    check([Wrapped])  # its signature, as inspect reads it through functools.wraps, takes (event, ctx)
    [dead] = settle(Wrapped, None)
    assert (dead.exception_type, dead.attempts, dead.headers[failures.CATEGORY]) == ("TypeError", 1, "programming")
    assert "positional argument" in dead.reason


@pytest.mark.parametrize("what, error", [("key error", "KeyError"), ("type error inside", "TypeError")])
def test_an_error_inside_the_handler_may_depend_on_the_data_and_is_retried(mistakes, what, error):
    [dead] = settle(mistakes, what, delays="1s,5s")
    assert (dead.exception_type, dead.attempts, dead.headers[failures.CATEGORY]) == (error, 3, "transient")


def test_a_type_error_raised_outside_eda_is_transient_and_one_raised_by_edas_call_is_programming():
    def inside():
        return None + 1

    try:
        inside()
    except TypeError as exc:
        assert failures.classify(exc) == failures.TRANSIENT
    assert failures.classify(UnknownEvent("unknown event 'x'")) == failures.PROGRAMMING
    assert failures.next_delay(failures.PROGRAMMING, 0, (1000, 5000)) is None


def bad_signature_worker(**handler):
    return type("Bad", (Worker,), {"name": "bad", "__module__": __name__,
                                   **{attr: handles("invoice.requested")(f) for attr, f in handler.items()}})


@pytest.mark.parametrize("handler, problem", [
    (lambda self, event: None, "send(self, event) takes only 1 of them"),
    (lambda self: None, "send(self) takes none of them"),
    (lambda event, ctx: None, "send(event, ctx) takes only 1 of them (event is the worker: self)"),
    (lambda self, event, ctx, extra: None, "send(self, event, ctx, extra) also wants extra, which eda does not "
                                           "pass: give it a default"),
    (lambda self, event, ctx, *, key: None, "send(self, event, ctx, *, key) also wants key, which eda does not "
                                            "pass: give it a default"),
])
def test_a_handler_whose_signature_cannot_take_event_and_ctx_is_a_start_error_saying_why(invoices, handler, problem):
    bad = bad_signature_worker(send=handler)
    message = f"{__name__}.Bad.send: eda calls handlers with (event, ctx); {problem}"
    with pytest.raises(DefinitionError) as refused:
        check([bad])
    assert str(refused.value) == message
    with pytest.raises(DefinitionError, match=re.escape(problem)):
        Runner([bad], Settings())
    bus = TestBus(bad)
    with pytest.raises(DefinitionError, match=re.escape(problem)):
        bus.__enter__()


@pytest.mark.parametrize("handler", [
    lambda self, event, ctx, extra=None: None, lambda self, *args: None, lambda self, event, ctx, **kw: None,
    staticmethod(lambda event, ctx: None), classmethod(lambda cls, event, ctx: None),
])
def test_any_signature_that_takes_event_and_ctx_is_accepted(invoices, handler):
    check([bad_signature_worker(send=handler)])


def test_an_async_handler_is_checked_too(invoices):
    async def send(self, event):
        pass

    with pytest.raises(DefinitionError, match=r"send\(self, event\) takes only 1 of them"):
        check([bad_signature_worker(send=send)])


def test_a_second_handler_for_one_type_is_an_error_when_the_class_is_created():
    with pytest.raises(DefinitionError, match=r"\.Twice: two handlers of 'invoice.requested': send and resend; one "
                                              r"event type has one handler in a worker"):
        class Twice(Worker):
            name = "twice"

            @handles("invoice.requested")
            def send(self, event, ctx):
                pass

            @handles("invoice.requested")
            def resend(self, event, ctx):
                pass


def test_a_subclass_adding_a_handler_for_a_type_its_base_handles_is_an_error():
    class Base(Worker):
        @handles("invoice.requested")
        def send(self, event, ctx):
            pass

    with pytest.raises(DefinitionError, match="two handlers of 'invoice.requested': send and send_again"):
        class Again(Base):
            name = "again"

            @handles("invoice.requested")
            def send_again(self, event, ctx):
                pass


def test_a_subclass_overriding_its_bases_handler_replaces_it():
    class Base(Worker):
        @handles("invoice.requested")
        def send(self, event, ctx):
            pass

    class Other(Base):
        name = "other"

        @handles("invoice.sent")  # the same method, now for another type
        def send(self, event, ctx):
            pass

    assert Other._eda_handler_names == {"invoice.sent": "send"}


def test_two_spellings_of_one_type_are_a_start_error(invoices):
    class Spelt(Worker):
        name = "spelt"

        @handles("invoice-requested")
        def send(self, event, ctx):
            pass

        @handles("invoice.requested")
        def resend(self, event, ctx):
            pass

    with pytest.raises(DefinitionError, match=r"two handlers of 'invoice.requested': send \('invoice-requested'\) and "
                                              r"resend \('invoice.requested'\)"):
        check([Spelt])


def test_one_method_marked_twice_is_an_error():
    with pytest.raises(DefinitionError, match="one @handles per handler, not 'invoice.sent' and 'invoice.requested'"):
        @handles("invoice.requested")
        @handles("invoice.sent")
        def send(self, event, ctx):
            pass


def test_a_worker_without_a_name_is_a_start_error(invoices):
    class Nameless(Worker):
        @handles("invoice.requested")
        def send(self, event, ctx):
            pass

    with pytest.raises(DefinitionError, match=r"\.Nameless: a worker needs a name"):
        check([Nameless])
    with pytest.raises(DefinitionError, match="a worker needs a name"):
        Runner([Nameless], Settings())
    bus = TestBus(Nameless)
    with pytest.raises(DefinitionError, match="a worker needs a name"):
        bus.__enter__()


def test_a_base_class_without_handlers_needs_no_name(invoices):
    class TeamBase(Worker):
        def setup(self):
            self.ready = True

    class Billing(TeamBase):
        name = "billing"

        @handles("invoice.requested")
        def send(self, event, ctx):
            pass

    check([Billing])


def test_the_dead_letter_headers_say_the_category():
    from eda.errors import ContractError, PermanentError

    for error, category in ((ContractError("bad"), "contract"), (PermanentError("no"), "permanent"),
                            (UnknownEvent("unknown event 'x'"), "programming"), (KeyError("k"), "transient")):
        headers = failures.dead_letter_headers({}, {"exchange": "e", "routing_key": "r"}, error, worker="w",
                                               queue="q", attempts=0)
        assert headers[failures.CATEGORY] == category
    assert failures.CATEGORY not in failures.cleaned_headers(headers)  # a replayed event starts afresh


def test_a_type_error_raised_by_eda_code_the_handler_called_is_from_inside_the_handler(invoices):
    from eda.breaker import Breaker

    class Charging(Worker):
        name = "charging"

        def setup(self):
            self.breaker = Breaker(fail_max=100)

        @handles("invoice.requested")
        def send(self, event, ctx):
            self.breaker.call(lambda order_id: None)  # the guarded call is wrong: raised in eda's breaker

    [dead] = settle(Charging, None)
    assert (dead.exception_type, dead.attempts, dead.headers[failures.CATEGORY]) == ("TypeError", 3, "transient")


def test_a_handler_the_call_cannot_take_is_a_programming_error_inside_a_middleware_too(invoices):
    from eda import Middleware

    class Timing(Middleware):  # a team's middleware: its frame sits between eda's call and the handler
        def handle(self, event, ctx, call_next):
            return call_next(event, ctx)

    class Wrapped(Worker):
        name = "wrapped"
        middleware = [Timing()]

        @handles("invoice.requested")
        @drops_ctx
        def send(self, event, ctx):
            pass

    [dead] = settle(Wrapped, None)
    assert (dead.exception_type, dead.attempts, dead.headers[failures.CATEGORY]) == ("TypeError", 1, "programming")
    assert "test_fail_fast.py" in dead.traceback and "in handle" in dead.traceback  # the middleware ran


@pytest.mark.parametrize("raised, exit_code", [(KeyError("mail_host"), 1), (BrokerUnavailable("gone"), 3)])
def test_a_setup_that_raises_stops_the_bus_with_one_line_naming_the_worker(invoices, caplog, raised, exit_code):
    from eda.errors import SetupFailed

    # Given a worker whose setup raises
    class Mailer(Worker):
        name = "mailer"

        def setup(self):
            raise raised

        @handles("invoice.requested")
        def send(self, event, ctx):
            pass

    # When a bus starts it
    with pytest.raises(SetupFailed) as failed:
        with TestBus(Mailer):
            pass
    # Then the error names the worker and the exception, keeps an eda error's exit code, and chains the cause
    assert str(failed.value) == f"worker 'mailer' could not start: setup raised {type(raised).__name__}: {raised}"
    assert failed.value.exit_code == exit_code and failed.value.__cause__ is raised
    # And it is logged at ERROR: the traceback of a bug; an eda error's message alone
    [record] = [r for r in caplog.records if r.levelname == "ERROR"]
    assert record.worker == "mailer"
    if isinstance(raised, BrokerUnavailable):
        assert not record.exc_info and record.error == "BrokerUnavailable: gone"
    else:
        assert record.exc_info[1] is raised


def test_a_config_error_from_setup_is_raised_as_it_is(invoices):
    class Mailer(Worker):
        name = "mailer"

        def setup(self):
            raise ConfigError("--mail-host (EDA_MAILER_MAIL_HOST): not a host name")

        @handles("invoice.requested")
        def send(self, event, ctx):
            pass

    with pytest.raises(ConfigError, match=r"^--mail-host \(EDA_MAILER_MAIL_HOST\): not a host name$"):
        with TestBus(Mailer):
            pass
