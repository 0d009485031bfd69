"""Without the consistent-hash exchange plugin an ordered worker fails at start with one line saying how
to enable it; unordered workers run. On a RabbitMQ node of the test's own (deploy/cluster/cluster.sh
with one node), whose plugin is disabled online: the machine's broker keeps its plugins."""

import os
import subprocess
from pathlib import Path

import pytest

from tests.support import in_ci, port_open

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "cluster" / "cluster.sh"
PORT = int(os.environ.get("EDA_TEST_NOPLUGIN_PORT", "5895"))
NAME = "eda-noplugin"
APP = "tests.integration.ordering_app"


def rabbitmq_plugins() -> str | None:
    """RabbitMQ's own rabbitmq-plugins script (the Debian wrapper would switch to the rabbitmq user)."""
    listed = subprocess.run(["dpkg", "-L", "rabbitmq-server"], capture_output=True, text=True, check=False).stdout
    found = [line for line in listed.splitlines() if line.endswith("/sbin/rabbitmq-plugins") and "/lib/" in line]
    return found[0] if found else None


@pytest.fixture(scope="module")
def node_without_plugin(tmp_path_factory):
    """The URL of a one-node RabbitMQ started for this module, the consistent-hash plugin disabled."""
    plugins = rabbitmq_plugins()
    if plugins is None or port_open("127.0.0.1", PORT):
        message = "needs a local RabbitMQ installation and a free port " + str(PORT)
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    directory = tmp_path_factory.mktemp("noplugin") / "nodes"
    env = {**os.environ, "EDA_CLUSTER_NODES": "1", "EDA_CLUSTER_PORT": str(PORT), "EDA_CLUSTER_NAME": NAME,
           "EDA_CLUSTER_DIR": str(directory)}
    try:
        started = subprocess.run([str(SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=600)
        assert started.returncode == 0, started.stderr
        disabled = subprocess.run([plugins, "-n", f"{NAME}-1@localhost", "disable",
                                   "rabbitmq_consistent_hash_exchange"],
                                  env={**env, "HOME": str(directory),
                                       "RABBITMQ_ENABLED_PLUGINS_FILE": str(directory / "node1" / "enabled_plugins")},
                                  capture_output=True, text=True, timeout=300)
        assert disabled.returncode == 0, disabled.stdout + disabled.stderr
        yield started.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run([str(SCRIPT), "stop"], env=env, capture_output=True, timeout=300)


def test_an_ordered_worker_fails_at_start_with_one_line_saying_how_to_enable_the_plugin(eda, node_without_plugin):
    # Given a broker without the consistent-hash exchange
    # When an ordered worker starts there
    code, output = eda.run("worker", "accounts", EDA_BROKER_URL=node_without_plugin, EDA_APP=APP, timeout=120)
    # Then it exits 2 at once with one line that says how to enable the plugin
    assert code == 2
    assert output == ("error: worker 'accounts' is ordered (ordered_by) and needs RabbitMQ's consistent-hash "
                      "exchange: enable it with `rabbitmq-plugins enable rabbitmq_consistent_hash_exchange`")


def test_unordered_workers_do_not_need_the_plugin(eda, node_without_plugin):
    # Given a broker without the consistent-hash exchange, when an unordered worker starts there
    worker = eda.start("worker", "shipping", EDA_BROKER_URL=node_without_plugin).wait_ready(timeout=60)
    # Then it consumes
    assert worker.proc.poll() is None
