"""``python -m tests.chaos``: chaos runs of the shop on a three-node cluster, one per seed; exit 1 on any
violation (README, "Reliability: partitions and pauses").

    python -m tests.chaos --seeds 1 --seconds 180            # the short run .ci/run makes
    python -m tests.chaos --seeds 1-6 --seconds 300          # the long run: 30 minutes of faults
    python -m tests.chaos clean                              # remove what runs killed by SIGKILL left
"""

import argparse
import sys
from pathlib import Path

from tests.chaos.network import NetworkError, clean
from tests.chaos.nodes import NodeError
from tests.chaos.postgres import PostgresError
from tests.chaos.processes import ProcessError
from tests.chaos.run import RunError, run

# The run could not be carried out (exit 2): not a verdict on eda.
SETUP_ERRORS = (RunError, NetworkError, NodeError, PostgresError, ProcessError)


def seeds(text: str) -> list[int]:
    out = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        out += list(range(int(low), int(high or low) + 1))
    return out


def main(argv: list[str]) -> int:
    if argv[:1] == ["clean"]:
        removed = clean()
        print(f"removed {len(removed)} namespaces of dead chaos runs" + (f": {', '.join(removed)}" if removed else ""))
        return 0
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=seeds, default=[1], help="seeds, e.g. 1 or 1-6 or 1,4,9 [1]")
    parser.add_argument("--seconds", type=float, default=180, help="seconds of orders per run [180]")
    parser.add_argument("--rate", type=float, default=10, help="orders per second [10]")
    parser.add_argument("--out", type=Path, default=Path("chaos-results"), help="report folder [chaos-results]")
    args = parser.parse_args(argv)
    failed = []
    for seed in args.seeds:
        try:
            code = run(seed, args.seconds, args.rate, args.out / f"seed-{seed}")
        except SETUP_ERRORS as exc:
            print(f"error: seed {seed}: {exc}", file=sys.stderr)
            return 2
        if code == 130:
            return code
        if code:
            failed.append(seed)
    if failed:
        print(f"failed seeds: {', '.join(map(str, failed))} (their reports: {args.out}/seed-N/summary.md)")
    print(f"chaos: {len(args.seeds) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
