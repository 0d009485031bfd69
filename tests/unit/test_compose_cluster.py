"""The compose file's `cluster` profile: three RabbitMQ nodes that cluster, and the shop's workers on them
with quorum queues and every node in their broker URL (read from the file: there is no Docker engine here)."""

from urllib.parse import urlsplit

import pytest

from eda.connection import broker_urls
from eda.settings import Settings
from tests.unit.compose import ROOT, environment, load_compose, parse_command_line, published

NODES = ["rabbitmq-1", "rabbitmq-2", "rabbitmq-3"]


@pytest.fixture(scope="module")
def services():
    return load_compose()["services"]


def in_cluster_profile(services):
    return {name: s for name, s in services.items() if "cluster" in s.get("profiles", [])}


def cluster_conf() -> dict:
    lines = (ROOT / "deploy" / "cluster" / "rabbitmq-cluster.conf").read_text().splitlines()
    return dict(line.split(" = ", 1) for line in lines if line and not line.startswith("#"))


def test_the_profile_has_three_rabbitmq_nodes_of_the_single_nodes_image(services):
    nodes = {n: s for n, s in in_cluster_profile(services).items() if "image" in s and "rabbitmq" in s["image"]}
    assert sorted(nodes) == NODES
    for name, node in nodes.items():
        assert node["image"] == services["rabbitmq"]["image"]
        assert node["hostname"] == name  # the node is rabbit@<hostname>: what the peer discovery lists
        assert node["healthcheck"]["test"][1] == "rabbitmq-diagnostics" and node["restart"] == "unless-stopped"
        data = [v for v in node["volumes"] if v.endswith(":/var/lib/rabbitmq")]
        assert len(data) == 1 and data[0].split(":")[0] == f"{name}-data"


def test_the_nodes_find_each_other_and_share_one_cookie(services):
    conf = cluster_conf()
    assert conf["cluster_formation.peer_discovery_backend"] == "classic_config"
    assert sorted(v for k, v in conf.items() if k.startswith("cluster_formation.classic_config.nodes.")) == [
        f"rabbit@{n}" for n in NODES]
    cookies = set()
    for name in NODES:
        node = services[name]
        assert "./deploy/cluster/rabbitmq-cluster.conf:/etc/rabbitmq/conf.d/90-cluster.conf:ro" in node["volumes"]
        assert "./deploy/rabbitmq/enabled_plugins:/etc/rabbitmq/enabled_plugins:ro" in node["volumes"]
        env = environment(node)
        cookie = env["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"]
        assert cookie.startswith("-setcookie ") and env["RABBITMQ_CTL_ERL_ARGS"] == cookie  # the healthcheck's too
        cookies.add(cookie)
    assert len(cookies) == 1


def test_nodes_2_and_3_start_once_node_1_is_healthy_and_join_it(services):
    assert "depends_on" not in services["rabbitmq-1"]
    for name in NODES[1:]:
        assert services[name]["depends_on"] == {"rabbitmq-1": {"condition": "service_healthy"}}


def test_each_node_publishes_amqp_on_its_own_host_port_of_this_machine_only(services):
    ports = {name: published(services[name]) for name in NODES}
    assert [next(h for h, c in ports[n] if c == 5672) for n in NODES] == [5681, 5682, 5683]
    every_host_port = [h for s in services.values() for h, _ in published(s)]
    assert len(every_host_port) == len(set(every_host_port))
    for name in NODES:
        assert all(str(entry).startswith("127.0.0.1:") for entry in services[name]["ports"])


def test_the_cluster_workers_use_every_node_and_quorum_queues(services):
    workers = {n: s for n, s in in_cluster_profile(services).items() if s.get("build")}
    assert sorted(workers) == ["inventory-cluster", "payment-cluster", "shipping-cluster"]
    for name, service in workers.items():
        command, params = parse_command_line(service["command"])
        assert command.name == "worker" and params["names"] == (name.removesuffix("-cluster"),)
        env = environment(service)
        settings = Settings.from_env(environ=env)  # valid settings, the failover list included
        assert settings.queue_type == "quorum"
        assert [(urlsplit(u).hostname, urlsplit(u).port) for u in broker_urls(settings.broker_url)] == [
            (n, 5672) for n in NODES]
        assert {n: {"condition": "service_healthy"} for n in NODES}.items() <= service["depends_on"].items()
