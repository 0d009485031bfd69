"""An extra header on every event eda publishes: the tenant this deployment serves (``APP_TENANT``), on a
worker's reactions, ``Producer.publish``, ``eda publish`` and the outbox relay alike."""

import os

from eda import Middleware


class TenantHeader(Middleware):
    def __init__(self, tenant: str | None = None):
        self.tenant = tenant or os.environ.get("APP_TENANT", "default")

    def publish(self, message, call_next):
        message.headers["tenant"] = self.tenant
        return call_next(message)
