"""A private PostgreSQL 15 cluster for one test module: password authentication (scram-sha-256), which
the shared server (trust auth, any password accepted) cannot test.

``cluster()`` runs initdb and pg_ctl from /usr/lib/postgresql/15/bin (as the ``postgres`` OS user when
run as root: initdb refuses root) in a fresh temporary folder, listening on 127.0.0.1 only on a free
port with its unix sockets in that folder; on the way out it stops the server (``-m immediate``) and
removes the folder, whatever happened. Missing binaries are an error, never a skip.

The ``private_postgres`` fixture (module-scoped) is that cluster for a test module that imports it.
"""

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import typing
from pathlib import Path

import pytest

BIN = Path(os.environ.get("EDA_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
SUPERUSER = "postgres"
PASSWORD = "right-password"


class Cluster(typing.NamedTuple):
    port: int
    password: str

    def url(self, password: str | None = None, database: str = "postgres") -> str:
        """The cluster's URL as ``SUPERUSER`` with ``password`` (the right one by default)."""
        return f"postgresql://{SUPERUSER}:{password or self.password}@127.0.0.1:{self.port}/{database}"


class ClusterError(Exception):
    """The private cluster could not be set up (its message says why, with the tool's output)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(command: list[str], owner: pwd.struct_passwd | None, timeout: float = 60) -> None:
    """Run a PostgreSQL tool (as ``owner`` when given); raise ClusterError with its output on failure."""
    argv = ["runuser", "-u", owner.pw_name, "--", *command] if owner else command
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    try:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ClusterError(f"{Path(command[0]).name} failed: {exc}") from None
    if done.returncode != 0:
        raise ClusterError(f"{Path(command[0]).name} exited {done.returncode}: {(done.stdout + done.stderr).strip()}")


def _kill_postmaster(data: Path) -> None:
    """Last resort when pg_ctl stop failed: SIGKILL the postmaster this cluster's pid file names."""
    try:
        pid = int((data / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGKILL)
    except (OSError, ValueError, IndexError):
        pass


@contextlib.contextmanager
def cluster(password: str = PASSWORD) -> typing.Iterator[Cluster]:
    missing = [tool for tool in ("initdb", "pg_ctl", "postgres") if not (BIN / tool).exists()]
    if missing:
        raise ClusterError(f"PostgreSQL 15 binaries missing in {BIN} ({', '.join(missing)}): install "
                           f"postgresql-15 or set EDA_TEST_PG_BIN")
    owner = None
    if os.geteuid() == 0:  # initdb refuses to run as root
        try:
            owner = pwd.getpwnam(SUPERUSER)
        except KeyError:
            raise ClusterError(f"running as root, and no {SUPERUSER!r} OS user to run initdb as") from None
    folder = Path(tempfile.mkdtemp(prefix="eda-pg-"))
    data = folder / "data"
    started = False
    try:
        if owner:
            os.chown(folder, owner.pw_uid, owner.pw_gid)
        pwfile = folder / "pwfile"
        pwfile.write_text(password + "\n")
        pwfile.chmod(0o600)
        if owner:
            os.chown(pwfile, owner.pw_uid, owner.pw_gid)
        _run([str(BIN / "initdb"), "-D", str(data), "-U", SUPERUSER, f"--pwfile={pwfile}",
              "--auth=scram-sha-256", "--locale=C", "--encoding=UTF8", "--no-sync", "--no-instructions"], owner)
        for attempt in range(3):  # another process may take the free port between the look and the start
            port = _free_port()
            options = (f"-c listen_addresses=127.0.0.1 -p {port} -k {folder} -c fsync=off "
                       f"-c max_connections=50 -c shared_buffers=16MB")
            try:
                started = True  # from here on, stop it on the way out, even if pg_ctl did not wait it up
                _run([str(BIN / "pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"), "-w", "-t", "30",
                      "-o", options, "start"], owner)
                break
            except ClusterError:
                _stop(data, owner)
                started = False
                if attempt == 2:
                    log = folder / "server.log"
                    raise ClusterError(f"pg_ctl start failed: {log.read_text()[-2000:] if log.exists() else ''}")
        yield Cluster(port, password)
    finally:
        if started:
            _stop(data, owner)
        shutil.rmtree(folder, ignore_errors=True)


def _stop(data: Path, owner) -> None:
    try:
        _run([str(BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "-t", "30", "stop"], owner)
    except ClusterError:
        _kill_postmaster(data)


@pytest.fixture(scope="module")
def private_postgres() -> typing.Iterator[Cluster]:
    """A private PostgreSQL cluster with password authentication (``Cluster``), for this module's tests."""
    with contextlib.ExitStack() as stack:  # stops the cluster and removes its folder, always
        try:
            running = stack.enter_context(cluster())
        except ClusterError as exc:
            problem = str(exc)
        else:
            problem = None
        if problem:  # out of the except block: the failure reads as one message, not a chain
            pytest.fail(f"cannot start a private PostgreSQL cluster: {problem}", pytrace=False)
        yield running
