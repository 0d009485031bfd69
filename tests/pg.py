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
