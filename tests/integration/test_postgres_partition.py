"""A worker's store cut off from PostgreSQL by a silent partition (packets dropped, nothing refused) fails
its queries in seconds as StoreUnavailable (a transient failure: retried), instead of hanging for TCP's
retransmissions: minutes during the cut and up to two more after the heal, holding the event meanwhile.
Found by the chaos run (tests/chaos). After the heal the store works again. And a transaction cut off
midway does not hold its row locks until the server's TCP keepalives give up (two hours): PostgreSQL
ends it after 30 s idle (the store sets idle_in_transaction_session_timeout unless already set).

PostgreSQL and the store each run in a network namespace of their own (tests/chaos/network.py), as in
the chaos run; this needs root and iproute2: outside CI the test skips without them, under CI it fails.
"""

import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.support import in_ci

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
# The application side: a PostgresStore with a table of counters. Each line on stdin is a command:
# "read" (one read), "write" (one transaction updating counter 'k'), "hold" (a transaction that updates
# 'k' and waits for the next line before it commits); each answer is one line.
PROBE = """
import sys, time
from eda.errors import StoreUnavailable
from eda.store.postgres import PostgresStore
SCHEMA = "CREATE TABLE IF NOT EXISTS counters (k TEXT PRIMARY KEY, n BIGINT NOT NULL);"
store = PostgresStore(sys.argv[1], "partition-test", "probe", SCHEMA, pool_size=1)
with store.transaction() as tx:
    tx.execute("INSERT INTO counters VALUES ('k', 0) ON CONFLICT (k) DO NOTHING")
print("ready", flush=True)
for line in sys.stdin:
    started = time.monotonic()
    try:
        if line.strip() == "read":
            store.read("SELECT 1")
        else:
            with store.transaction() as tx:
                tx.execute("UPDATE counters SET n = n + 1 WHERE k = 'k'")
                if line.strip() == "hold":
                    print("holding", flush=True)
                    sys.stdin.readline()
        print(f"ok {time.monotonic() - started:.1f}", flush=True)
    except StoreUnavailable as exc:
        print(f"unavailable {time.monotonic() - started:.1f} {exc}", flush=True)
"""


def answer(probe: subprocess.Popen, timeout: float) -> str | None:
    """The probe's next answer line (its pool's warnings skipped), or None after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        ready, _, _ = select.select([probe.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            return None
        line = probe.stdout.readline().strip()
        if not line and probe.poll() is not None:
            return None
        if line.split(" ", 1)[0] in ("ready", "ok", "unavailable", "holding"):
            return line


@pytest.fixture
def hosts():
    if os.geteuid() != 0 or not shutil.which("ip"):
        if in_ci():
            pytest.fail("this test needs root and iproute2 (network namespaces)")
        pytest.skip("needs root and iproute2 (network namespaces)")
    from tests.chaos.network import Network
    from tests.chaos.postgres import Postgres

    net = Network(["pg", "app", "other"])
    folder = Path(tempfile.mkdtemp(prefix="eda-pg-partition-"))
    folder.chmod(0o755)  # PostgreSQL runs as the postgres user under it
    postgres = Postgres(net["pg"], folder / "pg")
    try:
        net.create()
        postgres.start()
        yield net, postgres
    finally:
        postgres.stop()
        net.destroy()
        shutil.rmtree(folder, ignore_errors=True)


def start_probe(host, postgres) -> subprocess.Popen:
    probe = subprocess.Popen([*host.exec_prefix(), sys.executable, "-c", PROBE, postgres.url],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert answer(probe, 60) == "ready"
    return probe


def ask(probe: subprocess.Popen, command: str, timeout: float) -> str | None:
    probe.stdin.write(command + "\n")
    probe.stdin.flush()
    return answer(probe, timeout)


def test_a_silent_partition_from_postgres_fails_reads_in_seconds_and_they_work_after_the_heal(hosts):
    net, postgres = hosts
    probe = start_probe(net["app"], postgres)
    try:
        # Given the store's pooled connection, when PostgreSQL's host drops every packet from it
        net.cut("app", "pg")
        probe.stdin.write("read\n")
        probe.stdin.flush()
        # Then the read fails as StoreUnavailable within seconds, not after TCP gives up
        during = answer(probe, 40)
        assert during is not None, "the read hangs on the partitioned connection"
        assert during.startswith("unavailable"), during
        assert float(during.split()[1]) < 30, during
        # And once healed, reads work again (a new connection, within the pool's reconnect time)
        net.heal("app", "pg")
        deadline = time.monotonic() + 60
        after = None
        while time.monotonic() < deadline:
            probe.stdin.write("read\n")
            probe.stdin.flush()
            after = answer(probe, 40)
            if after and after.startswith("ok"):
                break
            time.sleep(1)
        assert after and after.startswith("ok"), after
    finally:
        probe.kill()
        probe.wait(10)


def test_a_transaction_cut_off_midway_gives_its_locks_back_within_seconds(hosts):
    net, postgres = hosts
    holder, other = start_probe(net["app"], postgres), start_probe(net["other"], postgres)
    try:
        # Given an instance whose transaction holds a row lock (counter 'k' updated, not committed)
        assert ask(holder, "hold", 30) == "holding"
        # When it is cut off from PostgreSQL before it commits
        net.cut("app", "pg")
        # Then another instance's update of that row waits for PostgreSQL to end the orphaned
        # transaction (idle in transaction), not for the partition to heal
        written = ask(other, "write", 60)
        assert written is not None, "the other instance still waits for the cut-off transaction's lock"
        assert written.startswith("ok") and float(written.split()[1]) < 45, written
    finally:
        net.heal_all()
        for probe in (holder, other):
            probe.kill()
            probe.wait(10)


@pytest.mark.parametrize("url_options, expected", [
    ("", "30s"), ("?options=-c%20idle_in_transaction_session_timeout%3D5s", "5s")])
def test_the_store_ends_orphaned_transactions_after_30s_unless_told_otherwise(url_options, expected):
    from tests.pg import create_database, drop_database

    from eda.store.postgres import PostgresStore

    name, url = create_database()
    store = None
    try:
        store = PostgresStore(url + url_options, "partition-test", "probe")
        assert store.read("SHOW idle_in_transaction_session_timeout") == [(expected,)]
    finally:
        if store is not None:
            store.close()
        drop_database(name)
