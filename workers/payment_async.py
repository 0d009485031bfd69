"""The payment worker with ``async def`` handlers: the same worker, its gateway calls awaited on an event loop.

    eda --app workers.payment_async worker payment

It is named ``payment`` on purpose: the same queue, contracts, settings and state (the ``charges`` and
``refunds`` tables) as ``eda_shop.workers.payment.Payment``, so a deployment switches between the two styles
without moving queued orders or losing the record of charges, and a sync and an async instance may
even share one queue. ``--app`` (``EDA_APP``) picks it: an app's workers win over installed ones.

Each call awaits the gateway over aiohttp's keep-alive connection pool (at most ``--concurrency``
connections), so hundreds of orders can wait on the gateway at once without a thread each. State
stays in the worker's store: PostgreSQL's calls go to one thread of their own (a round trip would stop
the loop and every order on it), SQLite's run on the loop (a local file, microseconds).
"""

import asyncio
from concurrent.futures import ThreadPoolExecutor

import aiohttp
import orjson

from eda import PermanentError, handles, open_store
from eda_shop.workers import gateway as gateways
from eda_shop.workers.gateway import GatewayError
from eda_shop.workers import payment  # the module, not its class: discovery would see two workers named payment


class AsyncHttpGateway:
    """The gateway's HTTP JSON API through an aiohttp session; made on the loop that awaits its calls.

    At most ``pool_size`` keep-alive connections; a call takes at most ``timeout`` seconds in all (a new
    connection at most CONNECT_TIMEOUT of them). Answers map as the sync client's do: 5xx, timeouts and
    refused connections raise GatewayError (transient, counted by the breaker), 402 is a decline,
    another 4xx a PermanentError."""

    def __init__(self, base_url: str, timeout: float, pool_size: int):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=pool_size),
            timeout=aiohttp.ClientTimeout(total=timeout, sock_connect=min(timeout, gateways.CONNECT_TIMEOUT)))

    async def request(self, path: str, body: dict, key: str) -> tuple[int, dict]:
        headers = {"Content-Type": "application/json", "Idempotency-Key": key}
        try:
            async with self.session.post(self.base_url + path, data=orjson.dumps(body), headers=headers,
                                         allow_redirects=False) as resp:
                status, data = resp.status, await resp.read()
        except asyncio.TimeoutError:
            raise GatewayError(f"gateway at {self.base_url} did not answer within {self.timeout:g}s") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise GatewayError(f"gateway at {self.base_url} unreachable: {exc}") from None
        try:
            payload = orjson.loads(data or b"{}")
        except ValueError:
            payload = {}
        return status, payload if isinstance(payload, dict) else {}

    async def charge(self, order_id: str, amount, currency: str) -> gateways.Answer:
        body = {"orderId": order_id, "amount": str(amount), "currency": currency}
        return gateways._answer(*await self.request("/charges", body, order_id), what=f"charge of order {order_id}")

    async def refund(self, order_id: str, payment_id: str, amount) -> gateways.Answer:
        body = {"orderId": order_id, "paymentId": payment_id, "amount": str(amount)}
        return gateways._answer(*await self.request("/refunds", body, f"refund-{order_id}"),
                                what=f"refund of order {order_id}")

    async def close(self) -> None:
        await self.session.close()


class InProcessAsyncGateway(AsyncHttpGateway):
    """The simulation in process (no EDA_PAYMENT_GATEWAY_URL), its latency awaited."""

    def __init__(self, simulation: gateways.Simulation):
        self.simulation = simulation

    async def request(self, path, body, key):
        return await self.simulation.handle_async(path, body, key)

    async def close(self) -> None:
        pass


class AsyncPayment(payment.Payment):
    """``payment.Payment`` with coroutine handlers: same settings, state and reactions."""

    inline = False  # coroutines run on the worker's event loop, whatever the gateway

    async def setup(self):
        if self.gateway_url:
            self.gateway = AsyncHttpGateway(self.checked_gateway_url(), self.gateway_timeout, self.settings.concurrency)
        else:
            self.gateway = InProcessAsyncGateway(gateways.Simulation())
        self.breaker = self.gateway_breaker()
        self.store = open_store(self.settings, "payment", payment.SCHEMA)
        self.charges = payment.Charges(self.store)
        # PostgreSQL's round trips wait on the network: they go to a thread of their own, and the loop
        # goes on with other orders meanwhile. SQLite answers from a local file in tens of microseconds
        # (WAL, no fsync per commit): on the loop itself, cheaper than two thread hand-offs per call.
        self.state_thread = ThreadPoolExecutor(1, thread_name_prefix="eda-payment-state") \
            if self.store.backend != "sqlite" else None

    async def teardown(self):
        await self.gateway.close()
        if self.state_thread is not None:
            self.state_thread.shutdown()
        self.store.close()

    async def _stored(self, func, *args):
        """A state call: on the worker's state thread where it waits on the network, else on the loop."""
        if self.state_thread is None:
            return func(*args)
        return await asyncio.get_running_loop().run_in_executor(self.state_thread, func, *args)

    @handles("order.placed")
    async def charge(self, event, ctx):
        """As ``Payment.charge``: a recorded charge is re-published; else the gateway charges the order (its id
        as idempotency key) and one transaction records the answer, or finds the one a copy recorded."""
        order = event.data
        charge = await self._stored(self.charges.refund_state, order["order_id"])
        if charge is None:
            answer = await self.breaker.call_async(self.gateway.charge, order["order_id"], order["total_amount"],
                                                   order["currency"])
            charge = {**await self._stored(self.charges.record_charge, order, answer), "refund_id": None}
        if self.charges.raced(charge):  # cancelled meanwhile, charged all the same: refunded
            await self.refund_charge(order["order_id"], charge)
        payment.publish_charge(ctx, order, charge)

    async def refund_charge(self, order_id: str, charge: dict) -> None:
        answer = await self.breaker.call_async(self.gateway.refund, order_id, charge["payment_id"], charge["amount"])
        if not answer.succeeded:
            raise PermanentError(f"the gateway refused to refund order {order_id}: {answer.reason}")
        await self._stored(self.charges.record_refund, order_id, answer.id)

    @handles("order.cancelled")
    async def refund(self, event, ctx):
        order_id = event.data["order_id"]
        charge = await self._stored(self.charges.refund_state, order_id) or \
            await self._stored(self.charges.record_cancellation, order_id)
        if charge is None:
            self.log.info("order %s cancelled before it was charged: it will not be", order_id,
                          extra={"worker": self.name})
            return
        if charge["status"] != payment.SUCCEEDED:
            self.log.info("order %s was not charged: nothing to refund", order_id, extra={"worker": self.name})
            return
        if charge["refund_id"] is None:
            await self.refund_charge(order_id, charge)
        payment.publish_refund(ctx, event.data, charge)
