"""A team's own service on eda: a project of its own, with its own `contracts` and `workers` packages
(the card's layout, shadowing the reference shop's), found through EDA_APP or installed with pip."""

import json
import subprocess
import sys
import textwrap

import pytest

from tests.support import handled, wait_until

pytestmark = pytest.mark.integration

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
    "setup.cfg": '''
        [metadata]
        name = acme-billing
        version = 1.0

        [options]
        packages = contracts, workers

        [options.entry_points]
        eda.contracts =
            billing = contracts
        eda.workers =
            billing = workers.billing:Billing
    ''',
    "pyproject.toml": '''
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"
    ''',
}


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "acme-billing"
    for path, text in PROJECT.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(textwrap.dedent(text).lstrip())
    return root


@pytest.fixture
def billing_queues(eda, broker, namespace):
    yield
    eda.stop_all()  # the worker first, or it would consume from queues being deleted
    for worker in ("billing", "careless"):
        for suffix in ("", ".dlq", ".retry.200ms", ".retry.400ms"):
            broker.channel.queue_delete(f"{namespace}.{worker}{suffix}")


def lines_of(output: str) -> list[str]:
    return [line for line in output.splitlines() if not line.startswith("{")]  # JSON lines are logs


def invoices_are_sent(eda, broker, **env):
    code, output = eda.run("events", **env)
    assert code == 0, output
    rows = {line.split()[0]: line.split() for line in lines_of(output)[1:]}
    assert rows["invoice-requested"][1:3] == ["invoice.requested", "billing"]
    assert rows["invoice-sent"][1] == "invoice.sent" and "order-placed" not in rows
    worker = eda.worker("billing", **env)
    spy = broker.spy("invoice.*")
    code, output = eda.run("publish", "invoice-requested", "--data", json.dumps({"invoiceId": "i-1", "amount": 5}),
                           **env)
    assert code == 0, output
    worker.wait_for_log(handled("invoice.requested", worker="billing"))
    [sent] = spy.wait_for("invoice.sent")
    assert sent["data"] == {"invoiceId": "i-1"} and sent["source"] == "eda/billing"


def test_a_project_run_through_eda_app_sends_invoices(eda, broker, project, billing_queues):
    eda.cwd = project
    invoices_are_sent(eda, broker, EDA_APP="contracts,workers")


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


def test_a_project_installed_with_pip_is_found_through_its_entry_points(eda, broker, project, tmp_path,
                                                                        billing_queues):
    site = tmp_path / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                          "--target", str(site), str(project)], capture_output=True, text=True)
    assert pip.returncode == 0, pip.stderr
    eda.cwd = tmp_path  # not the project's folder: only the installed copy can be found
    invoices_are_sent(eda, broker, PYTHONPATH=str(site))


def test_the_shops_demo_still_runs_in_a_project_folder(eda, project):
    eda.cwd = project
    code, output = eda.run("demo", "--embedded", EDA_APP="contracts,workers")
    assert code == 0, output
    assert "summary:" in output and "MISSING" not in output


def test_the_shops_demo_with_its_packages_shadowed_is_a_one_line_error(eda, project):
    eda.cwd = project
    code, output = eda.run("demo", "--embedded", PYTHONPATH=str(project))
    # Installed normally, `producers.demo` cannot import the shop's workers: "command 'demo' is not
    # available: cannot load producers.demo:command ..."; from an editable install it imports them under
    # the project's package, and finds their events unknown. Either way: one line, exit 2, no traceback.
    assert code == 2 and "Traceback" not in output, output
    assert lines_of(output)[-1].startswith("error: "), output
