"""The store's SQL as psycopg reads it, and the schema a namespace gets: pure functions of eda.store."""

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
