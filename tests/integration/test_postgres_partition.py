"""A worker's store cut off from PostgreSQL by a silent partition (packets dropped, nothing refused) fails
its queries in seconds as StoreUnavailable (a transient failure: retried), instead of hanging for TCP's
retransmissions: minutes during the cut and up to two more after the heal, holding the event meanwhile.
Found by the chaos run (tests/chaos). After the heal the store works again.

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
# The application side: a PostgresStore; each line on stdin asks for one read, each answer is one line.
PROBE = """
import sys, time
from eda.errors import StoreUnavailable
from eda.store.postgres import PostgresStore
store = PostgresStore(sys.argv[1], "partition-test", "probe", pool_size=1)
store.read("SELECT 1")
print("ready", flush=True)
for _ in sys.stdin:
    started = time.monotonic()
    try:
        store.read("SELECT 1")
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
        if line.split(" ", 1)[0] in ("ready", "ok", "unavailable"):
            return line


@pytest.fixture
def hosts():
    if os.geteuid() != 0 or not shutil.which("ip"):
        if in_ci():
            pytest.fail("this test needs root and iproute2 (network namespaces)")
        pytest.skip("needs root and iproute2 (network namespaces)")
    from tests.chaos.network import Network
    from tests.chaos.postgres import Postgres

    net = Network(["pg", "app"])
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


def test_a_silent_partition_from_postgres_fails_reads_in_seconds_and_they_work_after_the_heal(hosts):
    net, postgres = hosts
    probe = subprocess.Popen([*net["app"].exec_prefix(), sys.executable, "-c", PROBE, postgres.url],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert answer(probe, 60) == "ready"
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
