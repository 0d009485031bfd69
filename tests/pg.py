"""A PostgreSQL of the tests' own: a fresh database per test, dropped afterwards.

The server is EDA_TEST_DATABASE_URL where set (a URL whose user may create databases), else the one on
127.0.0.1:5432 (user postgres). EDA_TEST_STATE=postgresql runs every `eda` process of the suite with
its state there (EDA_DATABASE_URL); unset, state stays in SQLite.
"""

import os
import uuid
from urllib.parse import urlsplit, urlunsplit

ADMIN_URL = os.environ.get("EDA_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def state_backend() -> str:
    return os.environ.get("EDA_TEST_STATE", "sqlite").lower()


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def create_database() -> tuple[str, str]:
    """A new empty database: (its name, its URL)."""
    import psycopg

    name = f"eda_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name, with_database(ADMIN_URL, name)


def drop_database(name: str) -> None:
    import psycopg

    with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def terminate_connections(name: str, application_prefix: str = "eda-") -> int:
    """Kill every connection of eda's to database ``name`` (as a DBA or a failover would): how many."""
    import psycopg

    with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        rows = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                            "AND application_name LIKE %s", (name, application_prefix + "%")).fetchall()
    return len(rows)


def query(url: str, sql: str, params=()) -> list[tuple]:
    import psycopg

    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        return conn.execute(sql, params).fetchall()


class Outage:
    """A TCP relay to the test PostgreSQL that the test can take down and bring back, so that a worker
    loses its database as it would in a real outage (refused connections, cut sessions) while the shared
    server keeps running for everyone else."""

    def __init__(self, target=("127.0.0.1", 5432)):
        import socket

        self._socket = socket
        self.target = target
        self.port = None
        self._listener = None
        self._sockets = []
        self._lock = __import__("threading").Lock()
        self.up()

    def url(self, database_url: str) -> str:
        """``database_url`` through this relay."""
        parts = urlsplit(database_url)
        return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[0] + f"@127.0.0.1:{self.port}"
                                         if "@" in parts.netloc else f"127.0.0.1:{self.port}"))

    def up(self) -> None:
        import threading

        listener = self._socket.socket()
        listener.setsockopt(self._socket.SOL_SOCKET, self._socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port or 0))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        """Refuse new connections and cut the open ones."""
        listener, self._listener = self._listener, None
        try:
            listener.shutdown(self._socket.SHUT_RDWR)  # wakes the accepting thread (close alone does not)
        except OSError:
            pass
        listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for s in sockets:
            try:
                s.shutdown(self._socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _accept(self, listener) -> None:
        import threading

        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed: down
            try:
                server = self._socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source, sink) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.close()
                except OSError:
                    pass
