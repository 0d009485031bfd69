"""The docker compose dev environment, checked without a Docker engine: the eda image, its services, their
command lines, settings, ports, health checks and dependencies, against eda's own CLI, settings and workers."""

import json
import re
import subprocess
import sys
import zipfile
from fnmatch import fnmatch
from urllib.parse import urlsplit

import pytest

from eda.settings import SPECS, Settings
from tests.unit.compose import (
    ROOT,
    dockerfile,
    eda_services,
    environment,
    load_compose,
    parse_command_line,
    published,
    running,
    worker_services,
)
from eda import discovery


@pytest.fixture(scope="module")
def services():
    return load_compose()["services"]


# The eda image and its services

def test_the_image_is_python_311_slim_runs_eda_as_entrypoint_and_not_as_root():
    image = dockerfile()
    assert image["FROM"] == ["python:3.11-slim"]
    assert json.loads(image["ENTRYPOINT"][-1]) == ["eda"]
    assert image["USER"][-1] not in ("root", "0")
    assert any("pip install '.[otel]'" in run for run in image["RUN"])  # eda, and tracing's SDK and exporter


def workers_own_settings():
    """The settings the known workers declare themselves (payment's gateway URL, inventory's threshold),
    by the variable each reads (EDA_PAYMENT_GATEWAY_URL, EDA_INVENTORY_STOCK_THRESHOLD)."""
    from eda import discovery
    from eda.worker_settings import declared

    return {s.variable(cls.name): s for cls in discovery.discover().values() for s in declared(cls)}


def test_every_eda_service_is_built_from_the_repository_as_one_image(services):
    built = eda_services(services)
    assert {"gateway", "payment", "inventory", "shipping"} <= set(built)
    assert {s["build"] for s in built.values()} == {"."}
    assert len({s["image"] for s in built.values()}) == 1
    for name, service in built.items():
        assert "entrypoint" not in service, f"{name} must run through the image's ENTRYPOINT eda"
        grace = float(str(service["stop_grace_period"]).rstrip("s"))
        assert grace > SPECS["shutdown_timeout"].default, f"{name}: docker would SIGKILL a finishing worker"


def test_there_is_one_service_per_registered_worker_running_it_with_a_valid_command_line(services):
    workers = worker_services(services)
    named = []
    for name, service in workers.items():
        command, params = parse_command_line(service["command"])
        assert command.name == "worker"
        assert set(params["names"]) <= set(discovery.discover()), f"{name} runs an unknown worker"
        named.extend(params["names"])
    assert set(named) == set(discovery.discover())


def test_payment_and_inventory_run_two_instances_sharing_one_database(services):
    # Two instances of a worker agree on one truth only through a shared state database (issue 9)
    workers = worker_services(services)
    for worker in ("payment", "inventory"):
        instances = [s for s in workers.values() if parse_command_line(s["command"])[1]["names"] == (worker,)]
        assert len(instances) == 2, worker
        urls = {environment(s).get("EDA_DATABASE_URL") for s in instances}
        assert len(urls) == 1 and urlsplit(urls.pop()).hostname == "postgres"
        assert all("postgres" in s["depends_on"] for s in instances)
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])


def test_every_eda_setting_in_the_compose_file_is_a_valid_setting(services):
    known = {spec.env for spec in SPECS.values()} | set(workers_own_settings())
    for name, service in eda_services(services).items():
        env = environment(service)
        assert {k for k in env if k.startswith("EDA_")} <= known, f"{name} sets unknown settings"
        Settings.from_env(environ=env)  # a bad value raises ConfigError naming it
        for variable, setting in workers_own_settings().items():
            setting.parse(env.get(variable), variable)


def test_urls_in_the_environment_point_at_services_and_their_ports(services):
    for name, service in eda_services(services).items():
        env = environment(service)
        if not env:
            continue
        for url in env["EDA_BROKER_URL"].split(";"):  # one broker, or the nodes of the cluster profile
            broker = urlsplit(url)
            assert broker.hostname in services and broker.hostname.startswith("rabbitmq") and broker.port == 5672
            assert 5672 in [c for _, c in published(services[broker.hostname])]
        gateway = urlsplit(env["EDA_PAYMENT_GATEWAY_URL"])
        assert gateway.hostname == "gateway"
        _, params = parse_command_line(services["gateway"]["command"])
        assert params["host"] == "0.0.0.0" and gateway.port == params["port"]


def test_the_gateway_publishes_its_port_and_is_checked_on_health(services):
    gateway = services["gateway"]
    command, params = parse_command_line(gateway["command"])
    assert command.name == "gateway"
    assert (params["port"], params["port"]) in published(gateway)
    assert f"localhost:{params['port']}/health" in " ".join(gateway["healthcheck"]["test"])


def test_each_worker_serves_metrics_on_its_port_which_its_healthcheck_probes(services):
    for name, service in worker_services(services).items():
        port = int(environment(service)["EDA_METRICS_PORT"])
        assert port in [c for _, c in published(service)], f"{name} does not publish its metrics port"
        assert f"localhost:{port}/metrics" in " ".join(service["healthcheck"]["test"])


def test_published_host_ports_are_unique(services):
    host_ports = [h for s in running(services).values() for h, _ in published(s)]
    assert len(host_ports) == len(set(host_ports))


def test_every_service_has_a_healthcheck_a_restart_policy_and_waits_for_healthy_dependencies(services):
    for name, service in running(services).items():
        if name != "otel-collector":  # a distroless image: nothing inside to probe with (see the compose file)
            assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        assert service.get("restart") in ("always", "unless-stopped", "on-failure"), name
        for dependency, how in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on a missing {dependency}"
            assert how["condition"] == "service_healthy"
    for name, service in eda_services(services).items():
        env = environment(service)
        if "EDA_BROKER_URL" in env:
            brokers = {urlsplit(url).hostname for url in env["EDA_BROKER_URL"].split(";")}
            assert brokers <= set(service["depends_on"]), f"{name} does not wait for the broker"
        if "EDA_PAYMENT_GATEWAY_URL" in env and service.get("command", [""])[0] == "worker" and "payment" in (
                parse_command_line(service["command"])[1]["names"]):
            assert "gateway" in service["depends_on"]
    assert services["rabbitmq"]["healthcheck"]["test"][1:3] == ["rabbitmq-diagnostics", "-q"]


# The build context

def dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether docker leaves ``path`` out of the build context (patterns as in .dockerignore, no '!')."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return any(fnmatch(prefix, p) or fnmatch(prefix, p.removeprefix("**/")) for p in patterns for prefix in prefixes)


def test_the_build_context_installs_eda_and_the_shop_with_the_console_script_and_workers(tmp_path):
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    assert not any(p.startswith("!") for p in patterns)
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    context = tmp_path / "context"
    for name in files:
        path = ROOT / name
        if not dockerignored(name, patterns) and (path.is_file() or path.is_symlink()):
            (context / name).parent.mkdir(parents=True, exist_ok=True)
            if path.is_symlink():  # eda/cli.py is the repository's cli.py
                (context / name).symlink_to(path.readlink())
            else:
                (context / name).write_bytes(path.read_bytes())
    assert not (context / "tests").exists() and not (context / ".git").exists()
    # What `pip install . ./shop` does in the image, on the same context.
    wheels = {}
    for project in (".", "shop"):
        built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "wheel"),
                                str(context / project)], capture_output=True, text=True, timeout=300)
        assert built.returncode == 0, built.stderr
    for wheel in (tmp_path / "wheel").glob("*.whl"):
        with zipfile.ZipFile(wheel) as whl:
            names = whl.namelist()
            entry_points = next((whl.read(n).decode() for n in names if n.endswith("entry_points.txt")), "")
        wheels[wheel.name.split("-")[0]] = ({n.split("/")[0] for n in names if not ".dist-info" in n}, names, entry_points)
    top, names, entry_points = wheels["eda"]
    assert top == {"eda"} and "eda/cli.py" in names  # the library alone
    assert re.search(r"^eda = eda.cli:main$", entry_points, re.M)
    top, names, entry_points = wheels["eda_shop"]
    assert top == {"eda_shop"}
    for package in ("contracts", "producers", "workers"):
        assert f"eda_shop/{package}/__init__.py" in names
    for worker in discovery.discover():
        assert re.search(rf"^{worker} = eda_shop\.workers\.", entry_points, re.M)
