"""Work queue arguments per queue type, the one-line message for a queue declared otherwise, and the
queue-type settings."""

import pytest

from eda.errors import ConfigError
from eda.settings import Settings
from eda.topology import Topology, mismatch_message, work_queue_arguments


def test_a_classic_work_queue_dead_letters_to_its_worker_dlq_and_has_no_type_argument():
    assert work_queue_arguments("shop", "payment") == {
        "x-dead-letter-exchange": "shop.dlx", "x-dead-letter-routing-key": "shop.payment"}


def test_a_quorum_work_queue_keeps_the_dlx_and_adds_a_delivery_limit():
    assert work_queue_arguments("shop", "payment", "quorum", 7) == {
        "x-dead-letter-exchange": "shop.dlx", "x-dead-letter-routing-key": "shop.payment",
        "x-queue-type": "quorum", "x-delivery-limit": 7,
        "x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"}


def test_the_topology_takes_queue_type_and_limit_from_settings():
    settings = Settings.from_env({"EDA_NAMESPACE": "shop", "EDA_QUEUE_TYPE": "Quorum", "EDA_DELIVERY_LIMIT": "3"})
    queue = Topology.from_settings(settings).work_queue("payment", ["order.placed"])
    assert queue.durable and not queue.exclusive and not queue.auto_delete  # what a quorum queue needs
    assert queue.queue_arguments["x-queue-type"] == "quorum" and queue.queue_arguments["x-delivery-limit"] == 3
    assert "x-queue-type" not in Topology.from_settings(Settings()).work_queue("payment", []).queue_arguments


@pytest.mark.parametrize("env, message", [
    ({"EDA_QUEUE_TYPE": "stream"}, "--queue-type (EDA_QUEUE_TYPE): 'stream' is not one of classic, quorum"),
    ({"EDA_DELIVERY_LIMIT": "0"}, "--delivery-limit (EDA_DELIVERY_LIMIT): must be at least 1"),
])
def test_a_bad_queue_setting_is_a_config_error(env, message):
    with pytest.raises(ConfigError) as raised:
        Settings.from_env(env)
    assert str(raised.value) == message


@pytest.mark.parametrize("broker_text, difference, option", [
    ("PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'shop.payment' in vhost '/': "
     "received the value 'quorum' of type 'longstr' but current is none",
     "x-queue-type is none there, quorum here", "--queue-type (EDA_QUEUE_TYPE)"),
    ("PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'shop.payment' in vhost '/': "
     "received 'classic' but current is 'quorum'", "x-queue-type is quorum there, classic here", "--queue-type"),
    ("PRECONDITION_FAILED - inequivalent arg 'x-delivery-limit' for queue 'shop.payment' in vhost '/': "
     "received '5' but current is '20'", "x-delivery-limit is 20 there, 5 here", "--delivery-limit"),
    ("PRECONDITION_FAILED - something new", "something new", "--queue-type"),
])
def test_a_queue_declared_otherwise_is_named_with_the_difference_and_the_fix(broker_text, difference, option):
    message = mismatch_message("shop.payment", broker_text)
    assert message.startswith(f"queue 'shop.payment' exists with other arguments ({difference}); delete it")
    assert f"use the same {option}" in message and "\n" not in message
