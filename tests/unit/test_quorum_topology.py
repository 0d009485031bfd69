"""Under --queue-type quorum every queue a worker has is a quorum queue (a cluster that loses the node of
a classic queue cannot declare it), and every quorum queue that dead-letters does it at least once."""

import pytest

from eda.topology import Topology, mismatch_message, queue_arguments

AT_LEAST_ONCE = {"x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"}


def test_every_queue_of_a_quorum_worker_is_quorum():
    topology = Topology("shop", (1000, 5000), queue_type="quorum", delivery_limit=9)
    work = topology.work_queue("payment", ["order.placed"])
    dlq = topology.dead_letter_queue("payment")
    retries = topology.retry_queues("payment")
    for queue in (work, dlq, *retries.values()):
        assert queue.queue_arguments["x-queue-type"] == "quorum", queue.name
        assert queue.durable and not queue.exclusive and not queue.auto_delete, queue.name
    assert sorted(q.name for q in (work, dlq, *retries.values())) == sorted(topology.worker_queue_names("payment"))


def test_quorum_retry_queues_return_events_at_least_once_after_their_delay():
    retry = Topology("shop", (1000,), queue_type="quorum").retry_queues("payment")[1000]
    assert retry.queue_arguments == {"x-queue-type": "quorum", "x-message-ttl": 1000, "x-dead-letter-exchange": "",
                                     "x-dead-letter-routing-key": "shop.payment", **AT_LEAST_ONCE}


def test_a_quorum_dlq_dead_letters_nowhere_and_has_no_delivery_limit():
    # dlq show reads with basic.get and gives events back: a delivery limit would drop them one day
    assert Topology("shop", queue_type="quorum").dead_letter_queue("payment").queue_arguments == {
        "x-queue-type": "quorum"}


def test_classic_queues_keep_their_arguments():
    topology = Topology("shop", (1000,))
    assert not topology.dead_letter_queue("payment").queue_arguments
    assert topology.retry_queues("payment")[1000].queue_arguments == {
        "x-message-ttl": 1000, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "shop.payment"}
    assert "x-queue-type" not in topology.work_queue("payment", []).queue_arguments


@pytest.mark.parametrize("queue_type, given, limit, expected", [
    ("classic", {"x-single-active-consumer": True}, 20, {"x-single-active-consumer": True}),
    ("quorum", {"x-single-active-consumer": True}, None, {"x-single-active-consumer": True, "x-queue-type": "quorum"}),
    ("quorum", {"x-dead-letter-exchange": "shop.dlx"}, 5,
     {"x-dead-letter-exchange": "shop.dlx", "x-queue-type": "quorum", "x-delivery-limit": 5, **AT_LEAST_ONCE}),
])
def test_queue_arguments_is_the_one_place_a_queue_gets_its_type(queue_type, given, limit, expected):
    assert queue_arguments(queue_type, given, delivery_limit=limit) == expected
    assert given == {k: v for k, v in expected.items() if k in given}  # the caller's dict is not changed


def test_a_quorum_queue_of_an_earlier_eda_is_named_with_the_way_out():
    message = mismatch_message("shop.payment", (
        "PRECONDITION_FAILED - inequivalent arg 'x-dead-letter-strategy' for queue 'shop.payment' in vhost '/': "
        "received the value 'at-least-once' of type 'longstr' but current is none"))
    assert message == ("queue 'shop.payment' exists with other arguments (x-dead-letter-strategy is none there, "
                       "at-least-once here): an earlier eda declared it, whose dead-lettering a node failure can "
                       "lose; let it drain, then delete it and eda declares it again")
