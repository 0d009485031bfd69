"""Which HTTP client the payment worker uses: urllib3, requests and httpx against `eda gateway`, by measure.

    python -m benchmarks.gateway_clients [--calls N] [--threads 1,16]

Each client keeps a pool of keep-alive connections (one per thread) and charges N orders from T
threads against a gateway answering at once; the figures are calls/s and this process's CPU per
call (what the worker pays for each charge), beside the urllib.request client it replaced (a new
connection per call). A library that is not installed is left out.
"""

import argparse
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from benchmarks.bench import wait_for

ROOT = Path(__file__).resolve().parents[1]
BODY = {"orderId": "ord-1", "amount": "30.00", "currency": "USD"}


def clients(url: str, threads: int) -> dict:
    """name -> a function making one charge, each with a pool of ``threads`` keep-alive connections."""
    out = {}
    headers = {"Content-Type": "application/json", "Idempotency-Key": "k"}
    data = json.dumps(BODY).encode()

    def urllib_request():
        import urllib.request
        req = urllib.request.Request(url + "/charges", data=data, method="POST", headers=headers)
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read()
    out["urllib.request (before: no pool)"] = urllib_request
    try:
        import urllib3
        pool = urllib3.connection_from_url(url, maxsize=threads, block=True, retries=False,
                                           timeout=urllib3.Timeout(connect=3, read=5))
        out["urllib3"] = lambda: pool.urlopen("POST", "/charges", body=data, headers=headers).status
    except ImportError:
        pass
    try:
        import requests
        session = requests.Session()
        session.mount("http://", requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=threads,
                                                                pool_block=True))
        out["requests"] = lambda: session.post(url + "/charges", data=data, headers=headers, timeout=(3, 5)).status_code
    except ImportError:
        pass
    try:
        import httpx
        client = httpx.Client(limits=httpx.Limits(max_connections=threads, max_keepalive_connections=threads),
                              timeout=httpx.Timeout(5, connect=3))
        out["httpx"] = lambda: client.post(url + "/charges", content=data, headers=headers).status_code
    except ImportError:
        pass
    return out


def measure(call, threads: int, calls: int) -> dict:
    per_thread = calls // threads
    barrier = threading.Barrier(threads + 1)

    def work():
        barrier.wait()
        for _ in range(per_thread):
            call()
    workers = [threading.Thread(target=work) for _ in range(threads)]
    for w in workers:
        w.start()
    cpu, started = time.process_time(), time.perf_counter()
    barrier.wait()
    for w in workers:
        w.join()
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {"calls_per_s": per_thread * threads / wall, "cpu_us_per_call": cpu / (per_thread * threads) * 1e6}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gateway_clients", description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=2000)
    p.add_argument("--threads", default="1,16")
    args = p.parse_args(argv)
    port = free_port()
    gateway = subprocess.Popen([sys.executable, "-m", "cli", "gateway", "--port", str(port)], cwd=ROOT,
                               stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: socket.socket().connect_ex(("127.0.0.1", port)) == 0, 15, "the gateway")
        url = f"http://127.0.0.1:{port}"
        for threads in (int(t) for t in args.threads.split(",")):
            for name, call in clients(url, threads).items():
                call()  # warm: imports, the first connection
                result = measure(call, threads, args.calls)
                print(f"{threads:>3} threads  {name:<34} {result['calls_per_s']:>8,.0f} calls/s "
                      f"{result['cpu_us_per_call']:>6,.0f} µs CPU/call", flush=True)
    finally:
        gateway.terminate()
        gateway.wait(10)


if __name__ == "__main__":
    main(sys.argv[1:])
