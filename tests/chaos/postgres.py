"""The chaos run's PostgreSQL: a private cluster in its host's namespace, where every worker keeps state.

initdb and pg_ctl run as the ``postgres`` OS user (initdb refuses root) in the run's folder; the server
listens on its host's address, port 5432 (the namespace's own: the machine's PostgreSQL is not touched),
and trusts the run's subnet. ``fsync`` is off: the run never crashes PostgreSQL, it cuts the network
between it and the workers.
"""

import os
import pwd
import subprocess
from pathlib import Path

from tests.chaos.network import SUBNET, Host

BIN = Path(os.environ.get("EDA_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
PORT = 5432


class PostgresError(Exception):
    """initdb or pg_ctl failed (the message has the tool's output)."""


class Postgres:
    def __init__(self, host: Host, folder: Path):
        self.host = host
        self.folder = folder
        self.data = folder / "data"
        self.url = f"postgresql://postgres@{host.address}:{PORT}/postgres"
        self._owner = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
        self._started = False

    def _run(self, *argv: str, timeout: float = 120) -> None:
        command = [*self.host.exec_prefix()]
        if self._owner:
            command += ["runuser", "-u", self._owner.pw_name, "--"]
        command += list(argv)
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "LC_ALL": "C", "LANG": "C"})
        if done.returncode != 0:
            raise PostgresError(f"{Path(argv[0]).name} exited {done.returncode}: {(done.stdout + done.stderr).strip()}")

    def start(self) -> None:
        missing = [t for t in ("initdb", "pg_ctl", "postgres") if not (BIN / t).exists()]
        if missing:
            raise PostgresError(f"PostgreSQL 15 binaries missing in {BIN}: {', '.join(missing)}")
        self.folder.mkdir(parents=True, exist_ok=True)
        if self._owner:
            os.chown(self.folder, self._owner.pw_uid, self._owner.pw_gid)
        self._run(str(BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "--locale=C",
                  "--encoding=UTF8", "--no-sync", "--no-instructions")
        with open(self.data / "pg_hba.conf", "a") as hba:
            hba.write(f"host all all {SUBNET}.0/24 trust\n")
        options = (f"-c listen_addresses={self.host.address} -p {PORT} -k {self.folder} -c fsync=off "
                   f"-c max_connections=200 -c shared_buffers=32MB")
        self._started = True
        self._run(str(BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.folder / "server.log"), "-w", "-t", "60",
                  "-o", options, "start")

    def stop(self) -> None:
        if self._started:
            try:
                self._run(str(BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "-t", "30", "stop")
            except (PostgresError, subprocess.TimeoutExpired):
                pass  # whatever still runs in the namespace is killed when the network is taken down
            self._started = False
