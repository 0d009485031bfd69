"""The same scenarios through a TestBus and through `eda worker` on RabbitMQ end the same way: the events
published (types and data), the dead letters (worker, exception type, attempts) and the retries.

The workers are tests/integration/parity_app.py's: parity-front answers each request as its mode says (and
records what it processed), parity-follower answers parity-front's reaction.
"""

import logging
import time

import pytest

from eda.connection import open_connection
from eda.contracts.envelope import decode, new_event
from eda.publishing.publisher import Publisher
from eda.settings import Settings
from eda.testing import TestBus
from eda.topology import Topology
from tests.conftest import TEST_RETRY_DELAYS
from tests.registry_scope import contracts_of
from tests.support import wait_until

pytestmark = pytest.mark.integration

APP = "tests.integration.parity_app"
WORKERS = ("parity-front", "parity-follower")
RETRYING = "failed; retrying"  # the start of the line Settlement logs for each retry, wherever it runs


def request(request_id: str, mode: str):
    return new_event("parity.requested", {"request_id": request_id, "mode": mode}, "test/parity")


def twice(event):
    return [event, event]  # the same id: a producer's retry after a lost confirm


SCENARIOS = {
    "happy path with reactions": lambda: [request("r-ok", "ok"), request("r-ok-2", "ok")],
    "transient failure retried, then handled": lambda: [request("r-transient", "transient")],
    "permanent failure dead-lettered": lambda: [request("r-permanent", "permanent")],
    "reaction breaking its contract": lambda: [request("r-bad", "bad-reaction")],
    "a duplicate handled once": lambda: twice(request("r-dup", "ok")),
}


def outcome(published, dead, retries) -> dict:
    """What a scenario's end is compared by: ids (fresh on each run) left out, order left out."""
    return {"published": sorted((e.type, sorted(e.data.items())) for e in published),
            "dead letters": sorted(dead), "retries": retries}


@pytest.fixture(scope="module")
def app():
    """parity_app's contracts and workers, registered for this module's tests only."""
    with contracts_of(APP) as module:
        yield module


@pytest.fixture
def parity_queues(broker):
    """parity_app's worker queues in the test's namespace, deleted afterwards."""
    yield
    topology = Topology(broker.namespace, Settings(retry_delays=TEST_RETRY_DELAYS).retry_delays_ms)
    channel = broker.conn.channel()
    for worker in WORKERS:
        topology.delete_worker(channel, worker)


def on_a_test_bus(app, events, caplog, tmp_path) -> dict:
    settings = Settings(retry_delays=TEST_RETRY_DELAYS, state_dir=tmp_path / "testbus")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="eda.worker"):
        with TestBus(app.ParityFront, app.ParityFollower, settings=settings, dead_letters="allow") as bus:
            for event in events:
                bus.publish(event)
            published = bus.published()
            dead = [(d.worker, d.exception_type, d.attempts) for d in bus.dead_letters()]
    retries = sum(1 for r in caplog.records if r.name == "eda.worker" and r.getMessage().startswith(RETRYING))
    return outcome(published, dead, retries)


def under_eda_worker(eda, broker, broker_url, events):
    """Run the scenario on RabbitMQ; return a function reading its outcome so far."""
    spy = broker.spy()
    worker = eda.worker(*WORKERS, EDA_APP=APP)
    settings = Settings(broker_url=broker_url, namespace=broker.namespace)
    conn = open_connection(settings)
    try:
        Publisher(conn).publish_events(events, Topology(broker.namespace).events.name)
    finally:
        conn.release()

    def so_far() -> dict:
        spy.events  # noqa: B018 - reads what reached the spy
        published = [decode(m.body) for m in spy.seen]
        dead = [(w, letter.headers.get("eda-exception-type"), letter.headers.get("eda-retry-count", 0) + 1)
                for w in WORKERS for letter in broker.dead_letters(w)]
        retries = worker.count(lambda r: str(r.get("message", "")).startswith(RETRYING))
        return outcome(published, dead, retries)

    return so_far


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_a_scenario_ends_the_same_on_a_test_bus_and_under_eda_worker(scenario, app, eda, broker, broker_url,
                                                                    parity_queues, caplog, tmp_path):
    # Given a scenario's events
    events = SCENARIOS[scenario]()
    # When they run through a TestBus, and through `eda worker` on RabbitMQ
    expected = on_a_test_bus(app, events, caplog, tmp_path)
    assert expected["published"], "the scenario published nothing on the test bus"
    real = under_eda_worker(eda, broker, broker_url, events)
    # Then the real workers come to the same end, and stay there past every retry delay
    try:
        wait_until(lambda: real() == expected, timeout=30, interval=0.2, message=f"the outcome of {scenario!r}")
    except AssertionError:
        assert real() == expected
    time.sleep(1.0)
    assert real() == expected
