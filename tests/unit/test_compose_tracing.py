"""The tracing half of the dev environment, checked without a Docker engine: the workers export OTLP to the
OpenTelemetry Collector, whose traces pipeline hands them to Jaeger, which Grafana reads as a data source."""

from urllib.parse import urlsplit

import pytest
import yaml

from eda import tracing
from eda.tracing import export
from tests.unit.compose import eda_services, environment, load_compose, mounted, published, running, worker_services
from tests.unit.test_compose_monitoring import grafana_files


@pytest.fixture(scope="module")
def services():
    return load_compose()["services"]


@pytest.fixture(scope="module")
def collector(services):
    return yaml.safe_load(mounted(services, "otel-collector", "/etc/otelcol-contrib/config.yaml").read_text())


def port_of(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


def test_every_worker_exports_its_traces_over_otlp_http_to_the_collector(services, collector):
    http = port_of(collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"])
    assert worker_services(services)
    for name, service in eda_services(services).items():
        env = environment(service)
        if "EDA_BROKER_URL" not in env:
            continue  # the gateway: not an eda worker
        assert tracing.exporter_names(env) == ["otlp"], name
        assert type(export.exporter("otlp", env)).__module__.startswith("opentelemetry.exporter.otlp.proto.http")
        endpoint = urlsplit(env["OTEL_EXPORTER_OTLP_ENDPOINT"])
        assert (endpoint.scheme, endpoint.hostname, endpoint.port) == ("http", "otel-collector", http), name
        assert "OTEL_SERVICE_NAME" not in env  # each worker is eda-<worker>


def test_the_collector_receives_otlp_and_hands_traces_to_jaeger(services, collector):
    pipeline = collector["service"]["pipelines"]["traces"]
    for kind in ("receivers", "processors", "exporters"):
        for component in pipeline[kind]:
            assert component in collector[kind], f"{component} is in the pipeline but not configured"
    assert pipeline["receivers"] == ["otlp"]
    for protocol in ("grpc", "http"):
        endpoint = collector["receivers"]["otlp"]["protocols"][protocol]["endpoint"]
        assert endpoint.startswith("0.0.0.0:"), "a receiver on localhost is unreachable from the workers"
        assert port_of(endpoint) in [c for _, c in published(services["otel-collector"])]
    exporter, = pipeline["exporters"]
    target = collector["exporters"][exporter]["endpoint"]
    assert target == "jaeger:4317" and exporter.startswith("otlp")  # Jaeger's OTLP gRPC receiver
    assert environment(services["jaeger"])["COLLECTOR_OTLP_ENABLED"] == "true"
    assert set(collector["service"]["extensions"]) <= set(collector["extensions"])


def test_jaeger_is_shown_on_its_port_and_is_a_grafana_data_source(services):
    jaeger = services["jaeger"]
    assert jaeger["image"].startswith("jaegertracing/all-in-one:")
    assert (16686, 16686) in published(jaeger)
    datasources, _ = grafana_files(services)
    source, = [d for d in datasources if d["type"] == "jaeger"]
    url = urlsplit(source["url"])
    assert (url.hostname, url.port) == ("jaeger", 16686)
    assert services["grafana"]["depends_on"]["jaeger"]["condition"] == "service_healthy"


def test_nothing_waits_for_the_collector(services):
    # An exporter retries and drops spans rather than block a worker: tracing never stops the shop.
    for name, service in running(services).items():
        assert "otel-collector" not in service.get("depends_on", {}), name
