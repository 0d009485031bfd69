"""Middleware: code wrapped around eda's handling and publishing, and told of each step of a worker's life.

    from eda import Middleware

    class TenantHeader(Middleware):
        def publish(self, message, call_next):
            message.headers["tenant"] = "acme"
            return call_next(message)

A middleware overrides what it needs; each default passes through, and a method left as it is is left
out of its chain. Lists are ordered, the first outermost: process-wide middleware (``Runner(...,
middleware=)``, ``EDA_MIDDLEWARE``, eda's own tracing, metrics and systemd notification) wraps a
worker's own (its class attribute ``middleware``). Chains are composed once, when a worker or producer
starts; with none the handler is called, and the event published, directly.

The package by concept: ``api`` (Middleware and Outgoing, what a middleware's author sees), ``chains``
(composing them around handling and publishing) and ``lists`` (checking the lists given, loading
``EDA_MIDDLEWARE``); every name is importable from ``eda.middleware`` itself.
"""

from eda.middleware.api import DEAD_LETTERED, OK, REJECTED, REQUEUED, RETRIED, Middleware, Outgoing, overrides
from eda.middleware.chains import Chains, handling, publish_through, publishing
from eda.middleware.lists import checked, from_settings, load, unique

__all__ = ["DEAD_LETTERED", "OK", "REJECTED", "REQUEUED", "RETRIED", "Chains", "Middleware", "Outgoing", "checked",
           "from_settings", "handling", "load", "overrides", "publish_through", "publishing", "unique"]
