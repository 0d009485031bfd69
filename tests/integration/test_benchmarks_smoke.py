"""The benchmark suite runs end to end on a small N: no figures are judged here, only that it works."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import kombu
import pytest

from benchmarks import run

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ITEMS = ("publish:", "consume:", "react:", "latency", "decode", "RSS", "outbox:", "schedule:", "Payment worker against",
         "Worker processes:", "state: inventory reservations")


def test_the_benchmark_suite_runs_writes_its_results_and_cleans_up(broker_url, tmp_path):
    # Given a broker, when the suite runs on a small N
    env = {**os.environ, "EDA_BROKER_URL": broker_url}
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--n", "200", "--seconds", "1.5", "--rate", "100",
         "--memory-events", "500", "--out", str(tmp_path), "--concurrency", "4",
         # the cluster measure starts three RabbitMQ nodes: test_cluster.py runs it on its own cluster
         "--only", ",".join(item for item in run.ITEMS if item != "cluster")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    # Then it succeeds and prints a row for each of the six measures
    assert result.returncode == 0, result.stderr
    for item in ITEMS:
        assert item in result.stdout, result.stdout
    # and writes both result files, with the machine they came from
    data = json.loads((tmp_path / "latest.json").read_text())
    assert data["failed"] == {}
    assert set(data["results"]) == set(run.ITEMS) - {"cluster"}
    assert data["machine"]["nproc"] >= 1 and data["machine"]["rabbitmq"]
    assert data["results"]["latency"]["eda"]["shipped"] == data["results"]["latency"]["eda"]["sent"]
    markdown = (tmp_path / "latest.md").read_text()
    assert "| measure |" in markdown and "RabbitMQ" in markdown
    # and leaves nothing behind in its namespace
    namespace = re.search(r"namespace (bench-\w+)", result.stderr).group(1)
    with kombu.Connection(broker_url) as conn:
        for name in (f"{namespace}.events", f"{namespace}.dlx"):
            with pytest.raises(conn.channel_errors):
                conn.channel().exchange_declare(name, "topic", passive=True)
        with pytest.raises(conn.channel_errors):
            conn.channel().queue_declare(f"{namespace}.shipping", passive=True)


def test_the_request_reply_benchmark_runs_and_prints_its_table(broker_url):
    env = {**os.environ, "EDA_BROKER_URL": broker_url}
    result = subprocess.run([sys.executable, "-m", "benchmarks.rpc", "--n", "60", "--concurrency", "1,4"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if re.match(r"\| [14] \| [\d,]+ \(", line)]
    assert len(rows) == 2, result.stdout
