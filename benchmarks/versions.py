"""Two versions of eda in one run: each one's own `python -m benchmarks` measures, alternating, round by round.

    python -m benchmarks.versions --before DIR [--after DIR] [--rounds 4] [--only publish,consume,react]

DIR is a checkout of eda with its own .venv (`git worktree add --detach DIR COMMIT`, then
`python3 -m venv DIR/.venv && DIR/.venv/bin/pip install -e DIR -e DIR/shop`); --after defaults to this
checkout. Each round runs the before tree's suite, then the after tree's (the order flips every round,
so that a machine warming up or slowing down weighs on both alike), each comparing its eda with raw kombu
in the same process. The table gives each side's median events/s and median ratio to raw kombu, and after
over before: the ratio to kombu is the figure to read on a shared machine, since kombu moves with the load.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
# (item, eda's key, a row's name) for the throughput measures that compare eda with raw kombu.
FIGURES = (
    ("publish", "eda_pipelined_confirms", "raw_no_confirms", "publish: pipelined confirms (raw: no confirms)"),
    ("consume", "eda_concurrency_1", "raw", "consume: no-op worker, concurrency 1"),
    ("consume", "eda_default", "raw", "consume: no-op worker, default concurrency"),
    ("react", "eda", "raw", "react: shipping worker (raw: a confirm per reaction)"),
)


def parse(argv) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.versions", description=__doc__.splitlines()[0])
    p.add_argument("--before", type=Path, required=True, help="a checkout of the earlier eda, with its .venv")
    p.add_argument("--after", type=Path, default=HERE, help=f"a checkout of the later eda [{HERE}]")
    p.add_argument("--rounds", type=int, default=4, help="runs of each side [4]")
    p.add_argument("--n", type=int, default=10000, help="events per measure [10000]")
    p.add_argument("--only", default="publish,consume,react", help="measures of the suite [publish,consume,react]")
    p.add_argument("--out", type=Path, help="also write the table (Markdown) to this file")
    args = p.parse_args(argv)
    for side in (args.before, args.after):
        if not (side / ".venv" / "bin" / "python").exists():
            p.error(f"{side} has no .venv/bin/python: make one and install eda there")
    return args


def run_suite(tree: Path, args, out: Path) -> dict:
    """One run of a tree's own suite with its own interpreter; its latest.json's results."""
    command = [str(tree / ".venv" / "bin" / "python"), "-m", "benchmarks", "--only", args.only,
               "--n", str(args.n), "--out", str(out)]
    subprocess.run(command, cwd=tree, check=True, stdout=subprocess.DEVNULL)
    document = json.loads((out / "latest.json").read_text())
    if document.get("failed"):
        raise SystemExit(f"{tree}: {document['failed']}")
    return document["results"]


def figures(results: dict) -> dict:
    """A run's (eda events/s, eda / raw) per row."""
    found = {}
    for item, mine, raw, row in FIGURES:
        if item in results:
            found[row] = (results[item][mine], results[item][mine] / results[item][raw])
    return found


def table(runs: dict, loads: list) -> str:
    lines = ["| measure | before: events/s | after: events/s | before / raw | after / raw | after / before (ratios) |",
             "|---|---|---|---|---|---|"]
    for row in runs["before"][0]:
        med = {side: (statistics.median(r[row][0] for r in runs[side]), statistics.median(r[row][1] for r in runs[side]))
               for side in ("before", "after")}
        spread = {side: f"{min(r[row][1] for r in runs[side]):.2f}-{max(r[row][1] for r in runs[side]):.2f}"
                  for side in ("before", "after")}
        lines.append(f"| {row} | {med['before'][0]:,.0f} | {med['after'][0]:,.0f} | {med['before'][1]:.2f} "
                     f"({spread['before']}) | {med['after'][1]:.2f} ({spread['after']}) | "
                     f"{med['after'][1] / med['before'][1]:.3f} |")
    lines.append("")
    lines.append(f"Medians of {len(runs['before'])} runs per side, alternating; ratio ranges in brackets. "
                 f"Load average (1 min) before each run: {', '.join(f'{x:.2f}' for x in loads)}.")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse(argv)
    runs = {"before": [], "after": []}
    loads = []
    with tempfile.TemporaryDirectory() as scratch:
        for i in range(args.rounds):
            order = ("before", "after") if i % 2 == 0 else ("after", "before")
            for side in order:
                loads.append(os.getloadavg()[0])
                print(f"round {i + 1}/{args.rounds}: {side} (load {loads[-1]:.2f})", file=sys.stderr, flush=True)
                results = run_suite(getattr(args, side), args, Path(scratch) / f"{side}-{i}")
                runs[side].append(figures(results))
    text = table(runs, loads)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
