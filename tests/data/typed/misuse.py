"""Mistakes eda's annotations let a type checker catch (tests/unit/test_types.py)."""

from eda import Context, Event, Producer, Settings, Worker, handles


class Billing(Worker):
    name = "billing"

    @handles(42)
    def send(self, event: Event, ctx: Context) -> None:
        ctx.publish(["invoice.sent"], {})
        ctx.publish("invoice.sent", {}, delay="15m")


def main() -> None:
    with Producer(Settings.from_env()) as producer:
        text: str = producer.publish("invoice.requested", {})
