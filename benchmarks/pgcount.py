"""Round trips to PostgreSQL, counted on the wire: a TCP proxy that counts the server's ReadyForQuery.

PostgreSQL ends the answer to every simple query, and to every extended-protocol Sync, with one
ReadyForQuery message ('Z'): each is one round trip a client waited for (BEGIN, a statement, COMMIT,
a pool's connection check, the start-up of a connection). The proxy reads the server's messages by
their type and length as it forwards them and counts those; it sees what any client sends, so
nothing in eda is instrumented. Connections through it must not negotiate TLS (``sslmode=disable``).
"""

import socket
import threading
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit


class RoundTrips:
    """A counting TCP proxy in front of ``host:port``; ``url(u)`` is ``u`` pointed at it."""

    def __init__(self, host: str = "127.0.0.1", port: int = 5432):
        self.target = (host, port)
        self.count = 0
        self._lock = threading.Lock()
        self._sockets = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        threading.Thread(target=self._accept, name="pg-round-trips", daemon=True).start()

    @classmethod
    def before(cls, url: str) -> "RoundTrips":
        parts = urlsplit(url)
        return cls(parts.hostname or "127.0.0.1", parts.port or 5432)

    def url(self, url: str) -> str:
        """``url`` through the proxy, TLS off (the proxy reads the messages)."""
        parts = urlsplit(url)
        userinfo = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
        query = dict(parse_qsl(parts.query))
        query["sslmode"] = "disable"
        return urlunsplit(parts._replace(netloc=f"{userinfo}127.0.0.1:{self.port}", query=urlencode(query)))

    def reset(self) -> int:
        """The count so far, and start again from zero."""
        with self._lock:
            count, self.count = self.count, 0
        return count

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._sockets += [client, upstream]
            threading.Thread(target=self._forward, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._count_and_forward, args=(upstream, client), daemon=True).start()

    @staticmethod
    def _forward(src, dst) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        _close(src, dst)

    def _count_and_forward(self, src, dst) -> None:
        """Forward the server's bytes, counting its ReadyForQuery messages (type byte, then a length
        that counts itself) before passing them on."""
        buffer = b""
        try:
            while data := src.recv(65536):
                buffer += data
                ready, at = 0, 0
                while len(buffer) - at >= 5:
                    length = int.from_bytes(buffer[at + 1:at + 5], "big")
                    if len(buffer) - at < 1 + length:
                        break
                    if buffer[at:at + 1] == b"Z":
                        ready += 1
                    at += 1 + length
                buffer = buffer[at:]
                if ready:  # counted before the client can see the answer: its next read finds it counted
                    with self._lock:
                        self.count += ready
                dst.sendall(data)
        except OSError:
            pass
        _close(src, dst)

    def close(self) -> None:
        try:
            self._server.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._server.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for s in sockets:
            _close(s)


def _close(*sockets) -> None:
    for s in sockets:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()
