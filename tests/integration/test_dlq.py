"""`eda dlq`: dead events listed with their depth, shown with their reason and left in place, replayed to
their worker once the cause is fixed (processed once), and purged only when confirmed."""

import json
import os
import pty
import subprocess
import threading

import pytest

from tests.support import eda_command, handled, wait_until

pytestmark = pytest.mark.integration

DEAD = "dead-lettered"


def lines_with(output: str, text: str) -> list[str]:
    return [line for line in output.splitlines() if text in line]


def test_a_poison_event_is_listed_shown_in_place_and_purged_only_with_yes(eda, broker, namespace):
    # Given a payment worker and a body that is not an event, published by another client
    worker = eda.worker("payment")
    dlq = f"{namespace}.payment.dlq"
    broker.publish("order.placed", b"{not json", message_id="poison-1", correlation_id="corr-poison")
    wait_until(lambda: broker.depth(dlq) == 1, message="the poison event in the DLQ")
    worker.wait_for_log(lambda r: str(r.get("message", "")).startswith(DEAD))

    # When the DLQs are listed, then payment's shows one event and a DLQ never declared says so
    code, output = eda.run("dlq", "list")
    assert code == 0, output
    [row] = lines_with(output, dlq)
    assert row.split()[:3] == ["payment", dlq, "1"]
    [row] = lines_with(output, f"{namespace}.shipping.dlq")
    assert row.endswith("not declared")
    code, output = eda.run("dlq", "list", "--json")
    assert code == 0, output
    rows = {r["worker"]: r for r in map(json.loads, output.splitlines())}
    assert rows["payment"]["depth"] == 1

    # When it is shown, then the reason is printed and the event stays where it is
    code, output = eda.run("dlq", "show", "payment")
    assert code == 0, output
    assert lines_with(output, "poison-1")[0].startswith("poison-1  ")
    assert lines_with(output, "ContractError")[0].startswith("    [contract] ContractError: body is not UTF-8 JSON")
    code, output = eda.run("dlq", "show", "payment", "--json")
    [shown] = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert shown["id"] == "poison-1" and shown["exception_type"] == "ContractError"
    assert shown["category"] == "contract"
    assert shown["correlation_id"] == "corr-poison" and shown["retry_count"] == 0
    assert shown["failed_at"] and shown["body"] == "{not json"
    assert broker.depth(dlq) == 1

    # When a purge is not confirmed, then it refuses in one line and deletes nothing
    code, output = eda.run("dlq", "purge", "payment")
    assert code == 2 and output.startswith("error: ") and "--yes" in output and len(output.splitlines()) == 1
    assert broker.depth(dlq) == 1
    # and with --yes the DLQ is emptied
    code, output = eda.run("dlq", "purge", "payment", "--yes")
    assert code == 0 and "purged 1 event " in output, output
    assert broker.depth(dlq) == 0


def test_replay_after_the_gateway_is_back_processes_each_event_once(eda, broker, gateway, namespace, make_order):
    # Given orders that died while the gateway was down (no retries configured)
    gateway.simulation.down = True
    worker_env = dict(EDA_PAYMENT_GATEWAY_URL=gateway.url, EDA_PAYMENT_BREAKER_FAIL_MAX=100, EDA_RETRY_DELAYS="")
    worker = eda.worker("payment", **worker_env)
    spy = broker.spy("payment.*")
    dlq, work = f"{namespace}.payment.dlq", f"{namespace}.payment"
    first, second = eda.publish("order-placed", make_order(), make_order(), args=("--correlation-id", "corr-r"))
    wait_until(lambda: broker.depth(dlq) == 2, message="both orders in the DLQ")
    [dead_first] = [m for m in broker.peek(dlq) if m.properties["message_id"] == first]
    assert dead_first.headers["eda-exception-type"] == "GatewayError"
    worker.send()
    assert worker.wait() == 0

    # When a replay is only tried, then it names what it would move and moves nothing
    code, output = eda.run("dlq", "replay", "payment", "--dry-run")
    assert code == 0 and "would replay 2 events" in output, output
    assert {first, second} <= {line.split()[0] for line in output.splitlines() if line.strip()}
    assert broker.depth(dlq) == 2 and broker.depth(work) == 0

    # When one event is replayed by id
    code, output = eda.run("dlq", "replay", "payment", "--id", first)
    assert code == 0 and "replayed 1 event " in output, output
    # Then it alone is back in the worker's queue: failure record gone, attempts reset, properties kept
    [copy] = broker.peek(work)
    assert copy.properties["message_id"] == first and copy.body == dead_first.body
    for prop in ("correlation_id", "type", "content_type", "app_id", "timestamp"):
        assert copy.properties[prop] == dead_first.properties[prop], prop
    assert copy.properties["correlation_id"] == "corr-r"
    # only where it was first published stays: the worker checks the event's type against it
    assert {h for h in copy.headers if h.startswith("eda-")} == {"eda-original-exchange", "eda-original-routing-key"}
    assert copy.headers["eda-original-routing-key"] == "order.placed"
    assert [m.properties["message_id"] for m in broker.peek(dlq)] == [second]

    # When the gateway is back and the worker runs again
    gateway.simulation.down = False
    worker = eda.worker("payment", **worker_env)
    # Then the replayed order is charged exactly once
    [paid] = spy.wait_for("payment.succeeded")
    assert paid["causationid"] == first
    worker.wait_for_log(lambda r: handled("order.placed")(r) and r.get("event_id") == first)
    assert gateway.simulation.charges == 1

    # And replaying the rest moves the other one, charged once too, leaving the DLQ empty
    code, output = eda.run("dlq", "replay", "payment")
    assert code == 0 and "replayed 1 event " in output, output
    paid = spy.wait_for("payment.succeeded", count=2)
    assert sorted(p["causationid"] for p in paid) == sorted([first, second])
    worker.wait_for_log(lambda r: handled("order.placed")(r) and r.get("event_id") == second)
    assert gateway.simulation.charges == 2
    assert broker.depth(dlq) == 0
    assert not any(str(r.get("message", "")).startswith(DEAD) for r in worker.records)


def test_replay_of_an_id_not_in_the_dlq_or_an_unknown_worker_fails_in_one_line(eda, broker, namespace):
    code, output = eda.run("dlq", "show", "nobody")
    assert code == 2 and output == "error: unknown worker 'nobody'; known workers: inventory, ledger, order-saga, payment, shipping"
    code, output = eda.run("dlq", "replay", "payment")
    assert code != 0 and output.startswith("error: ") and f"{namespace}.payment.dlq" in output
    eda.run("topology", "declare")
    code, output = eda.run("dlq", "replay", "payment", "--id", "no-such-event")
    assert code != 0 and output == f"error: no event with id 'no-such-event' in '{namespace}.payment.dlq'"


def run_on_terminal(env, *args) -> tuple[int, str, str]:
    """Run `eda ARGS` with stderr on a pseudo-terminal (as in a shell); returns (code, stdout, stderr)."""
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(eda_command() + list(args), env=env, stdout=subprocess.PIPE, stderr=secondary)
    os.close(secondary)
    chunks = []
    reader = threading.Thread(target=lambda: _read_all(primary, chunks), daemon=True)
    reader.start()
    stdout, _ = proc.communicate(timeout=60)
    reader.join(10)
    os.close(primary)
    return proc.returncode, stdout.decode(), b"".join(chunks).decode(errors="replace")


def _read_all(fd, chunks) -> None:
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:  # EIO: the process closed the terminal
            return
        if not data:
            return
        chunks.append(data)


def test_a_large_replay_moves_every_event_with_a_progress_bar_only_on_a_terminal(eda, broker, env, namespace):
    # Given 250 dead events and their worker stopped
    worker = eda.worker("payment")
    dlq, work = f"{namespace}.payment.dlq", f"{namespace}.payment"
    for i in range(250):
        broker.publish("order.placed", b"{bad", message_id=f"bad-{i}")
    wait_until(lambda: broker.depth(dlq) == 250, message="250 events in the DLQ")
    worker.send()
    assert worker.wait() == 0
    dead_ids = [m.properties["message_id"] for m in broker.peek(dlq)]
    assert sorted(dead_ids) == sorted(f"bad-{i}" for i in range(250))
    # When 120 are replayed with output to a pipe, then only the count is printed
    code, output = eda.run("dlq", "replay", "payment", "--limit", "120")
    assert (code, output) == (0, "replayed 120 events to worker payment")
    # When the rest are replayed on a terminal, then a progress bar shows on stderr
    code, stdout, stderr = run_on_terminal(env, "dlq", "replay", "payment")
    assert (code, stdout) == (0, "replayed 130 events to worker payment\n"), stderr
    assert "replaying" in stderr and "100%" in stderr
    # and every event moved, in the DLQ's order, none left behind
    assert broker.depth(dlq) == 0
    assert [m.properties["message_id"] for m in broker.peek(work)] == dead_ids
