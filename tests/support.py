"""Test helpers: `eda` CLI processes with their log lines, and a look into the broker with plain kombu."""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import typing
import uuid
from pathlib import Path

import kombu
import pika
from amqp.basic_message import Message as AmqpMessage
from kombu import Exchange, Queue


def eda_command() -> list[str]:
    """The installed `eda` console script of this interpreter (what a user runs)."""
    script = Path(sys.executable).parent / "eda"
    return [str(script)] if script.exists() else [sys.executable, "-m", "cli"]


def wait_until(condition, timeout=15.0, interval=0.05, message="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


class EdaProcess:
    """A running `eda ...` process; its output is read line by line, JSON log lines parsed."""

    def __init__(self, args, env, cwd=None, command=None):
        self.args = args
        self.proc = subprocess.Popen((command or eda_command()) + list(args), env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, bufsize=1, cwd=cwd)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def records(self) -> list[dict]:
        out = []
        for line in list(self.lines):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                out.append(record)
        return out

    def wait_for_log(self, predicate, timeout=15.0, what="a log line"):
        def found():
            if self.proc.poll() is not None and not any(predicate(r) for r in self.records):
                raise AssertionError(f"eda {' '.join(self.args)} exited {self.proc.returncode} before {what}:\n"
                                     + self.output)
            return next((r for r in self.records if predicate(r)), None)

        return wait_until(found, timeout, message=what)

    def wait_ready(self, timeout=15.0):
        """Wait until every named worker logged that it is consuming."""
        names = [a for a in self.args[1:] if not a.startswith("-")]
        for name in names:
            self.wait_for_log(lambda r, n=name: r.get("message") == "consuming" and r.get("worker") == n,
                              timeout, what=f"worker {name} consuming")
        return self

    def count(self, predicate) -> int:
        return sum(1 for r in self.records if predicate(r))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def send(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)

    def wait(self, timeout=30.0) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(timeout=5)
        return code

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def handled(event_type=None, worker=None):
    """A predicate on log records: an event handled (and acked) by a worker."""
    return lambda r: (str(r.get("message", "")).startswith("handled")
                      and (event_type is None or r.get("event_type") == event_type)
                      and (worker is None or r.get("worker") == worker))


class Spy:
    """A temporary queue bound to the events exchange: what was really published on the wire."""

    def __init__(self, conn: kombu.Connection, namespace: str, pattern="#"):
        self.channel = conn.channel()
        exchange = Exchange(f"{namespace}.events", type="topic", durable=True)
        exchange.declare(channel=self.channel)
        self.queue = Queue(f"{namespace}.spy.{uuid.uuid4().hex[:6]}", exchange=exchange, routing_key=pattern,
                           exclusive=True, auto_delete=True, durable=False)
        self.queue(self.channel).declare()
        self.seen: list[kombu.Message] = []

    def _poll(self):
        while True:
            message = self.channel.basic_get(self.queue.name, no_ack=True)
            if message is None:
                return
            self.seen.append(message)

    @property
    def events(self) -> list[dict]:
        self._poll()
        return [json.loads(m.body) for m in self.seen]

    def of_type(self, event_type) -> list[dict]:
        return [e for e in self.events if e.get("type") == event_type]

    def wait_for(self, event_type, count=1, timeout=15.0, where=lambda e: True) -> list[dict]:
        return wait_until(lambda: (lambda found: found if len(found) >= count else None)(
            [e for e in self.of_type(event_type) if where(e)]), timeout, message=f"{count} × {event_type}")

    def message_of(self, event_id) -> kombu.Message:
        self._poll()
        return next(m for m in self.seen if m.properties.get("message_id") == event_id)


class Broker:
    """Plain kombu access to the test broker, to look at queues and publish as another client would."""

    def __init__(self, url: str, namespace: str):
        self.url = url
        self.namespace = namespace
        self.conn = kombu.Connection(url)
        self.conn.connect()
        self.channel = self.conn.channel()

    def depth(self, queue: str) -> int:
        return self.channel.queue_declare(queue, passive=True).message_count

    def exists(self, queue: str) -> bool:
        try:
            with self.conn.channel() as ch:
                ch.queue_declare(queue, passive=True)
            return True
        except self.conn.channel_errors:
            return False

    def peek(self, queue: str) -> list:
        """Every message in ``queue``, left in place (taken unacked, then given back)."""
        with self.conn.channel() as ch:
            messages = []
            while (m := ch.basic_get(queue, no_ack=False)) is not None:
                messages.append(m)
        return messages  # closing the channel gives every message back

    def spy(self, pattern="#") -> Spy:
        return Spy(self.conn, self.namespace, pattern)

    def publish(self, routing_key: str, body, *, exchange=None, headers=None, **properties) -> None:
        """Publish as any other AMQP client would, confirmed and mandatory; a dict body is sent as JSON."""
        if isinstance(body, dict):
            body = json.dumps(body).encode()
        properties.setdefault("delivery_mode", 2)
        with self.conn.channel() as ch:
            ch.basic_publish_confirm(AmqpMessage(body, application_headers=headers or {}, **properties),
                                     exchange=f"{self.namespace}.events" if exchange is None else exchange,
                                     routing_key=routing_key, mandatory=True)

    def publish_all(self, messages, conn=None) -> None:
        """Publish ``(routing_key, body, headers, properties)`` tuples back to back on one channel of
        ``conn`` (default: this one), confirms pipelined; returns once the broker confirmed every one.
        ``properties`` may hold ``exchange`` (default: the events exchange; "" is the default exchange)."""
        conn = conn or self.conn
        with conn.channel() as ch:
            confirmed, nacked = [0], []
            ch.events["basic_ack"].add(lambda tag, multiple: confirmed.__setitem__(0, max(confirmed[0], tag)))
            ch.events["basic_nack"].add(lambda tag, multiple: nacked.append(tag))
            ch.confirm_select()
            sent = 0
            for routing_key, body, headers, properties in messages:
                properties = dict(properties)
                exchange = properties.pop("exchange", f"{self.namespace}.events")
                if isinstance(body, dict):
                    body = json.dumps(body).encode()
                properties.setdefault("delivery_mode", 2)
                ch.basic_publish(AmqpMessage(body, application_headers=headers or {}, **properties),
                                 exchange=exchange, routing_key=routing_key, mandatory=True)
                sent += 1
            deadline = time.monotonic() + 30
            while confirmed[0] < sent and not nacked:
                assert time.monotonic() < deadline, f"the broker confirmed {confirmed[0]} of {sent} messages"
                try:
                    conn.drain_events(timeout=1)
                except socket.timeout:
                    pass
            assert not nacked, f"the broker nacked messages {nacked}"

    def dead_letters(self, worker: str) -> list["Letter"]:
        """The messages in ``worker``'s dead-letter queue, left in place. Read with pika, whose decoder
        takes what py-amqp's refuses (a short string that is not UTF-8), under a raised recursion limit
        (header tables nested thousands deep): a hostile message's dead letter can be looked at."""
        return self.peek_any(f"{self.namespace}.{worker}.dlq")

    def peek_any(self, queue: str) -> list["Letter"]:
        """Every message in ``queue`` as a ``Letter``, left in place, however hostile its properties."""
        url = self.url if not self.url.endswith("//") else self.url[:-1] + "%2F"
        with recursion_limit(50_000):
            connection = pika.BlockingConnection(pika.URLParameters(url))
            try:
                channel = connection.channel()
                letters = []
                while True:
                    method, props, body = channel.basic_get(queue, auto_ack=False)
                    if method is None:
                        return letters
                    properties = {k: v for k, v in vars(props).items() if v is not None and k != "headers"}
                    letters.append(Letter(body, properties, props.headers or {}))
            finally:
                connection.close()  # gives every message back

    def close(self):
        self.conn.release()


class Letter(typing.NamedTuple):
    """A message as read off a queue: its body, AMQP properties (a dict) and headers."""
    body: bytes
    properties: dict
    headers: dict


def cloud_event(event_type: str, data: dict, **attributes) -> dict:
    """A valid CloudEvent body of ``event_type`` as any client would write it; ``attributes`` override
    or add envelope attributes (``id``, ``correlationid``...); one set to ``...`` is left out."""
    body = {"specversion": "1.0", "id": str(uuid.uuid4()), "source": "test-client", "type": event_type,
            "time": "2024-05-01T12:00:00Z", "datacontenttype": "application/json", "data": data, **attributes}
    return {k: v for k, v in body.items() if v is not ...}


def reservation(order_id=None) -> dict:
    """The data of an inventory.reserved event (what the shipping worker ships)."""
    return {"orderId": order_id or f"ord-{uuid.uuid4().hex[:8]}", "items": [{"sku": "SKU-1", "quantity": 1}]}


@contextlib.contextmanager
def recursion_limit(limit: int):
    """Raise this process's recursion limit for a while: py-amqp encodes and decodes header tables
    recursively, so a test that publishes or reads very deep headers needs a deeper stack."""
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(max(before, limit))
    try:
        yield
    finally:
        sys.setrecursionlimit(before)


def in_ci() -> bool:
    """Under CI (CI set to anything but empty, 0 or false) a missing prerequisite fails, never skips."""
    return os.environ.get("CI", "").lower() not in ("", "0", "false")


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def environment(**values) -> dict:
    env = dict(os.environ)
    env.update({k: str(v) for k, v in values.items()})
    return env


class Accounting:
    """Where every published event ended: processed, or in a DLQ with its reason. None may be missing.

    An event counts as processed when a reaction on the wire names it as its cause or, for events whose
    handling publishes nothing, when a worker logged it handled (the log line comes before the ack, so a
    reaction is the stronger proof and is required by default)."""

    def __init__(self, event_ids, *, spy: Spy, broker: Broker, dlqs=(), processes=(), reacts=True):
        self.event_ids = list(event_ids)
        self.spy, self.broker, self.dlqs, self.processes, self.reacts = spy, broker, dlqs, processes, reacts

    def processed(self) -> set:
        if self.reacts:
            return {e.get("causationid") for e in self.spy.events} & set(self.event_ids)
        logged = {r.get("event_id") for p in self.processes for r in p.records if handled()(r)}
        return logged & set(self.event_ids)

    def dead(self) -> set:
        ids = set()
        for queue in self.dlqs:
            ids |= {m.properties.get("message_id") for m in self.broker.peek(queue)}
        return ids & set(self.event_ids)

    def missing(self) -> set:
        return set(self.event_ids) - self.processed() - self.dead()

    def wait_all_accounted(self, timeout=30.0) -> None:
        """Wait until no event is missing; fail naming how many and which are not accounted for."""
        try:
            wait_until(lambda: not self.missing(), timeout, interval=0.2, message="every event accounted for")
        except AssertionError:
            missing = sorted(self.missing())
            raise AssertionError(f"{len(missing)} of {len(self.event_ids)} events neither processed nor "
                                 f"dead-lettered: {missing[:10]}") from None


def handled_lines(path) -> list[tuple[int, str, int]]:
    """(pid, key, step) of each line an ordered test app's handlers appended to ``path``, in order."""
    if not path.exists():
        return []
    return [(int(pid), key, int(step)) for pid, key, step in
            (line.split() for line in path.read_text().splitlines() if line.count(" ") == 2)]


@contextlib.contextmanager
def partitions_deleted(broker_url: str, namespace: str, worker: str, partitions: int = 16):
    """Around a test of an ordered test app's worker: its partitions and hash exchange deleted afterwards
    (the shared clean-up knows only the installed workers)."""
    try:
        yield
    finally:
        conn = kombu.Connection(broker_url)
        try:
            from eda.topology import Topology

            Topology(namespace).delete_ordered(conn.channel(), worker, partitions=partitions)
        finally:
            conn.release()
