"""A test project whose workers are defined wrongly, each refused when it starts
(``EDA_APP=tests.integration.broken_app``): a handler that cannot take ``(event, ctx)``, and two
handlers of one type spelt two ways."""

from eda import Worker, handles


class BadSignature(Worker):
    name = "bad-signature"

    @handles("order.placed")
    def charge(self, event):
        pass


class Doubled(Worker):
    name = "doubled"

    @handles("order-placed")
    def charge(self, event, ctx):
        pass

    @handles("order.placed")
    def charge_again(self, event, ctx):
        pass
