"""A team's own service on eda: a project of its own with its own `contracts` and `workers` packages
(the card's layout), installed with pip beside eda's wheel in a virtualenv of its own, where nothing of
the reference shop exists; and the same project run from its folder through EDA_APP."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support import handled, wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

PROJECT = {
    "contracts/__init__.py": '''
        from eda import EventData, contract
        from eda.fields import Id, Money


        @contract("invoice.requested", description="An invoice should be sent.")
        class InvoiceRequested(EventData):
            invoice_id = Id(required=True)
            amount = Money(required=True)


        @contract("invoice.sent", published_by=("billing",))
        class InvoiceSent(EventData):
            invoice_id = Id(required=True)


        @contract("invoice.voided")
        class InvoiceVoided(EventData):
            invoice_id = Id(required=True)
    ''',
    "workers/__init__.py": "",
    "workers/billing.py": '''
        from eda import Worker, handles


        class Billing(Worker):
            name = "billing"
            description = "Sends invoices."

            @handles("invoice.requested")
            def send(self, event, ctx):
                ctx.publish("invoice.sent", {"invoice_id": event.data["invoice_id"]})
    ''',
    "workers/careless.py": '''
        from eda import Worker, handles


        class Careless(Worker):
            name = "careless"

            @handles("invoice.voided")
            def resend(self, event, ctx):
                ctx.publish("invoice.sent", {"invoiceId": event.data["invoice_id"]})  # the wire's keys
    ''',
    "tests/test_billing.py": '''
        from eda.testing import TestBus

        import contracts  # noqa: F401 - the project's events
        from workers.billing import Billing


        def test_billing_sends_an_invoice():
            with TestBus(Billing) as bus:
                bus.publish("invoice.requested", {"invoice_id": "i-1", "amount": "5.00"})
                assert [e.data["invoice_id"] for e in bus.published("invoice.sent")] == ["i-1"]
    ''',
    "pyproject.toml": '''
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "acme-billing"
        version = "1.0"
        dependencies = ["eda"]

        [tool.setuptools]
        packages = ["contracts", "workers"]

        [project.entry-points."eda.contracts"]
        billing = "contracts"

        [project.entry-points."eda.workers"]
        billing = "workers.billing:Billing"
    ''',
}


def write_project(root: Path) -> Path:
    for path, text in PROJECT.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(textwrap.dedent(text).lstrip())
    return root


def run(*args, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600, **kwargs)
    assert done.returncode == 0, f"{' '.join(map(str, args))}:\n{done.stdout}\n{done.stderr}"
    return done


def lines_of(output: str) -> list[str]:
    return [line for line in output.splitlines() if not line.startswith("{")]  # JSON lines are logs


def warnings_in(output: str) -> list[str]:
    return [line for line in output.splitlines() if "warning" in line.lower()]


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    """A virtualenv with eda's wheel (built by `python -m build` from a copy of the checkout, which stays
    clean) and the team's project, both installed with pip: nothing else of this repository."""
    root = tmp_path_factory.mktemp("team")
    source = root / "eda-src"
    tracked = run("git", "ls-files", "--cached", "--others", "--exclude-standard", cwd=ROOT).stdout.split()
    for name in tracked:
        path = ROOT / name
        if path.is_symlink():  # eda/cli.py is the repository's cli.py
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).symlink_to(os.readlink(path))
        elif path.is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, source / name)
    run(sys.executable, "-m", "build", "--outdir", root / "dist", source)
    [wheel] = (root / "dist").glob("eda-*.whl")
    project = write_project(root / "acme-billing")
    venv = root / "venv"
    run(sys.executable, "-m", "venv", venv)
    run(venv / "bin" / "pip", "install", "-q", wheel, project, "pytest")
    return venv, project


def test_eda_alone_installs_the_framework_and_its_command_and_no_module_of_the_shop(team, tmp_path):
    venv, project = team
    found = run(venv / "bin" / "python", "-c", textwrap.dedent('''
        import importlib.util, json
        names = ("eda", "eda.cli", "eda_shop", "cli", "producers", "contracts", "workers")
        print(json.dumps({n: (s.origin if (s := importlib.util.find_spec(n)) else None) for n in names}))
    '''), cwd=tmp_path).stdout
    origins = json.loads(found)
    assert origins["eda"] and origins["eda.cli"], origins
    assert origins["eda_shop"] is None and origins["cli"] is None and origins["producers"] is None, origins
    for package in ("contracts", "workers"):  # the team's own, installed from its project
        assert "site-packages" in origins[package], origins
    assert "invoice.requested" in (Path(origins["contracts"])).read_text()
    typed = Path(origins["eda"]).parent / "py.typed"
    assert typed.exists()
    # The shop's commands are not there: no `eda demo`, no `eda gateway`.
    help_text = run(venv / "bin" / "eda", "--help", cwd=tmp_path).stdout
    assert "demo" not in help_text and "gateway" not in help_text and "worker" in help_text
    demo = subprocess.run([venv / "bin" / "eda", "demo"], capture_output=True, text=True, cwd=tmp_path)
    assert demo.returncode == 2 and demo.stderr.startswith("error: No such command 'demo'"), demo.stderr


def test_an_installed_project_is_the_app_its_workers_run_and_status_concerns_them_alone(team, eda, broker,
                                                                                      namespace, tmp_path):
    venv, _ = team
    eda.command = [str(venv / "bin" / "eda")]
    eda.cwd = tmp_path  # not the project's folder: only the installed copy can be found
    code, output = eda.run("events")
    assert code == 0, output
    rows = {line.split()[0]: line.split() for line in lines_of(output)[1:]}
    assert set(rows) == {"invoice-requested", "invoice-sent", "invoice-voided"}, output
    assert rows["invoice-requested"][1:3] == ["invoice.requested", "billing"]

    # Given the team's worker, before it runs: its queue has no consumer, and status says so.
    code, output = eda.run("topology", "declare")
    assert code == 0, output
    code, output = eda.run("status")
    assert code == 1 and f"{namespace}.billing" in output and "payment" not in output, output

    # When it runs, an invoice request becomes an invoice sent on the wire.
    worker = eda.worker("billing")
    spy = broker.spy("invoice.*")
    code, output = eda.run("publish", "invoice-requested", "--data", json.dumps({"invoiceId": "i-1", "amount": 5}))
    assert code == 0, output
    worker.wait_for_log(handled("invoice.requested", worker="billing"))
    [sent] = spy.wait_for("invoice.sent")
    assert sent["data"] == {"invoiceId": "i-1"} and sent["source"] == "eda/billing"

    # Then the namespace is healthy: the team's workers are the app's, and nobody pages for the shop's.
    code, output = eda.run("status", "--json")
    assert code == 0, output
    doc = json.loads(output[output.index("{"):])
    assert doc["healthy"] is True and {q["worker"] for q in doc["queues"]} == {"billing"}, doc
    for process in eda.processes:
        assert warnings_in(process.output) == [], process.output
    worker.send()
    assert worker.wait() == 0


def test_plain_pytest_in_the_project_runs_its_testbus_tests_without_a_warning(team):
    venv, project = team
    done = subprocess.run([venv / "bin" / "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
                          capture_output=True, text=True, cwd=project, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout and warnings_in(done.stdout + done.stderr) == [], done.stdout + done.stderr


# The same project from its folder, not installed, in this repository's environment (the shop installed).

@pytest.fixture
def project(tmp_path):
    return write_project(tmp_path / "acme-billing")


@pytest.fixture
def billing_queues(eda, broker, namespace):
    yield
    eda.stop_all()  # the worker first, or it would consume from queues being deleted
    for worker in ("billing", "careless"):
        for suffix in ("", ".dlq", ".retry.200ms", ".retry.400ms"):
            broker.channel.queue_delete(f"{namespace}.{worker}{suffix}")


def test_a_project_run_through_eda_app_sends_invoices_and_lists_only_its_own_workers(eda, broker, project,
                                                                                     billing_queues):
    eda.cwd = project
    app = {"EDA_APP": "contracts,workers"}
    code, output = eda.run("events", **app)
    assert code == 0, output
    rows = {line.split()[0]: line.split() for line in lines_of(output)[1:]}
    assert rows["invoice-requested"][1:3] == ["invoice.requested", "billing"]
    # The shop's contracts are known (installed), its workers are not the app's: nobody consumes its orders.
    assert rows["order-placed"][2] == "-", output
    worker = eda.worker("billing", **app)
    spy = broker.spy("invoice.*")
    code, output = eda.run("publish", "invoice-requested", "--data", json.dumps({"invoiceId": "i-1", "amount": 5}),
                           **app)
    assert code == 0, output
    worker.wait_for_log(handled("invoice.requested", worker="billing"))
    [sent] = spy.wait_for("invoice.sent")
    assert sent["data"] == {"invoiceId": "i-1"} and sent["source"] == "eda/billing"
    code, output = eda.run("status", "billing", **app)
    assert code == 0, output
    code, output = eda.run("worker", "payment", **app)
    assert code == 2 and lines_of(output)[-1] == \
        "error: unknown worker 'payment'; known workers: billing, careless", output


def test_a_reaction_breaking_its_contract_is_dead_lettered_at_once_and_nothing_is_sent(eda, broker, namespace,
                                                                                       project, billing_queues):
    eda.cwd = project
    worker = eda.worker("careless", EDA_APP="contracts,workers")
    spy = broker.spy("invoice.*")
    code, output = eda.run("publish", "invoice-voided", "--data", '{"invoiceId": "i-9"}', EDA_APP="contracts")
    assert code == 0, output
    wait_until(lambda: broker.depth(f"{namespace}.careless.dlq") == 1, message="the event in the DLQ")
    [dead] = broker.peek(f"{namespace}.careless.dlq")
    assert dead.headers["eda-exception-type"] == "ContractError" and dead.headers["eda-retry-count"] == 0
    assert "unknown field 'invoiceId' (did you mean 'invoice_id'?)" in dead.headers["eda-exception-message"]
    worker.wait_for_log(lambda r: str(r.get("message", "")).startswith("dead-lettered"), what="the dead letter")
    assert spy.of_type("invoice.sent") == [] and broker.depth(f"{namespace}.careless.retry.200ms") == 0


def test_every_command_that_knows_events_takes_app_too(eda, project):
    eda.cwd = project
    code, output = eda.run("events", "--app", "contracts,workers")
    assert code == 0 and "invoice-requested" in output, output
    code, output = eda.run("contracts", "show", "invoice-requested", "--app", "contracts")
    assert code == 0 and '"const": "invoice.requested"' in output, output
    code, output = eda.run("events", "--app", "contracts,nowhere")
    assert code == 2 and lines_of(output)[-1] == \
        "error: --app (EDA_APP): cannot import 'nowhere': No module named 'nowhere'", output


def test_the_shops_demo_runs_in_a_project_folder_with_its_own_contracts_and_workers(eda, project):
    eda.cwd = project
    code, output = eda.run("demo", "--embedded", EDA_APP="contracts,workers")
    assert code == 0, output
    assert "summary:" in output and "MISSING" not in output
