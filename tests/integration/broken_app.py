"""A test project whose workers are defined wrongly, each refused when it starts
(``EDA_APP=tests.integration.broken_app``): a handler that cannot take ``(event, ctx)``, two
handlers of one type spelt two ways, setups that raise (plain and ``async def``), and one whose setup
refuses a bad setting with ``ConfigError``."""

from eda import Worker, handles
from eda.errors import ConfigError


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


class SetupFails(Worker):
    name = "setup-fails"

    def setup(self):
        raise TypeError("expected a str for the mail host,\nnot an int")

    @handles("order.placed")
    def charge(self, event, ctx):
        pass


class AsyncSetupFails(Worker):
    name = "async-setup-fails"

    async def setup(self):
        raise ConnectionRefusedError(111, "Connection refused")

    @handles("order.placed")
    async def charge(self, event, ctx):
        pass


class SetupRefuses(Worker):
    name = "setup-refuses"

    def setup(self):
        raise ConfigError("--mail-host (EDA_SETUP_REFUSES_MAIL_HOST): not a host name: 'smtp:://'")

    @handles("order.placed")
    def charge(self, event, ctx):
        pass
