"""Mistakes eda's annotations let a type checker catch (tests/unit/test_types.py)."""

from eda import Context, Event, Producer, Setting, Settings, Worker, handles


class Billing(Worker):
    name = "billing"
    mail_port = Setting(25, "SMTP port.")

    @handles(42)
    def send(self, event: Event, ctx: Context) -> None:
        ctx.publish(["invoice.sent"], {})
        ctx.publish("invoice.sent", {}, delay="15m")
        self.mail_port.upper()


def main() -> None:
    with Producer(Settings.from_env()) as producer:
        text: str = producer.publish("invoice.requested", {})
