"""The monitoring half of the dev environment: RabbitMQ's plugins, Prometheus' scrape targets, Grafana's
provisioning and the eda dashboard, whose queries may read only eda's metrics and RabbitMQ's."""

import json
import re

import pytest
import yaml

from tests.unit.compose import bind_mounts, environment, load_compose, mounted, published, worker_services

EDA_METRICS = {"eda_events_consumed_total", "eda_handler_duration_seconds", "eda_events_published_total",
               "eda_retries_total", "eda_dead_letters_total", "eda_breaker_state", "eda_handlers_in_flight",
               "eda_broker_connected"}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or",
                "unless", "inf", "nan"}


@pytest.fixture(scope="module")
def services():
    return load_compose()["services"]


# What the compose file mounts

def test_every_mounted_file_exists_and_parses(services):
    mounts = [m for s in services.values() for m in bind_mounts(s)]
    assert mounts
    for source, _ in mounts:
        assert source.exists(), f"{source} is mounted but missing"
        for path in [source] if source.is_file() else sorted(source.rglob("*")):
            if path.suffix in (".yml", ".yaml"):
                assert yaml.safe_load(path.read_text()), path
            elif path.suffix == ".json":
                assert json.loads(path.read_text()), path


def test_rabbitmq_runs_the_management_and_prometheus_plugins(services):
    rabbitmq = services["rabbitmq"]
    assert rabbitmq["image"].startswith("rabbitmq:3.13-management")
    (plugins, target), = [m for m in bind_mounts(rabbitmq) if m[1].endswith("enabled_plugins")]
    assert target == "/etc/rabbitmq/enabled_plugins"
    listed = re.fullmatch(r"\s*\[([a-z_,\s]*)\]\.\s*", plugins.read_text())  # an Erlang list term
    assert listed, "enabled_plugins is not an Erlang list term"
    assert {"rabbitmq_management", "rabbitmq_prometheus"} <= {p.strip() for p in listed.group(1).split(",")}
    assert {15672, 15692} <= {c for _, c in published(rabbitmq)}


def test_prometheus_scrapes_every_worker_on_its_metrics_port_and_rabbitmq(services):
    config = yaml.safe_load(mounted(services, "prometheus", "/etc/prometheus/prometheus.yml").read_text())
    targets = {t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    for name, service in worker_services(services).items():
        assert f"{name}:{environment(service)['EDA_METRICS_PORT']}" in targets
    for target in targets:
        host, port = target.split(":")
        assert host in services, f"Prometheus scrapes {target}, which is no service"
    rabbitmq_job, = [j for j in config["scrape_configs"] if any("rabbitmq:15692" in sc["targets"]
                                                                 for sc in j["static_configs"])]
    assert rabbitmq_job["metrics_path"] == "/metrics/per-object"  # queue depths per queue


def grafana_files(services):
    provisioning = mounted(services, "grafana", "/etc/grafana/provisioning")
    datasources = [d for f in sorted((provisioning / "datasources").glob("*.yml"))
                   for d in yaml.safe_load(f.read_text())["datasources"]]
    providers = [p for f in sorted((provisioning / "dashboards").glob("*.yml"))
                 for p in yaml.safe_load(f.read_text())["providers"]]
    return datasources, providers


def test_grafana_is_provisioned_with_prometheus_and_the_eda_dashboard(services):
    datasources, providers = grafana_files(services)
    prometheus, = [d for d in datasources if d["type"] == "prometheus"]  # Jaeger beside it: test_compose_tracing
    assert prometheus["url"] == f"http://prometheus:{published(services['prometheus'])[0][1]}"
    provider, = providers
    dashboards = mounted(services, "grafana", provider["options"]["path"])
    assert json.loads((dashboards / "eda.json").read_text())["panels"]


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (functions, keywords, labels and variables dropped)."""
    expr = re.sub(r'"(?:\\.|[^"\\])*"', "", expr)  # strings: label values
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)  # label lists
    expr = re.sub(r"\$\w+", "", expr)  # dashboard variables
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        is_function = expr[match.end():].lstrip().startswith("(")
        if not is_function and match.group().lower() not in PROMQL_WORDS:
            names.add(match.group())
    return names


def allowed_metric(name: str) -> bool:
    if name in EDA_METRICS or name.startswith("rabbitmq_"):
        return True
    return name.endswith(HISTOGRAM_SUFFIXES) and name.rsplit("_", 1)[0] in EDA_METRICS


def dashboard_queries(dashboard: dict) -> list[str]:
    panels = [p for top in dashboard["panels"] for p in [top, *top.get("panels", [])]]
    queries = [t["expr"] for p in panels for t in p.get("targets", [])]
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable["type"] == "query":
            query = variable["query"]
            queries.append(re.sub(r"^label_values\((.*),\s*\w+\)$", r"\1",
                                  query["query"] if isinstance(query, dict) else query))
    return queries


def test_the_dashboard_queries_only_eda_and_rabbitmq_metrics_through_the_provisioned_datasource(services):
    datasources, providers = grafana_files(services)
    dashboard = json.loads((mounted(services, "grafana", providers[0]["options"]["path"]) / "eda.json").read_text())
    uids = {d["uid"] for d in datasources}
    queries = dashboard_queries(dashboard)
    used = set().union(*(metric_names(q) for q in queries))
    assert {n for n in used if not allowed_metric(n)} == set()
    # It shows what the issue asks for: throughput, latency, retries, dead letters, breaker, queue depths.
    assert {"eda_events_consumed_total", "eda_handler_duration_seconds_bucket", "eda_retries_total",
            "eda_dead_letters_total", "eda_breaker_state", "rabbitmq_queue_messages_ready"} <= used
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] in uids, panel["title"]


def test_the_metric_name_check_catches_a_stray_metric():
    assert metric_names('sum by (le) (rate(eda_handler_duration_seconds_bucket{worker=~"$worker"}[5m]))') == {
        "eda_handler_duration_seconds_bucket"}
    assert metric_names("histogram_quantile(0.95, rate(eda_typo_seconds_bucket[1m])) / on(worker) up") == {
        "eda_typo_seconds_bucket", "up"}
    assert not allowed_metric("eda_typo_seconds_bucket") and not allowed_metric("up")


def test_the_dashboards_eda_metrics_are_the_ones_a_worker_exports():
    from eda.metrics import REGISTRY

    # prometheus_client names a counter's family without the _total its samples carry.
    exported = {f.name + ("_total" if f.type == "counter" else "") for f in REGISTRY.collect()}
    assert EDA_METRICS <= exported
