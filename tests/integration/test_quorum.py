"""`--queue-type quorum`: work queues declared as quorum queues with a delivery limit, and a queue of the
other type met with a one-line error saying how to fix it."""

import kombu
import pytest
from amqp.exceptions import PreconditionFailed

from eda.topology import Topology
from workers.payment import Payment

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
    # When the worker is started as classic on it, then it exits with a one-line error naming the queue
    code, output = eda.run("worker", "payment")
    assert code == 2, output
    assert output == (f"error: queue '{namespace}.payment' exists with other arguments (x-queue-type is quorum "
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
