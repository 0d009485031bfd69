"""A test project with a worker class that has handlers but no name (``EDA_APP=tests.integration.nameless_app``):
refused when the app's workers are discovered. Its team base class, without handlers, needs none."""

from eda import Worker, handles


class TeamBase(Worker):
    pass


class Shipping(TeamBase):
    @handles("order.placed")
    def ship(self, event, ctx):
        pass
