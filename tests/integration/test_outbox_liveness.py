"""The outbox relay's PostgreSQL connections notice a silent database as the store's do (TCP liveness),
and end a transaction their client left silent, so that rows a relay claimed are not held locked for
hours by a relay cut off from the database (see tests/integration/test_postgres_partition.py for the
store's, under a real cut)."""

import pytest

from eda.outbox.outbox import Outbox
from eda.outbox.sessions import PostgresSession
from eda.settings import Settings

pytestmark = pytest.mark.integration


def test_the_relays_connections_limit_silent_transactions_and_probe_the_peer(database, tmp_path):
    outbox = Outbox(Settings(database_url=database, state_dir=tmp_path, namespace="liveness"))
    session = PostgresSession(outbox)
    try:
        for conn in (session.conn, session.listener):
            assert "tcp_user_timeout=10000" in conn.info.dsn and "keepalives_idle=10" in conn.info.dsn
            [(timeout,)] = conn.execute("SHOW idle_in_transaction_session_timeout").fetchall()
            assert timeout == "30s"
    finally:
        session.close()


def test_a_url_that_sets_its_own_values_keeps_them(database, tmp_path):
    url = database + ("&" if "?" in database else "?") + "tcp_user_timeout=2500&options=-c%20idle_in_transaction_session_timeout%3D5s"
    session = PostgresSession(Outbox(Settings(database_url=url, state_dir=tmp_path, namespace="liveness")))
    try:
        assert "tcp_user_timeout=2500" in session.conn.info.dsn
        [(timeout,)] = session.conn.execute("SHOW idle_in_transaction_session_timeout").fetchall()
        assert timeout == "5s"
    finally:
        session.close()
