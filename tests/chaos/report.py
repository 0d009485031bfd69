"""The run's report: a summary (faults applied, events on the wire, the verdict, latencies through each
fault) as JSON and Markdown, and a plot of throughput over time with the faults marked (matplotlib, PNG).

Latency is an order's time from the moment it was handed to ``Producer.publish`` to its final event on
the wire (order.shipped, payment.refunded, payment.failed), grouped by when the order was sent: during
each fault, or in the quiet between faults.
"""

import collections
import json
import statistics
from pathlib import Path

from tests.chaos.checker import History, Verdict


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def _latency_row(label: str, latencies: list[float]) -> dict:
    return {"window": label, "orders": len(latencies),
            "p50_s": percentile(latencies, 50), "p99_s": percentile(latencies, 99),
            "max_s": max(latencies) if latencies else None,
            "mean_s": statistics.fmean(latencies) if latencies else None}


def latencies_by_fault(history: History, verdict: Verdict, faults: list[dict], t0: float) -> list[dict]:
    """A row per fault (orders sent while it lasted) and one for the orders sent in the quiet."""
    sent = {o["order_id"]: o["sent"] - t0 for o in history.orders}
    rows, quiet = [], []
    windows = [(f["start"] - t0, f["end"] - t0) for f in faults]
    for fault, (start, end) in zip(faults, windows):
        values = [v for oid, v in verdict.latencies.items() if start <= sent[oid] <= end]
        rows.append(_latency_row(f"{fault['kind']} {fault['target']} ({start:.0f}-{end:.0f}s)", values))
    for oid, value in verdict.latencies.items():
        if not any(start <= sent[oid] <= end for start, end in windows):
            quiet.append(value)
    rows.append(_latency_row("no fault", quiet))
    return rows


def wire_counts(history: History) -> dict:
    total = collections.Counter(e["type"] for e in history.events)
    distinct = collections.Counter(t for t, _ in {(e["type"], e["id"]) for e in history.events})
    return {t: {"events": distinct[t], "copies": total[t] - distinct[t]} for t in sorted(total)}


def summary(run: dict, history: History, verdict: Verdict, faults: list[dict], t0: float) -> dict:
    return {"run": run,
            "faults": [{"kind": f["kind"], "target": f["target"], "start_s": round(f["start"] - t0, 1),
                        "end_s": round(f["end"] - t0, 1), "seconds": round(f["end"] - f["start"], 1)}
                       for f in faults],
            "orders": {"confirmed": len(history.orders), "not_confirmed": len(history.others)},
            "wire": wire_counts(history),
            "verdict": verdict.as_dict(),
            "latency": latencies_by_fault(history, verdict, faults, t0)}


def _fmt(value) -> str:
    return "–" if value is None else f"{value:.2f}"


def markdown(data: dict) -> str:
    v = data["verdict"]
    lines = [f"# Chaos run, seed {data['run']['seed']}: {'PASSED' if v['ok'] else 'FAILED'}", "",
             f"{data['run']['seconds']:.0f} s at {data['run']['rate']:g} orders/s; "
             f"{data['orders']['confirmed']} orders confirmed ({data['orders']['not_confirmed']} not); "
             f"final: {', '.join(f'{k} {n}' for k, n in sorted(v['final'].items())) or 'none'}.", "",
             f"Lost: {len(v['lost'])}, stuck: {len(v['stuck'])}, duplicated: {len(v['duplicated'])}, "
             f"other violations: {len(v['violations'])}.", ""]
    for title, key in (("Lost", "lost"), ("Stuck", "stuck"), ("Duplicated", "duplicated")):
        if v[key]:
            lines += [f"## {title}", ""] + [f"- {json.dumps(item)}" for item in v[key][:50]] + [""]
    if v["violations"]:
        lines += ["## Violations", ""] + [f"- {text}" for text in v["violations"][:100]] + [""]
    lines += ["## Faults", "", "| kind | target | start s | end s | seconds |", "|---|---|---|---|---|"]
    lines += [f"| {f['kind']} | {f['target']} | {f['start_s']} | {f['end_s']} | {f['seconds']} |" for f in data["faults"]]
    lines += ["", "## Latency, publish to final event, by when the order was sent", "",
              "| window | orders | p50 s | p99 s | max s |", "|---|---|---|---|---|"]
    lines += [f"| {r['window']} | {r['orders']} | {_fmt(r['p50_s'])} | {_fmt(r['p99_s'])} | {_fmt(r['max_s'])} |"
              for r in data["latency"]]
    lines += ["", "## Events on the wire", "", "| type | events | copies (same id again) |", "|---|---|---|"]
    lines += [f"| {t} | {c['events']} | {c['copies']} |" for t, c in data["wire"].items()]
    if v["repeated_reactions"]:
        lines += ["", "Orders with an event published under more than one id (each a doubled effect downstream): "
                  + ", ".join(f"{t} {n}" for t, n in sorted(v["repeated_reactions"].items())) + "."]
    return "\n".join(lines) + "\n"


def plot(history: History, verdict: Verdict, faults: list[dict], t0: float, path: Path) -> None:
    """Orders confirmed and orders reaching their final state per second, the faults as shaded spans."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    confirmed = collections.Counter(int(o["confirmed"] - t0) for o in history.orders)
    done = collections.Counter(int(o["sent"] - t0 + verdict.latencies[o["order_id"]]) for o in history.orders
                               if o["order_id"] in verdict.latencies)
    last = max([*confirmed, *done, *(int(f["end"] - t0) for f in faults), 1])
    seconds = list(range(last + 1))
    fig, ax = plt.subplots(figsize=(12, 4.5))
    ax.plot(seconds, [confirmed[s] for s in seconds], label="orders confirmed by the broker", lw=1)
    ax.plot(seconds, [done[s] for s in seconds], label="orders reaching their final state", lw=1)
    colours = {"partition-node": "tab:red", "cut-clients-from-node": "tab:orange", "restart-node": "tab:purple",
               "cut-worker-from-postgres": "tab:green", "pause-worker": "tab:gray"}
    top = max([*confirmed.values(), *done.values(), 1])
    for i, f in enumerate(faults):  # labels on two alternating rows, so that neighbours do not overlap
        start, end = f["start"] - t0, f["end"] - t0
        ax.axvspan(start, end, color=colours.get(f["kind"], "tab:blue"), alpha=0.18)
        ax.text(start, top * (1.02 + 0.2 * (i % 2)), f"{f['kind']}\n{f['target']}", fontsize=7, va="bottom")
    ax.set_xlabel("seconds since the first order")
    ax.set_ylabel("orders per second")
    ax.set_ylim(0, top * 1.5)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize=8, frameon=False)
    ax.set_title("Throughput through the faults (shaded)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(folder: Path, run: dict, history: History, verdict: Verdict, faults: list[dict], t0: float) -> dict:
    data = summary(run, history, verdict, faults, t0)
    (folder / "summary.json").write_text(json.dumps(data, indent=1, default=str))
    (folder / "summary.md").write_text(markdown(data))
    plot(history, verdict, faults, t0, folder / "throughput.png")
    return data
