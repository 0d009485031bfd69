"""Request-reply, eda beside raw py-amqp on the same broker, in one run:
`python -m benchmarks.rpc [--n 2000] [--concurrency 1,16,64]`.

Each side asks ``n`` requests with ``C`` in flight, and a replier in a process of its own answers each
at once:

- raw: py-amqp as RabbitMQ's RPC tutorial has it: direct reply-to, no confirms, no validation; the
  requester keeps C requests out on one channel, the replier (prefetch C) answers each and acks it.
- eda threads: ``Producer.request`` from C threads sharing one Producer; eda async: ``request_async``
  from C coroutines on one event loop; both against ``eda worker`` answering by returning the reply's
  data (an inline worker: no thread hand-off). Requests confirmed and mandatory, request and reply
  validated on both sides, the reply confirmed before the request is acked.

Printed: requests/s and per-request latency p50/p99 (ms) of each, and eda / raw. Aim: eda at
concurrency 16 at least 0.5x raw. Written and smoke-run only so far; not measured on a quiet machine.
"""

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time

import amqp
import kombu
from marshmallow import fields

from benchmarks.bench import Bench, eda_worker, stop, wait_for
from eda import EventData, Producer, Worker, contract, handles

APP = "benchmarks.rpc"


@contract("bench.ping.answered", description="A benchmark reply.", published_by=())
class PingAnswered(EventData):
    n = fields.Integer(required=True, strict=True)


@contract("bench.ping.requested", reply=PingAnswered, description="A benchmark request.")
class PingRequested(EventData):
    n = fields.Integer(required=True, strict=True)


class Pinger(Worker):
    """Answers each ping at once: what is left is eda's cost of a request and its reply."""

    name = "bench-rpc"
    inline = True

    @handles("bench.ping.requested")
    def answer(self, event, ctx):
        return {"n": event.data["n"]}


def summary(seconds: float, latencies: list[float]) -> dict:
    ordered = sorted(latencies)
    return {"per_second": round(len(ordered) / seconds, 1), "p50_ms": round(1000 * statistics.median(ordered), 2),
            "p99_ms": round(1000 * ordered[int(0.99 * (len(ordered) - 1))], 2)}


# Raw py-amqp


def raw_replier(url: str, queue: str, prefetch: int) -> None:
    """The replier process of the raw side: answer each request, then ack it."""
    conn = kombu.Connection(url)
    conn.connect()
    channel = conn.channel()
    channel.basic_qos(0, prefetch, False)
    answered = []
    channel.basic_consume(queue, callback=answered.append)
    while True:
        try:
            conn.drain_events(timeout=1)
        except socket.timeout:
            continue
        for message in answered:  # published after the drain: py-amqp's publish reads first (recursion)
            channel.basic_publish(amqp.Message(message.body, correlation_id=message.properties["correlation_id"]),
                                  exchange="", routing_key=message.properties["reply_to"])
            channel.basic_ack(message.delivery_tag)
        answered.clear()


def raw_requests(url: str, queue: str, n: int, concurrency: int) -> dict:
    conn = kombu.Connection(url)
    conn.connect()
    try:
        channel = conn.channel()
        replies, sent, latencies = [], {}, []
        channel.basic_consume("amq.rabbitmq.reply-to", no_ack=True, callback=replies.append)

        def ask(i):
            sent[str(i)] = time.perf_counter()
            channel.basic_publish(amqp.Message(json.dumps({"n": i}).encode(), reply_to="amq.rabbitmq.reply-to",
                                               correlation_id=str(i)), exchange="", routing_key=queue)

        started = time.perf_counter()
        for i in range(min(concurrency, n)):
            ask(i)
        asked = min(concurrency, n)
        while len(latencies) < n:
            conn.drain_events(timeout=30)
            now = time.perf_counter()
            for reply in replies:
                latencies.append(now - sent.pop(reply.properties["correlation_id"]))
                if asked < n:
                    ask(asked)
                    asked += 1
            replies.clear()
        return summary(time.perf_counter() - started, latencies)
    finally:
        conn.release()


def raw_side(bench: Bench, n: int, concurrency: int) -> dict:
    queue = bench.queue("raw-rpc").name
    replier = subprocess.Popen([sys.executable, "-m", APP, "--raw-replier", queue, "--prefetch", str(concurrency)],
                               env={**os.environ, "EDA_BROKER_URL": bench.url})
    try:
        wait_for(lambda: bench.consumers(queue) == 1, 30, "the raw replier consuming")
        return raw_requests(bench.url, queue, n, concurrency)
    finally:
        stop(replier)


# eda


def eda_threads(producer: Producer, n: int, concurrency: int) -> dict:
    latencies = []

    def ask(numbers):
        for i in numbers:
            asked = time.perf_counter()
            producer.request(PingRequested, {"n": i}, timeout=60)
            latencies.append(time.perf_counter() - asked)

    threads = [threading.Thread(target=ask, args=(range(k, n, concurrency),)) for k in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return summary(time.perf_counter() - started, latencies)


def eda_async(producer: Producer, n: int, concurrency: int) -> dict:
    latencies = []

    async def ask(numbers):
        for i in numbers:
            asked = time.perf_counter()
            await producer.request_async(PingRequested, {"n": i}, timeout=60)
            latencies.append(time.perf_counter() - asked)

    async def ask_all():
        await asyncio.gather(*(ask(range(k, n, concurrency)) for k in range(concurrency)))

    started = time.perf_counter()
    asyncio.run(ask_all())
    return summary(time.perf_counter() - started, latencies)


def eda_side(bench: Bench, n: int, levels, state_dir) -> dict:
    worker = eda_worker([Pinger.name], {**bench.worker_env(state_dir), "EDA_APP": APP, "EDA_LOG_LEVEL": "WARNING"})
    queue = f"{bench.namespace}.{Pinger.name}"
    try:
        wait_for(lambda: _consumers(bench, queue) == 1, 30, "eda worker bench-rpc consuming")
        with Producer(bench.settings, source="eda/bench") as producer:
            producer.request(PingRequested, {"n": -1}, timeout=30)  # connected, warm
            return {c: {"threads": eda_threads(producer, n, c), "async": eda_async(producer, n, c)} for c in levels}
    finally:
        stop(worker)
        bench.topology.delete_worker(bench.channel, Pinger.name)


def _consumers(bench: Bench, queue: str) -> int:
    try:
        return bench.consumers(queue)
    except bench.conn.channel_errors:  # not declared yet: the passive declare closed the channel
        bench.reconnect()
        return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.rpc", description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2000, help="requests per measure [2000]")
    p.add_argument("--concurrency", default="1,16,64", help="requests in flight [1,16,64]")
    p.add_argument("--raw-replier", metavar="QUEUE", help=argparse.SUPPRESS)
    p.add_argument("--prefetch", type=int, default=64, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.raw_replier:
        raw_replier(os.environ["EDA_BROKER_URL"], args.raw_replier, args.prefetch)
        return 0
    levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    bench = Bench()
    try:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="eda-bench-rpc-") as state_dir:
            eda = eda_side(bench, args.n, levels, state_dir)
        raw = {c: raw_side(bench, args.n, c) for c in levels}
    finally:
        bench.cleanup()
    print(f"Request-reply, {args.n:,} requests per row (requests/s; latency p50 / p99 ms)\n")
    print("| in flight | raw py-amqp | eda threads | eda async | threads / raw | async / raw |")
    print("|---|---|---|---|---|---|")
    for c in levels:
        r, t, a = raw[c], eda[c]["threads"], eda[c]["async"]
        cell = lambda s: f"{s['per_second']:,.0f} ({s['p50_ms']} / {s['p99_ms']})"  # noqa: E731
        print(f"| {c} | {cell(r)} | {cell(t)} | {cell(a)} | {t['per_second'] / r['per_second']:.2f} | "
              f"{a['per_second'] / r['per_second']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
