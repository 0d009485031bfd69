"""How eda's PostgreSQL connections notice a silent peer and let go of locks: the store's and the
outbox relay's alike (found by the partition run, tests/chaos: without them a cut connection hung for
minutes and its row locks stayed held for hours).

- TCP liveness: data sent and not acknowledged for 10 s fails the query, and an idle connection is
  probed after 10 s, instead of TCP's retransmissions (~15 minutes). libpq parameters: a URL that sets
  one of them keeps its own.
- A transaction whose client went silent is ended by the server after 30 s, and its locks go, instead
  of waiting for the server's TCP keepalives (two hours by default); eda's transactions are a few
  statements, done in milliseconds. Unless the server, database, role or URL set a timeout of their own.
"""

TCP_LIVENESS = {"tcp_user_timeout": 10_000, "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
                "keepalives_count": 3}
IDLE_IN_TRANSACTION_TIMEOUT = "30s"


def tcp_options(params: dict) -> dict:
    """The TCP liveness parameters a connection gets, less those its URL (``params``) sets itself."""
    return {key: value for key, value in TCP_LIVENESS.items() if key not in params}


def limit_idle_transactions(conn) -> None:
    """End this connection's transactions whose client stays silent, unless a timeout is set already."""
    conn.execute("SELECT CASE WHEN current_setting('idle_in_transaction_session_timeout') IN ('0', '0ms') "
                 "THEN set_config('idle_in_transaction_session_timeout', %s, false) END",
                 (IDLE_IN_TRANSACTION_TIMEOUT,))
