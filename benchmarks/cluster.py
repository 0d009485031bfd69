"""The price of replication: the no-op worker on a three-node cluster with quorum queues, beside the same
worker on the single broker with classic queues, in one run.

The cluster is EDA_BENCH_CLUSTER_URL where set (a failover list of a running cluster's nodes), else
three nodes started on this machine by deploy/cluster/cluster.sh, stopped and removed afterwards.
"""

import contextlib
import os
import subprocess
import tempfile
from pathlib import Path

from benchmarks import eda_side
from benchmarks.bench import Bench, order_event
from eda.topology import Topology

SCRIPT = Path(__file__).resolve().parents[1] / "deploy" / "cluster" / "cluster.sh"


@contextlib.contextmanager
def three_nodes():
    """The failover URL of a three-node cluster: the one named by EDA_BENCH_CLUSTER_URL, or one started
    here on ports nothing else uses, and stopped and removed however the measure ends."""
    if os.environ.get("EDA_BENCH_CLUSTER_URL"):
        yield os.environ["EDA_BENCH_CLUSTER_URL"]
        return
    with tempfile.TemporaryDirectory(prefix="eda-bench-cluster-") as directory:
        env = {**os.environ, "EDA_CLUSTER_DIR": str(Path(directory) / "nodes"),
               "EDA_CLUSTER_PORT": os.environ.get("EDA_BENCH_CLUSTER_PORT", "5881"), "EDA_CLUSTER_NAME": "eda-bench"}
        try:
            started = subprocess.run([str(SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=600)
            if started.returncode != 0:
                raise RuntimeError(f"the cluster did not start: {(started.stderr or started.stdout).strip()[-500:]}")
            yield started.stdout.strip().splitlines()[-1]
        finally:
            subprocess.run([str(SCRIPT), "stop"], env=env, capture_output=True, timeout=300)


def quorum_bench(url: str) -> Bench:
    """A Bench on ``url`` whose workers' queues are quorum queues."""
    bench = Bench(url)
    bench.settings = bench.settings.with_(queue_type="quorum")
    bench.topology = Topology.from_settings(bench.settings)
    return bench


def noop_single_vs_cluster(bench: Bench, n: int) -> dict:
    """Events per second of the no-op worker at the default concurrency: on ``bench``'s broker with
    classic queues, then on three nodes with quorum queues (its queue led by the node it consumes from)."""
    concurrency = bench.settings.concurrency
    single = eda_side.consume(bench, lambda queue: bench.preload(queue, order_event, n), n, concurrency)
    bench.topology.delete_worker(bench.channel, eda_side.NoOp.name)
    with three_nodes() as url:
        replicated = quorum_bench(url)
        try:
            rate = eda_side.consume(replicated, lambda queue: replicated.preload(queue, order_event, n), n,
                                    concurrency)
        finally:
            replicated.cleanup()
    return {"n": n, "concurrency": concurrency, "single_classic": single, "cluster_quorum": rate}
