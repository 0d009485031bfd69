"""`eda contracts` and shell completion, through the installed `eda` script (no broker needed)."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from eda_shop.contracts import CONTRACTS
from tests.support import eda_command, environment
from eda import discovery


def eda(*args, **env) -> subprocess.CompletedProcess:
    return subprocess.run(eda_command() + list(args), env=environment(**env), capture_output=True, text=True,
                          check=False, timeout=60)


def test_contracts_show_prints_the_schema_of_one_event():
    # When a user asks for one event's schema, by CLI name or by type
    for name in ("order-placed", "order.placed"):
        result = eda("contracts", "show", name)
        # Then it is the CloudEvent's JSON Schema with the data schema inside
        assert result.returncode == 0, result.stderr
        schema = json.loads(result.stdout)
        assert schema["properties"]["type"]["const"] == "order.placed"
        assert schema["properties"]["data"]["required"] == ["items", "orderId", "totalAmount", "userId"]


def test_contracts_show_of_an_unknown_event_is_a_one_line_error_suggesting_the_closest_name():
    result = eda("contracts", "show", "xyzzy")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("error: unknown event 'xyzzy'; known events: order-placed")
    assert len(result.stderr.splitlines()) == 1
    # a misspelt name or type: the closest known one, spelt the same way
    for misspelt, meant in (("order-placd", "order-placed"), ("payment.suceeded", "payment.succeeded")):
        result = eda("contracts", "show", misspelt)
        assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
        assert result.stderr.startswith(f"error: unknown event {misspelt!r} (did you mean {meant!r}?); known events: "
                                        f"order-placed"), result.stderr


def test_contracts_export_writes_the_file_given_with_o(tmp_path):
    # When the AsyncAPI document is exported to a file for namespace shop
    out = tmp_path / "asyncapi.json"
    result = eda("contracts", "export", "--format", "asyncapi", "-o", str(out), EDA_NAMESPACE="shop")
    # Then the file holds it and nothing goes to stdout
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    doc = json.loads(out.read_text())
    assert doc["asyncapi"] == "3.0.0"
    assert {c.type for c in CONTRACTS} <= set(doc["channels"])
    assert doc["channels"]["order.placed"]["bindings"]["amqp"]["exchange"]["name"] == "shop.events"


def test_contracts_export_prints_json_schema_to_stdout_by_default():
    result = eda("contracts", "export")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert set(doc["$defs"]) == {c.type for c in CONTRACTS}


def complete(line: str) -> list[str]:
    """What bash completion offers for ``line`` (the last word being completed), via click's protocol."""
    words = line.split(" ")
    result = eda(_EDA_COMPLETE="bash_complete", COMP_WORDS=line, COMP_CWORD=str(len(words) - 1))
    assert result.returncode == 0, result.stderr
    return [entry.split(",", 1)[1] for entry in result.stdout.splitlines()]


@pytest.mark.parametrize("line, expected", [
    ("eda wor", ["worker"]),
    ("eda contracts ", ["check", "export", "show"]),
    ("eda worker ", sorted(discovery.discover())),
    ("eda worker pa", ["payment"]),
    ("eda status inv", ["inventory"]),
    ("eda dlq show sh", ["shipping"]),
    ("eda publish order", ["order-placed", "order-cancelled", "order-payment-expired", "order-shipped"]),
    ("eda publish payment.", ["payment.succeeded", "payment.failed", "payment.refunded"]),
    ("eda contracts show stock", ["stock-replenished"]),
])
def test_shell_completion_offers_commands_workers_and_events(line, expected):
    assert complete(line) == expected


def test_the_documented_bash_setup_completes_in_a_real_bash():
    # Given bash set up with the line from docs/cli.md
    script = """eval "$(_EDA_COMPLETE=bash_source eda)"
COMPREPLY=(); COMP_WORDS=(eda worker inv); COMP_CWORD=2; _eda_completion eda; printf '%s\\n' "${COMPREPLY[@]}"
COMPREPLY=(); COMP_WORDS=(eda publish order-pl); COMP_CWORD=2; _eda_completion eda; printf '%s\\n' "${COMPREPLY[@]}"
"""
    # When bash completes a worker name, then an event name
    env = environment(PATH=f"{Path(eda_command()[0]).parent}:{os.environ.get('PATH', '')}")
    result = subprocess.run(["bash", "--norc", "-c", script], env=env, capture_output=True, text=True, timeout=60,
                            check=False)
    # Then it offers them
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["inventory", "order-placed"]
