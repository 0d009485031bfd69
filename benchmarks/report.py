"""The benchmark's table: one row per measure, raw kombu beside eda, the ratio and the issue's target."""

import json
from pathlib import Path


def _row(item, unit, raw, eda, target=None, higher_is_better=True, bound=None):
    ratio = (eda / raw) if raw and eda is not None else None
    met = None
    if bound is not None:  # an absolute target on eda's figure (latency, memory)
        met = eda is not None and eda < bound
    elif target is not None and ratio is not None:
        met = ratio >= target if higher_is_better else ratio <= target
    return {"item": item, "unit": unit, "raw_kombu": raw, "eda": eda, "ratio": ratio,
            "target": target_text(target, bound, unit), "met": met}


def target_text(target, bound, unit) -> str:
    if bound is not None:
        return f"< {bound:g} {unit}"
    return f"≥ {target:g}×" if target is not None else ""


def rows(r: dict) -> list[dict]:
    """The table from the raw results; a measure that was not run is left out."""
    out = []
    if "publish" in r:
        p = r["publish"]
        out.append(_row("publish: eda bulk confirmed vs kombu no confirms", "events/s", p["raw_no_confirms"],
                        p["eda_pipelined_confirms"], 0.5))
        out.append(_row("publish: eda bulk confirmed vs kombu confirm per event", "events/s",
                        p["raw_confirm_per_event"], p["eda_pipelined_confirms"], 5))
    if "consume" in r:
        c = r["consume"]
        out.append(_row("consume: eda no-op worker, concurrency 1", "events/s", c["raw"], c["eda_concurrency_1"], 0.7))
        out.append(_row(f"consume: eda no-op worker, concurrency {c['default_concurrency']} (default)", "events/s",
                        c["raw"], c["eda_default"], 0.9))
    if "react" in r:
        out.append(_row("react: shipping worker (defaults) vs kombu confirm per reaction", "events/s",
                        r["react"]["raw"], r["react"]["eda"], 1))
    if "latency" in r:
        lat = r["latency"]
        out.append(_row("latency: raw relays' three-hop capacity (orders back to back)", "orders/s",
                        lat["capacity"]["rate"], None))
        share = f"{lat['share']:g} × capacity"
        for key in ("p50_ms", "p99_ms", "max_ms"):  # eda / raw is the figure; eda's absolute one beside it
            out.append(_row(f"latency order.placed -> order.shipped, {key[:-3]} at {lat['rate']:,.0f}/s ({share})",
                            "ms", lat["raw"][key], lat["eda"][key]))
        if "fixed" in lat:  # the fixed rate, kept where it is below that share of the capacity
            fixed = lat["fixed"]
            for key in ("p50_ms", "p99_ms", "max_ms"):
                out.append(_row(f"latency order.placed -> order.shipped, {key[:-3]} at {fixed['rate']:g}/s",
                                "ms", fixed["raw"][key], fixed["eda"][key], bound=25 if key == "p99_ms" else None))
        for name, s in lat.get("summary", {}).items():  # issue 20: the targets in every run (table below)
            condition, load = name.split()
            targets = lat["targets"][load]
            worst = {k: max(s["ratios"][k]) for k in targets}
            out.append({"item": f"latency {'with a CPU hog' if condition == 'hog' else 'quiet'} at {float(load):g} × "
                                f"capacity, worst of {len(s['ratios']['p99_ms'])} runs: "
                                + ", ".join(f"{k[:3]} × {v:.2f}" for k, v in worst.items()),
                        "unit": "eda / raw", "raw_kombu": None, "eda": max(worst.values()), "ratio": None,
                        "target": ", ".join(f"{k[:3]} ≤ {v:g}×" for k, v in targets.items()),
                        "met": s["met"]})
    if "decode" in r:
        d = r["decode"]
        out.append(_row("decode + validation of order.placed (kombu: json decode only)", "µs/event",
                        d["kombu_json_decode_us"], d["eda_decode_us"]))
    if "memory" in r:
        m = r["memory"]
        out.append(_row("`eda worker shipping` RSS idle", "MB", None, m["idle_mb"]))
        out.append(_row(f"`eda worker shipping` RSS after {m['events']:,} events", "MB", None, m["after_mb"]))
        out.append(_row(f"RSS growth from the first {m['warm_events']:,} events to the last", "MB", None,
                        m["growth_after_warmup_mb"], bound=5))
    if "outbox" in r:  # the baseline column holds `eda publish --file`'s rate here, not raw kombu's
        o = r["outbox"]
        out.append(_row("outbox: `eda outbox relay` vs `eda publish --file`, publishing (baseline column)",
                        "events/s", o["publish_file"], o["relay"], 0.5))
        out.append(_row("outbox: the same, start-up (and publish's validation) included", "events/s",
                        o["publish_file_wall"], o["relay_wall"]))
        out.append(_row("outbox: outbox.add in one PostgreSQL transaction (application side)", "events/s", None,
                        o["add"]))
    if "schedule" in r:  # lateness of due events: publish (arrival in a sink) minus due time, target < 1 s
        for engine, run in r["schedule"].items():
            what = f"schedule: {run['n']:,} due over {run['span']:g} s, {engine}"
            out.append(_row(f"{what}: lateness p50", "s", None, run["p50"]))
            out.append(_row(f"{what}: lateness p99", "s", None, run["p99"], bound=1))
            out.append(_row(f"{what}: lateness max", "s", None, run["max"], bound=1))
            out.append(_row(f"{what}: published before due", "events", None, run["early"], bound=1))
    if "cluster" in r:  # the baseline column holds the single node's rate: the ratio is the price of replication
        c = r["cluster"]
        out.append(_row(f"cluster: no-op worker, 3 nodes quorum vs 1 node classic (baseline column), "
                        f"concurrency {c['concurrency']}", "events/s", c["single_classic"], c["cluster_quorum"]))
    if "ordering" in r:  # the baseline column holds the same worker unordered: the ratio is the price of order
        o = r["ordering"]
        rounds = f", median of {o['rounds']} runs each" if o.get("rounds", 1) > 1 else ""
        out.append(_row(f"ordering: no-op worker ordered by key ({o['partitions']} partitions) vs unordered "
                        f"(baseline column), concurrency {o['concurrency']}{rounds}", "events/s", o["unordered"],
                        o["ordered"], 0.5))
    if "state" in r:  # the baseline column holds SQLite's rate, then one PostgreSQL instance's
        s = r["state"]
        sqlite, pg1, pg3 = s["sqlite_1"], s["postgresql_1"], s["postgresql_3"]
        confined = s.get("confinement", "unconfined")
        out.append(_row(f"state: inventory reservations, PostgreSQL 1 instance vs SQLite (baseline column), {confined}",
                        "orders/s", sqlite["rate"], pg1["rate"]))
        out.append(_row(f"state: inventory reservations, PostgreSQL 3 instances vs 1 (baseline column), {confined}",
                        "orders/s", pg1["rate"], pg3["rate"], s.get("target", 2)))
        if "round_trips_per_order" in s:
            out.append(_row("state: PostgreSQL round trips per reservation (counted on the wire; was 5)", "trips",
                            None, s["round_trips_per_order"], bound=5))
        for label, run in (("SQLite 1 instance", sqlite), ("PostgreSQL 1 instance", pg1),
                           ("PostgreSQL 3 instances", pg3)):  # what limits the rate: the cores
            pg = (f", PostgreSQL {run['postgres_cores']:.2f} cores, {run['postgres_cpu_ms_per_order']:.2f} CPU ms/order"
                  if "postgres_cores" in run else "")
            throttled = f", throttled {run['throttled_s']:.1f} s" if run.get("throttled_s") else ""
            out.append(_row(f"state: {label}: machine's cores busy (inventory processes: {run['worker_cores']:.2f} "
                            f"cores, {run['worker_cpu_ms_per_order']:.2f} CPU ms/order{throttled}{pg})", "share", None,
                            run["machine_busy"]))
    return out


def _fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.0f}" if value >= 100 else f"{value:.2f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _met(row) -> str:
    return {True: "yes", False: "NO", None: ""}[row["met"]]


def table(out: list[dict]) -> list[list[str]]:
    header = ["measure", "unit", "raw kombu", "eda", "eda / raw", "target", "met"]
    body = [[r["item"], r["unit"], _fmt(r["raw_kombu"]), _fmt(r["eda"]),
             f"{r['ratio']:.2f}" if r["ratio"] is not None else "–", r["target"], _met(r)] for r in out]
    return [header, *body]


def text(out: list[dict]) -> str:
    cells = table(out)
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in cells]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def markdown(out: list[dict], machine: dict, params: dict) -> str:
    cells = table(out)
    lines = ["| " + " | ".join(cells[0]) + " |", "|" + "---|" * len(cells[0])]
    lines += ["| " + " | ".join(row) + " |" for row in cells[1:]]
    about = (f"{machine['nproc']} cores ({machine['cpu']}), Python {machine['python']}, "
             f"RabbitMQ {machine['rabbitmq']} on loopback, kombu {machine['kombu']}")
    if "load_before" in machine:  # load averages over 1, 5 and 15 minutes: a busy machine's figures are not a quiet one's
        about += (f"; load average {' / '.join(map(str, machine['load_before']))} before the run, "
                  f"{' / '.join(map(str, machine.get('load_after', [])))} after")
    run = ", ".join(f"{k}={v}" for k, v in params.items())
    if params.get("quick"):
        run += f".  \n{QUICK_NOTE}"
    return f"Machine: {about}.  \nRun: {run}.\n\n" + "\n".join(lines) + "\n"


# How far a --quick run is from a full one: measured on this machine, the no-op inline worker came out
# at 0.56× raw kombu in a --quick run and 0.75× in the full run (issue 13).
QUICK_NOTE = ("A --quick run is a check that the suite works, not figures to quote: its ratios moved by up to "
              "a quarter against a full run on the same machine (the no-op inline worker: 0.56× raw quick, "
              "0.75× full).")


def write(directory: Path, results: dict, machine: dict, params: dict, failed: dict) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    out = rows(results)
    json_path, md_path = directory / "latest.json", directory / "latest.md"
    json_path.write_text(json.dumps({"machine": machine, "params": params, "results": results, "rows": out,
                                     "failed": failed}, indent=2) + "\n")
    extra = ""
    if "latency" in results and "runs" in results["latency"]:  # every run of both sides, and their spread
        from benchmarks import latency

        extra += latency.markdown(results["latency"])
    if "waiting" in results:  # its own table: concurrency levels against a gateway, not a kombu baseline
        from benchmarks import waiting

        extra += waiting.markdown(results["waiting"])
    if "processes" in results:  # its own table too: one process against two
        from benchmarks import processes

        extra += processes.markdown(results["processes"])
    md_path.write_text(markdown(out, machine, params) + extra
                       + "".join(f"\n{item}: not measured ({reason})\n" for item, reason in failed.items()))
    return json_path, md_path
