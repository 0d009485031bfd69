"""A reaction's id derives from the event it reacts to: handling an event again (a redelivery after a lost
connection or a paused worker) publishes its reactions under the same ids, which consumers' processed-
event records absorb. Found by the chaos run (tests/chaos): an order.placed redelivered to the other
payment instance re-published payment.succeeded under a new id, inventory re-published its decision
under another, and shipping, which recognises ids, shipped the order twice. No broker."""

import uuid

from eda.contracts.envelope import new_event
from eda.worker import Context

ITEMS = [{"sku": "A", "quantity": 1}]


def reserved(order_id="o-1"):
    return new_event("inventory.reserved", {"order_id": order_id, "items": ITEMS}, "eda/inventory")


def ship(event, source="eda/shipping"):
    ctx = Context(event, source)
    ctx.publish("order.shipped", {"order_id": event.data["order_id"], "tracking_number": "1Z", "carrier": "UPS"})
    return ctx.reactions[0][0]


def test_the_same_event_handled_twice_publishes_its_reaction_under_the_same_id():
    event = reserved()
    first, again = ship(event), ship(event)
    assert first.id == again.id
    assert uuid.UUID(first.id).version == 5
    assert first.causation_id == again.causation_id == event.id


def test_reactions_to_other_events_or_by_other_workers_have_other_ids():
    event = reserved()
    assert ship(event).id != ship(reserved()).id  # another event, even of the same order
    assert ship(event).id != ship(event, source="eda/other").id  # another worker reacting to the same event
    assert ship(event).id != event.id


def test_several_reactions_of_one_handling_each_have_their_own_id_and_keep_it_when_handled_again():
    event = new_event("payment.succeeded", {"order_id": "o-1", "payment_id": "p-1", "amount": "5.00",
                                            "user_id": "u-1", "items": ITEMS}, "eda/payment")

    def react():
        ctx = Context(event, "eda/inventory")
        ctx.publish("inventory.reserved", {"order_id": "o-1", "items": ITEMS})
        ctx.publish("inventory.depleted", {"sku": "A", "remaining": 1})
        ctx.publish("inventory.depleted", {"sku": "B", "remaining": 0})
        return [reaction.id for reaction, _ in ctx.reactions]

    ids = react()
    assert len(set(ids)) == 3
    assert react() == ids
