"""Hostile or careless input to the CLI: one `error:` line, the documented exit code, nothing published,
never a traceback, never a password."""

import json
import os
import subprocess
import sys
import time
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.support import eda_command

pytestmark = pytest.mark.integration


@pytest.fixture
def payment_queue(eda, namespace):
    """The payment worker's queue declared, nobody consuming: what a publish put there stays there."""
    code, output = eda.run("topology", "declare")
    assert code == 0, output
    return f"{namespace}.payment"


def one_error_line(output: str) -> str:
    assert "Traceback" not in output
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    return lines[0]


def valid_order(**changes) -> dict:
    return {"orderId": "ord-1", "userId": "user-1", "totalAmount": "10.00",
            "items": [{"sku": "SKU-1", "quantity": 1, "unitPrice": "10.00"}], **changes}


def run_with_stdin(env, args, stdin: bytes, timeout=60):
    done = subprocess.run(eda_command() + list(args), input=stdin, env=env, capture_output=True, timeout=timeout)
    return done.returncode, (done.stdout + done.stderr).decode("utf-8", "replace")


def test_random_bytes_on_stdin_are_one_line_and_publish_nothing(env, broker, payment_queue):
    code, output = run_with_stdin(env, ["publish", "order-placed", "--file", "-"], os.urandom(4096))
    assert code == 1
    assert "is not UTF-8 text" in one_error_line(output)
    assert broker.depth(payment_queue) == 0


def test_a_binary_file_after_valid_lines_publishes_nothing(eda, broker, payment_queue, tmp_path):
    path = tmp_path / "orders.jsonl"
    path.write_bytes(json.dumps(valid_order()).encode() + b"\n" + os.urandom(4096))
    code, output = eda.run("publish", "order-placed", "--file", str(path))
    assert code == 1
    assert "is not UTF-8 text" in one_error_line(output)
    assert broker.depth(payment_queue) == 0


@pytest.mark.parametrize("data, message", [
    ("[" * 50_000, "nested too deeply"),
    (json.dumps(valid_order())[:-1] + ', "x": ' + "[" * 900 + "]" * 900 + "}", "Unknown field"),
    (json.dumps(valid_order(orderId="PLACEHOLDER")).replace("PLACEHOLDER", "\\ud800"), "surrogate"),
    (json.dumps(valid_order(totalAmount="NaN")).replace('"NaN"', "NaN"), "NaN is not a JSON number"),
    (json.dumps(valid_order()).replace('"totalAmount"', '"total_amount"'), "total_amount: Unknown field (did you "
                                                                            "mean 'totalAmount'?)"),
])
def test_data_json_cannot_carry_is_an_invalid_event(eda, broker, payment_queue, data, message):
    code, output = eda.run("publish", "order-placed", "--data", data)
    assert code == 1
    line = one_error_line(output)
    assert line.startswith("error: --data: ") and message in line
    assert broker.depth(payment_queue) == 0


@pytest.mark.parametrize("option, attribute", [("--correlation-id", "correlationid"), ("--source", "source")])
def test_an_attribute_longer_than_amqp_carries_is_a_wrong_option(eda, broker, payment_queue, option, attribute):
    code, output = eda.run("publish", "order-placed", "--data", json.dumps(valid_order()), option, "é" * 150)
    assert code == 2
    line = one_error_line(output)
    assert line.startswith(f"error: {option}: ") and "300 bytes" in line and "255" in line
    assert broker.depth(payment_queue) == 0


@pytest.mark.parametrize("args, message", [
    (["publish", "order-placed", "--file", "/no/such/file.jsonl"], "No such file or directory"),
    (["publish", "order-placed", "--data", "{}", "--bogus"], "No such option"),
    (["publish"], "Missing argument 'EVENT'"),
    (["dlq", "show", "payment", "--limit", "0"], "--limit"),
    (["tail", "--timeout", "-1"], "--timeout"),
])
def test_a_usage_error_is_one_line_exit_2(eda, args, message):
    code, output = eda.run(*args)
    assert code == 2
    assert message in one_error_line(output)


@pytest.mark.parametrize("variable, value, message", [
    ("EDA_PREFETCH", "70000", "--prefetch (EDA_PREFETCH): must be at most 65535"),
    ("EDA_HEARTBEAT", "65536", "--heartbeat (EDA_HEARTBEAT): must be at most 65535"),
    ("EDA_CONCURRENCY", "100000", "--concurrency (EDA_CONCURRENCY): must be at most"),
    ("EDA_SHUTDOWN_TIMEOUT", "nan", "--shutdown-timeout (EDA_SHUTDOWN_TIMEOUT): must be a finite number"),
    ("EDA_RETRY_DELAYS", "1s,100000h", "--retry-delays (EDA_RETRY_DELAYS)"),
    ("EDA_NAMESPACE", "n" * 255, "--namespace (EDA_NAMESPACE): 255 characters is too long"),
    ("EDA_NAMESPACE", "amq.shop", "reserved"),
])
def test_a_setting_the_wire_cannot_carry_stops_a_worker_at_start(eda, variable, value, message):
    code, output = eda.run("worker", "shipping", **{variable: value})
    assert code == 2
    assert message in one_error_line(output)


@pytest.mark.parametrize("command", [["topology", "declare"], ["publish", "order-placed", "--data", "{}"]])
def test_a_namespace_too_long_for_queue_names_is_one_line(eda, command):
    code, output = eda.run(*command, EDA_NAMESPACE="n" * 250)
    assert code == 2
    assert "--namespace (EDA_NAMESPACE)" in one_error_line(output)


@pytest.mark.parametrize("command", [["worker", "shipping"],
                                     ["publish", "order-placed", "--data", json.dumps(valid_order())], ["status"]])
def test_an_unknown_virtual_host_is_a_config_error_at_once(eda, broker_url, command):
    url = urlunsplit(urlsplit(broker_url)._replace(path="/no-such-vhost"))
    started = time.monotonic()
    code, output = eda.run(*command, EDA_BROKER_URL=url, timeout=30)
    assert code == 2
    assert "refused virtual host 'no-such-vhost'" in one_error_line(output)
    assert time.monotonic() - started < 20  # no reconnect loop (its window is 60 s)


@pytest.mark.parametrize("url", ["amqp://guest:SECRETPW#x@127.0.0.1:5672//",
                                 "amqp://guest:SECRETPW?@127.0.0.1:5672//",
                                 "amqp://guest:SECRET/PW@127.0.0.1:5672//",
                                 "amqp://guest:1234/SECRETPW@127.0.0.1:5672//",
                                 "amqp://guest:SECRET;PW@127.0.0.1:5672//"])
@pytest.mark.parametrize("command", [["worker", "shipping"],
                                     ["publish", "order-placed", "--data", json.dumps(valid_order())]])
def test_an_unparseable_broker_url_is_reported_without_the_password(eda, url, command):
    code, output = eda.run(*command, EDA_BROKER_URL=url, timeout=30)
    assert code == 2
    line = one_error_line(output)
    assert "--broker-url (EDA_BROKER_URL)" in line and "percent-encode" in line
    assert "SECRET" not in output and "PW" not in output and "127.0.0.1" not in output


def test_a_large_file_with_a_bad_last_line_is_refused_in_bounded_memory(env, broker, payment_queue, tmp_path):
    # Given about 8 MB of valid orders, then one invalid line
    path = tmp_path / "orders.jsonl"
    line = json.dumps(valid_order(items=[{"sku": f"SKU-{k}", "quantity": 1, "unitPrice": "10.00"}
                                         for k in range(5)])) + "\n"
    with path.open("w") as out:
        out.write(line * (8_000_000 // len(line)))
        out.write('{"orderId": "bad"}\n')
    # When it is published (in a process of its own, to read its peak memory)
    probe = ("import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, code)")
    done = subprocess.run([sys.executable, "-c", probe, *eda_command(), "publish", "order-placed", "--file",
                           str(path)], env=env, capture_output=True, text=True, timeout=600)
    peak_kb, code = map(int, done.stdout.split()[-2:])
    # Then nothing is published, the bad line is named, and memory did not grow with the file
    assert code == 1 and "Traceback" not in done.stderr
    assert f"line {8_000_000 // len(line) + 1}: " in done.stderr
    assert broker.depth(payment_queue) == 0
    assert peak_kb < 60_000, f"peak RSS {peak_kb} KB"  # holding the events took about 90 MB
