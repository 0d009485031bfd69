"""`--queue-type quorum`: work queues declared as quorum queues with a delivery limit, and a queue of the
other type met with a one-line error saying how to fix it."""

import kombu
import pytest
from amqp.exceptions import PreconditionFailed

from eda.topology import Topology
from tests.support import wait_until
from eda_shop.workers.payment import Payment

pytestmark = pytest.mark.integration


def redeclare(url, topology: Topology, worker_class) -> None:
    """Declare a worker's queue as ``topology`` derives it: succeeds only if the broker has it so."""
    with kombu.Connection(url) as conn:
        topology.work_queue(worker_class.name, worker_class.event_types()).declare(channel=conn.channel())


def test_a_quorum_worker_processes_orders_and_a_classic_redeclare_is_refused(eda, broker, broker_url, namespace,
                                                                              make_order):
    # Given a payment worker on a quorum queue
    eda.worker("payment", "--queue-type=quorum")
    spy = broker.spy("payment.*")
    # When an order is placed, then it is charged
    [order_id] = eda.publish("order-placed", make_order())
    [paid] = spy.wait_for("payment.succeeded")
    assert paid["causationid"] == order_id
    # and the broker holds the queue as quorum with the delivery limit (an equal declare is accepted,
    # a classic one is not)
    redeclare(broker_url, Topology(namespace, queue_type="quorum", delivery_limit=20), Payment)
    with pytest.raises(PreconditionFailed):
        redeclare(broker_url, Topology(namespace), Payment)
    # When the worker is started as classic on it, then it exits with a one-line error naming the first
    # queue it declares (its DLQ: quorum too, as every queue of a quorum worker)
    code, output = eda.run("worker", "payment")
    assert code == 2, output
    assert output == (f"error: queue '{namespace}.payment.dlq' exists with other arguments (x-queue-type is quorum "
                      f"there, none here); delete it (its events go with it) or use the same --queue-type "
                      f"(EDA_QUEUE_TYPE) it was declared with")


def test_declaring_an_existing_classic_queue_as_quorum_fails_in_one_line(eda, broker, namespace):
    # Given the classic topology
    code, output = eda.run("topology", "declare")
    assert code == 0, output
    # When a worker or the topology is declared as quorum on it
    for command in (("worker", "payment", "--queue-type", "quorum"), ("topology", "declare")):
        code, output = eda.run(*command, EDA_QUEUE_TYPE="quorum")
        # Then the queue is named with the fix, in one line and with the config error's exit code
        assert code == 2, output
        [line] = [line for line in output.splitlines() if line.startswith("error:")]
        assert output.splitlines()[-1] == line
        assert line.startswith("error: queue '") and "exists with other arguments" in line
        assert "x-queue-type is none there, quorum here" in line and "--queue-type" in line
        assert "Traceback" not in output
    # and the classic queue is untouched
    assert broker.depth(f"{namespace}.payment") == 0


def test_a_crash_loop_on_a_quorum_queue_ends_in_the_dlq_and_is_replayed_once_fixed(eda, broker, namespace,
                                                                                    make_order):
    # Given quorum queues with a delivery limit of 2, and an order whose consumer crashes on it each time
    code, output = eda.run("topology", "declare", "--queue-type=quorum", "--delivery-limit=2")
    assert code == 0, output
    work, dlq = f"{namespace}.payment", f"{namespace}.payment.dlq"
    [order_id] = eda.publish("order-placed", make_order())
    for _ in range(3):
        with broker.conn.channel() as crashing:  # takes the event and dies: the broker gets it back
            assert crashing.basic_get(work, no_ack=False) is not None
    # Then the broker dead-letters it to the worker's DLQ, and `dlq show` says why
    wait_until(lambda: broker.depth(dlq) == 1, message="the crash-looping order in the DLQ")
    assert broker.depth(work) == 0
    code, output = eda.run("dlq", "show", "payment")
    assert code == 0, output
    assert f"{order_id}  order.placed  failed at " in output
    assert f"dead-lettered by the broker: delivery_limit in {work}" in output
    # When it is replayed, then its copy carries no dead-letter history
    code, output = eda.run("dlq", "replay", "payment")
    assert (code, output) == (0, "replayed 1 event to worker payment")
    [copy] = broker.peek(work)
    assert copy.properties["message_id"] == order_id
    assert not [h for h in copy.headers if h.startswith(("x-death", "x-first-death", "x-last-death"))], copy.headers
    # and a healthy worker on the same queue charges it
    spy = broker.spy("payment.*")
    eda.worker("payment", "--queue-type=quorum", "--delivery-limit=2")
    assert spy.wait_for("payment.succeeded")[0]["causationid"] == order_id
