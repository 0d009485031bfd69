"""Run the benchmark suite: eda beside raw kombu on the configured broker, in one run.

    python -m benchmarks [--n N] [--quick] [--only publish,consume,...] [--out DIR]

The broker is EDA_BROKER_URL (else EDA_TEST_BROKER_URL, else localhost). Everything runs in a
namespace of its own that is deleted afterwards. Results go to DIR/latest.json and DIR/latest.md.
"""

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from benchmarks import eda_side, latency, memory, micro, raw, report
from benchmarks.bench import Bench, order_event, reserved_event

ITEMS = ("publish", "consume", "react", "latency", "decode", "memory", "outbox", "schedule", "cluster", "ordering",
         "waiting", "processes", "state")
RESULTS = Path(__file__).resolve().parent / "results"


def parse(argv) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, help="events per throughput measure [10000; 2000 with --quick]")
    p.add_argument("--quick", action="store_true", help="smaller runs: a check, not figures to quote")
    p.add_argument("--rate", type=float, default=500.0,
                   help="a fixed rate of the latency run, run where below --share of the relays' capacity [500]")
    p.add_argument("--share", type=float, default=0.5,
                   help="the latency run's rate as a share of the raw relays' measured capacity [0.5]")
    p.add_argument("--concurrency", default="1,4,16,64,256",
                   help="concurrency levels of the waiting measure (payment worker, 20 ms gateway) [1,4,16,64,256]")
    p.add_argument("--seconds", type=float, help="duration of each latency run at each load [20; 5 with --quick]")
    p.add_argument("--latency-runs", type=int, help="latency runs of each side, then as many with a CPU hog "
                   "[5; 1 with --quick]")
    p.add_argument("--no-hog", action="store_true", help="leave out the latency runs with a CPU hog")
    p.add_argument("--memory-events", type=int, help="events through the memory run [100000; 10000 with --quick]")
    p.add_argument("--only", default=",".join(ITEMS), help=f"comma-separated subset of {','.join(ITEMS)}")
    p.add_argument("--out", type=Path, default=RESULTS, help=f"where latest.json/.md go [{RESULTS}]")
    args = p.parse_args(argv)
    args.n = args.n or (2000 if args.quick else 10000)
    args.seconds = args.seconds or (5.0 if args.quick else 20.0)
    args.memory_events = args.memory_events or (10000 if args.quick else 100_000)
    args.only = [item.strip() for item in args.only.split(",") if item.strip()]
    try:
        args.concurrency = tuple(int(c) for c in args.concurrency.split(",") if c.strip())
    except ValueError:
        p.error(f"--concurrency: comma-separated whole numbers, not {args.concurrency!r}")
    unknown = set(args.only) - set(ITEMS)
    if unknown:
        p.error(f"unknown items: {', '.join(sorted(unknown))}")
    return args


def step(what: str) -> None:
    print(f"  {time.strftime('%H:%M:%S')} {what}", file=sys.stderr, flush=True)


def publish(bench: Bench, args) -> dict:
    events = [order_event(i) for i in range(args.n)]
    sink = bench.queue("sink-publish", "order.placed").name
    step("publish: raw kombu, no confirms")
    no_confirms = raw.publish(bench, events, confirm=False)
    bench.channel.queue_purge(sink)
    step("publish: raw kombu, a confirm per event")
    per_event = raw.publish(bench, events, confirm=True)
    bench.channel.queue_purge(sink)
    step("publish: eda, pipelined confirms")
    pipelined = eda_side.publish(bench, events)
    bench.channel.queue_delete(sink)
    return {"n": args.n, "raw_no_confirms": no_confirms, "raw_confirm_per_event": per_event,
            "eda_pipelined_confirms": pipelined}


def consume(bench: Bench, args) -> dict:
    def preload(queue):
        bench.preload(queue, order_event, args.n)
    step("consume: raw kombu")
    raw_queue = bench.queue("raw-consume").name
    preload(raw_queue)
    raw_rate = raw.consume(bench, raw_queue, args.n)
    step("consume: eda no-op worker, concurrency 1")
    c1 = eda_side.consume(bench, preload, args.n, concurrency=1)
    step("consume: eda no-op worker, default concurrency")
    default = eda_side.consume(bench, preload, args.n, concurrency=bench.settings.concurrency)
    bench.topology.delete_worker(bench.channel, eda_side.NoOp.name)
    return {"n": args.n, "raw": raw_rate, "eda_concurrency_1": c1, "eda_default": default,
            "default_concurrency": bench.settings.concurrency}


def react(bench: Bench, args) -> dict:
    sink = bench.queue("sink-react", "order.shipped").name
    step("react: raw kombu, a confirm per reaction")
    raw_queue = bench.queue("raw-react").name
    bench.preload(raw_queue, reserved_event, args.n)
    raw_rate = raw.react(bench, raw_queue, args.n)
    bench.channel.queue_purge(sink)
    step("react: eda shipping worker, defaults")
    eda_rate = eda_side.react(bench, lambda queue: bench.preload(queue, reserved_event, args.n), args.n)
    bench.topology.delete_worker(bench.channel, "shipping")
    bench.channel.queue_delete(sink)
    return {"n": args.n, "raw": raw_rate, "eda": eda_rate}


def end_to_end(bench: Bench, args) -> dict:
    return latency.compare(bench, args.share, args.rate, args.seconds, args.quick, step, rounds=args.latency_runs,
                           hog=not args.no_hog)


def decode(bench: Bench, args) -> dict:
    step("decode + validation cost")
    return micro.decode_cost(max(args.n, 2000))


def worker_memory(bench: Bench, args) -> dict:
    step(f"memory: `eda worker shipping` through {args.memory_events:,} events")
    return memory.worker_memory(bench, args.memory_events)


def outbox_relay(bench: Bench, args) -> dict:
    from benchmarks import outbox

    step(f"outbox: `eda outbox relay` vs `eda publish --file`, {args.n:,} events (PostgreSQL)")
    return outbox.relay_vs_publish(bench, args.n)


def scheduled(bench: Bench, args) -> dict:
    from benchmarks import schedule

    return schedule.measure(bench, args.n, 3.0 if args.quick else 30.0, step=step)


def replication(bench: Bench, args) -> dict:
    from benchmarks import cluster

    step(f"cluster: eda no-op worker, single node classic vs three nodes quorum, {args.n:,} events")
    return cluster.noop_single_vs_cluster(bench, args.n)


def ordering(bench: Bench, args) -> dict:
    from benchmarks import ordering as ordered

    rounds = 1 if args.quick else 3
    step(f"ordering: eda no-op worker ordered by key vs unordered, {args.n:,} events, {rounds} round(s)")
    return ordered.ordered_vs_unordered(bench, args.n, rounds=rounds)


def state_backends(bench: Bench, args) -> dict:
    from benchmarks import state

    return state.reservations(bench, args.n, step=step)


def waiting_workers(bench: Bench, args) -> dict:
    from benchmarks import waiting

    return waiting.measure(bench, args.quick, args.concurrency, step=step)


def worker_processes(bench: Bench, args) -> dict:
    from benchmarks import processes

    return processes.measure(bench, args.quick, step=step)


MEASURES = {"publish": publish, "consume": consume, "react": react, "latency": end_to_end, "decode": decode,
            "memory": worker_memory, "outbox": outbox_relay, "schedule": scheduled, "cluster": replication, "ordering": ordering,
            "waiting": waiting_workers, "processes": worker_processes, "state": state_backends}


def measure(bench: Bench, args) -> tuple[dict, dict]:
    """Run each chosen measure; one that fails (the broker went away, a timeout) is reported and skipped."""
    results, failed = {}, {}
    for item in ITEMS:
        if item not in args.only:
            continue
        try:
            results[item] = MEASURES[item](bench, args)
        except Exception as exc:  # keep the other measures: the run says which one failed and why
            failed[item] = f"{type(exc).__name__}: {exc}"
            step(f"{item} FAILED: {failed[item]}")
            bench.reconnect()
    return results, failed


def main(argv=None) -> int:
    args = parse(argv)
    # `kill` of the suite stops it like Ctrl-C: the finally blocks stop its workers and delete its namespace.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    bench = Bench()
    print(f"eda benchmarks on {bench.settings.safe_broker_url}, namespace {bench.namespace}", file=sys.stderr)
    try:
        machine = bench.machine()
        machine["load_before"] = [round(x, 2) for x in os.getloadavg()]  # the machine's load, noted with the results
        results, failed = measure(bench, args)
        machine["load_after"] = [round(x, 2) for x in os.getloadavg()]
    finally:
        bench.reconnect()
        bench.cleanup()
    params = {"n": args.n, "rate": args.rate, "share": args.share, "seconds": args.seconds,
              "memory_events": args.memory_events, "concurrency": ",".join(map(str, args.concurrency)),
              "quick": args.quick, "latency_runs": args.latency_runs, "hog": not args.no_hog}
    print(report.text(report.rows(results)))
    if "latency" in results and "runs" in results["latency"]:
        print("\n" + latency.text(results["latency"]))
    if "waiting" in results:
        from benchmarks import waiting

        print("\n" + waiting.text(results["waiting"]))
    if "processes" in results:
        from benchmarks import processes

        print("\n" + processes.text(results["processes"]))
    for item, reason in failed.items():
        print(f"{item}: FAILED: {reason}")
    paths = report.write(args.out, results, machine, params, failed)
    print("written: " + ", ".join(str(p) for p in paths), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
