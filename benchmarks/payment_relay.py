"""The hand-written baseline of the waiting benchmark: a payment relay in aio-pika + aiohttp, nothing else.

    python -m benchmarks.payment_relay QUEUE EXCHANGE GATEWAY_URL --concurrency C

What a competent developer writes by hand for "charge each placed order, publish the result": one
asyncio process (uvloop where installed, as eda's event loops), prefetch = concurrency, a task per
message (aiormq starts one per delivery), an aiohttp keep-alive pool of ``concurrency`` connections,
POST /charges to `eda gateway` with the order id as idempotency key, the reaction published with a
publisher confirm awaited, then the ack. No validation, no state, no logging, no retries: the floor
of CPU per order for such a worker in Python, and the ceiling of its rate on this machine. Stops on
SIGTERM (in-flight orders are redelivered by the broker).
"""

import argparse
import asyncio
import signal
import sys
import uuid

import aio_pika
import aiohttp
import orjson

from benchmarks.bench import broker_url


async def relay(queue_name: str, exchange_name: str, gateway: str, concurrency: int) -> None:
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stopped.set)
    connection = await aio_pika.connect(broker_url())
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency))
    try:
        channel = await connection.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=concurrency)
        exchange = await channel.get_exchange(exchange_name, ensure=False)
        queue = await channel.get_queue(queue_name, ensure=False)
        charges = gateway.rstrip("/") + "/charges"

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            event = orjson.loads(message.body)
            order = event["data"]
            body = orjson.dumps({"orderId": order["orderId"], "amount": order["totalAmount"],
                                 "currency": order["currency"]})
            async with session.post(charges, data=body, headers={"Content-Type": "application/json",
                                                                 "Idempotency-Key": order["orderId"]}) as resp:
                status, answer = resp.status, orjson.loads(await resp.read() or b"{}")
            succeeded = 200 <= status < 300
            reaction_type = "payment.succeeded" if succeeded else "payment.failed"
            data = {"orderId": order["orderId"], "paymentId": answer.get("paymentId")} if succeeded else \
                {"orderId": order["orderId"], "reason": answer.get("reason") or f"HTTP {status}"}
            reaction_id = str(uuid.uuid4())
            await exchange.publish(aio_pika.Message(
                orjson.dumps({"specversion": "1.0", "type": reaction_type, "source": "relay", "id": reaction_id,
                              "correlationid": event.get("correlationid", event["id"]), "data": data}),
                content_type="application/cloudevents+json", message_id=reaction_id,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key=reaction_type)
            await message.ack()

        await queue.consume(on_message)
        await stopped.wait()
    finally:
        await session.close()
        await connection.close()


def new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.payment_relay", description=__doc__.splitlines()[0])
    p.add_argument("queue")
    p.add_argument("exchange")
    p.add_argument("gateway")
    p.add_argument("--concurrency", type=int, default=16)
    args = p.parse_args(argv)
    loop = new_loop()
    try:
        loop.run_until_complete(relay(args.queue, args.exchange, args.gateway, args.concurrency))
    finally:
        loop.close()


if __name__ == "__main__":
    main(sys.argv[1:])
