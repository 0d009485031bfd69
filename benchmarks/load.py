"""A plain HTTP load client: the gateway's capacity, measured without eda.

    python -m benchmarks.load URL [--connections N] [--seconds S]

Holds N keep-alive connections; each sends POST /charges, waits for the answer, sends the next (a
closed loop, as N handler threads would). Requests are encoded once and answers only framed (status
line and Content-Length), so the client costs a few tens of µs per request and the server is what
is measured. Prints one JSON line: answers/s, answers, errors (non-2xx, resets), p50/p99 ms.
"""

import argparse
import asyncio
import json
import sys
import time
from urllib.parse import urlsplit

BODY = b'{"orderId":"load","amount":"30.00","currency":"USD"}'


def request_bytes(host: str, path: str) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(BODY)}\r\n\r\n").encode() + BODY


class Connection(asyncio.Protocol):
    """One keep-alive connection in a closed loop until ``until`` (a perf_counter time)."""

    def __init__(self, request: bytes, until: float, stats: dict, done: asyncio.Future):
        self.request, self.until, self.stats, self.done = request, until, stats, done
        self.buffer = b""
        self.sent = 0.0

    def connection_made(self, transport):
        self.transport = transport
        self._send()

    def _send(self):
        self.sent = time.perf_counter()
        self.transport.write(self.request)

    def data_received(self, data):
        self.buffer += data
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buffer[:head_end].split(b"\r\n")
            length = next((int(line.split(b":", 1)[1]) for line in head[1:]
                           if line[:15].lower() == b"content-length:"), 0)
            if len(self.buffer) < head_end + 4 + length:
                return
            self.buffer = self.buffer[head_end + 4 + length:]
            now = time.perf_counter()
            ok = head[0][9:10] == b"2"  # "HTTP/1.1 201 Created"
            self.stats["answers" if ok else "errors"] += 1
            self.stats["latencies"].append(now - self.sent)
            if now >= self.until:
                self.transport.close()
                return
            self._send()

    def connection_lost(self, exc):
        if exc is not None or time.perf_counter() < self.until:
            self.stats["errors"] += 1  # reset or closed by the server before the end
        if not self.done.done():
            self.done.set_result(None)


async def _run(url: str, connections: int, seconds: float) -> dict:
    parts = urlsplit(url)
    host, port = parts.hostname, parts.port or 80
    request = request_bytes(f"{host}:{port}", (parts.path.rstrip("/") or "") + "/charges")
    loop = asyncio.get_running_loop()
    stats = {"answers": 0, "errors": 0, "latencies": []}
    started = time.perf_counter()
    until = started + seconds
    futures = []

    async def connect():
        done = loop.create_future()
        futures.append(done)
        try:
            await loop.create_connection(lambda: Connection(request, until, stats, done), host, port)
        except OSError:
            stats["errors"] += 1
            done.set_result(None)

    await asyncio.gather(*(connect() for _ in range(connections)))
    await asyncio.gather(*futures)
    elapsed = time.perf_counter() - started
    ordered = sorted(stats["latencies"]) or [0.0]
    pick = lambda p: ordered[min(len(ordered) - 1, int(p / 100 * (len(ordered) - 1)))] * 1000  # noqa: E731
    return {"connections": connections, "seconds": round(elapsed, 3), "answers": stats["answers"],
            "errors": stats["errors"], "rate": stats["answers"] / elapsed, "p50_ms": pick(50), "p99_ms": pick(99)}


def run(url: str, connections: int, seconds: float) -> dict:
    """Load ``url`` with ``connections`` closed-loop keep-alive connections for ``seconds``."""
    return asyncio.run(_run(url, connections, seconds))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.load", description=__doc__.splitlines()[0])
    p.add_argument("url")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--seconds", type=float, default=5.0)
    args = p.parse_args(argv)
    print(json.dumps(run(args.url, args.connections, args.seconds)))


if __name__ == "__main__":
    main(sys.argv[1:])
