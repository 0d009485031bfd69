"""The store's SQL as psycopg reads it, and the schema a namespace gets: pure functions of eda.store."""

import pytest

from eda.settings import Settings
from eda.store import describe, schema_name
from eda.store.postgres import to_psycopg


def test_placeholders_become_psycopg_ones_outside_quotes():
    assert to_psycopg("UPDATE stock SET quantity = quantity - ? WHERE sku = ? AND quantity >= ?") == \
        "UPDATE stock SET quantity = quantity - %s WHERE sku = %s AND quantity >= %s"
    # a literal percent sign is escaped; quoted text (literals and identifiers) is left as it is
    assert to_psycopg("SELECT 'a?%', \"odd?col\", x % 2 FROM t WHERE y LIKE 'it''s?' AND z = ?") == \
        "SELECT 'a?%', \"odd?col\", x %% 2 FROM t WHERE y LIKE 'it''s?' AND z = %s"


def test_a_namespace_is_its_own_schema_and_a_long_one_stays_distinct():
    assert schema_name("shop") == "shop"
    first, second = "n" * 70 + "-a", "n" * 70 + "-b"
    assert len(schema_name(first).encode()) <= 63 and schema_name(first) != schema_name(second)


def test_describe_names_the_database_never_the_password(tmp_path):
    sqlite = describe(Settings(state_dir=tmp_path, namespace="shop"))
    assert sqlite == {"backend": "sqlite", "location": str(tmp_path)}
    pg = describe(Settings(namespace="shop", database_url="postgresql://eda:s3cret@db.internal:6432/state"))
    assert pg == {"backend": "postgresql", "location": "db.internal:6432/state", "schema": "shop"}
    assert "s3cret" not in str(Settings(database_url="postgresql://eda:s3cret@db/x").safe_database_url)


@pytest.mark.parametrize("message, transient", [
    ('connection failed: connection to server at "db", port 5432 failed: Connection refused', True),
    ('connection failed: connection to server at "db", port 5432 failed: timeout expired', True),
    ("connection failed: server closed the connection unexpectedly", True),
    ('connection failed: connection to server at "db", port 5432 failed: FATAL:  the database system is starting up',
     True),
    ('connection failed: ... failed: FATAL:  sorry, too many clients already', True),
    ('connection failed: ... failed: FATAL:  password authentication failed for user "eda"', False),
    ('connection failed: ... failed: FATAL:  role "eda" does not exist', False),
    ('connection failed: ... failed: FATAL:  database "shop" does not exist', False),
    ("failed to resolve host 'db': [Errno -3] Temporary failure in name resolution", True),  # compose: not up yet
    ('connection is bad: connection to server on socket "/run/postgresql/.s.PGSQL.5432" failed: No such file or '
     'directory', True),
    ('connection is bad: invalid sslmode value: "bogus"', False),
    ('connection failed: ... failed: server does not support SSL, but SSL was required', False),
    ('invalid integer value "notaport" for connection option "port"', False),
    ("connection failed: fe_sendauth: no password supplied", False),
])
def test_a_database_that_did_not_answer_or_is_not_ready_is_waited_for_one_that_refused_is_not(message, transient):
    import psycopg

    from eda.store.postgres import unreachable

    assert unreachable(psycopg.OperationalError(message)) is transient
