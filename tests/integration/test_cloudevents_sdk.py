"""Teams that are not on eda publish with the CNCF CloudEvents SDK, in either content mode of its
RabbitMQ binding; eda's workers handle both, and eda's own events parse in the SDK."""

import pytest
from cloudevents.core.bindings import rabbitmq
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from tests.support import handled, wait_until

pytestmark = pytest.mark.integration


def sdk_order(make_order, mode: str) -> tuple[CloudEvent, rabbitmq.RabbitMQMessage]:
    event = CloudEvent(attributes={"type": "order.placed", "source": "/other-team/checkout",
                                   "datacontenttype": "application/json", "correlationid": f"sdk-{mode}"},
                       data=make_order())
    convert = rabbitmq.to_binary if mode == "binary" else rabbitmq.to_structured
    return event, convert(event, JSONFormat())


@pytest.mark.parametrize("mode", ["structured", "binary"])
def test_an_order_published_with_the_sdk_is_charged_in_either_content_mode(eda, broker, make_order, mode):
    worker = eda.worker("payment")
    spy = broker.spy("payment.*")
    event, message = sdk_order(make_order, mode)
    broker.publish("order.placed", message.body, headers=message.headers, content_type=message.content_type,
                   message_id=event.get_id())
    worker.wait_for_log(handled("order.placed", worker="payment"))
    [reaction] = spy.wait_for("payment.succeeded")
    assert reaction["correlationid"] == f"sdk-{mode}" and reaction["causationid"] == event.get_id()
    message = spy.message_of(reaction["id"])
    parsed = rabbitmq.from_structured(rabbitmq.RabbitMQMessage(headers={}, content_type=message.content_type,
                                                               body=message.body), JSONFormat())
    assert parsed.get_type() == "payment.succeeded" and parsed.get_data()["orderId"] == event.get_data()["orderId"]


def test_a_binary_mode_event_missing_an_attribute_is_dead_lettered_with_the_reason(eda, broker, namespace,
                                                                                     make_order):
    eda.worker("payment")
    event, message = sdk_order(make_order, "binary")
    headers = {k: v for k, v in message.headers.items() if k != "ce-source"}
    broker.publish("order.placed", message.body, headers=headers, content_type=message.content_type)
    wait_until(lambda: broker.depth(f"{namespace}.payment.dlq") == 1, message="the event in the DLQ")
    [dead] = broker.peek(f"{namespace}.payment.dlq")
    assert "'source' is missing" in dead.headers["eda-exception-message"]
