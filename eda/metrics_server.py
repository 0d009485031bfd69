"""The HTTP server of ``/metrics``: prometheus_client's WSGI app served from one thread with a selector,
bounded in connections and request size (``eda.metrics`` starts it on ``--metrics-port``)."""

import io
import logging
import selectors
import socket
import threading
import time
from urllib.parse import unquote

log = logging.getLogger("eda.metrics")


class MetricsServer:
    """Serves prometheus_client's WSGI app (content negotiation, gzip, ``name[]`` filters) from one
    thread with a selector, so a connection costs a socket rather than a thread: a connection idle past
    IDLE_TIMEOUT is closed, and past MAX_CONNECTIONS the longest-open one makes room for the new one,
    so a scrape is answered however many idle or slow clients hold connections. One request per
    connection (``Connection: close``), as Prometheus is happy with."""

    MAX_CONNECTIONS = 64
    IDLE_TIMEOUT = 10.0
    MAX_REQUEST = 16 * 1024  # bytes of request line and headers

    def __init__(self, app, address: str, port: int):
        self.app = app
        family, _, _, _, sockaddr = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM,
                                                       flags=socket.AI_PASSIVE)[0]
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        try:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.socket.bind(sockaddr)
            self.socket.listen(128)
        except OSError:
            self.socket.close()
            raise
        self.socket.setblocking(False)
        self.server_address = self.socket.getsockname()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.socket, selectors.EVENT_READ, None)
        self._connections = {}  # socket -> _Connection, in the order they were accepted
        self._stopped = False
        self._thread = threading.Thread(target=self._serve, name="eda-metrics", daemon=True)

    def start(self) -> "MetricsServer":
        self._thread.start()
        return self

    def close(self) -> None:
        self._stopped = True
        self._thread.join(timeout=5)

    def _serve(self) -> None:
        try:
            while not self._stopped:
                for key, mask in self._selector.select(timeout=0.5):
                    if key.data is None:
                        self._accept()
                    else:
                        self._step(key.data, mask)
                now = time.monotonic()
                for conn in [c for c in self._connections.values() if c.deadline < now]:
                    self._close(conn)
        finally:
            for conn in list(self._connections.values()):
                self._close(conn)
            self._selector.close()
            self.socket.close()

    def _accept(self) -> None:
        while True:
            try:
                sock, peer = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of file descriptors, say: the next round tries again
                log.warning("metrics server cannot accept a connection: %s", exc)
                return
            if len(self._connections) >= self.MAX_CONNECTIONS:
                self._close(next(iter(self._connections.values())))  # the longest-open one
            sock.setblocking(False)
            conn = _Connection(sock, time.monotonic() + self.IDLE_TIMEOUT)
            self._connections[sock] = conn
            self._selector.register(sock, selectors.EVENT_READ, conn)

    def _step(self, conn, mask) -> None:
        try:
            if mask & selectors.EVENT_READ and not conn.out:
                data = conn.sock.recv(65536)
                if not data:
                    return self._close(conn)
                conn.inbox += data
                conn.deadline = time.monotonic() + self.IDLE_TIMEOUT
                if b"\r\n\r\n" in conn.inbox or len(conn.inbox) > self.MAX_REQUEST:
                    conn.out = self._respond(conn.inbox)
                    self._selector.modify(conn.sock, selectors.EVENT_WRITE, conn)
            elif mask & selectors.EVENT_WRITE:
                sent = conn.sock.send(conn.out)
                conn.out = conn.out[sent:]
                conn.deadline = time.monotonic() + self.IDLE_TIMEOUT
                if not conn.out:
                    self._close(conn)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self._close(conn)

    def _close(self, conn) -> None:
        self._connections.pop(conn.sock, None)
        try:
            self._selector.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()

    def _respond(self, request: bytes) -> bytes:
        head = request.split(b"\r\n\r\n", 1)[0]
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split()
        if len(request) > self.MAX_REQUEST and b"\r\n\r\n" not in request:
            return _response("431 Request Header Fields Too Large", [], b"")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return _response("400 Bad Request", [], b"")
        method, target, protocol = parts
        path, _, query = target.partition("?")
        environ = {"REQUEST_METHOD": method, "PATH_INFO": unquote(path), "QUERY_STRING": query,
                   "SERVER_NAME": str(self.server_address[0]), "SERVER_PORT": str(self.server_address[1]),
                   "SERVER_PROTOCOL": protocol, "SCRIPT_NAME": "", "wsgi.version": (1, 0),
                   "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(), "wsgi.errors": io.StringIO(),
                   "wsgi.multithread": False, "wsgi.multiprocess": False, "wsgi.run_once": False}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            key = name.strip().upper().replace("-", "_")
            if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                environ[key] = value.strip()
            elif key:
                environ[f"HTTP_{key}"] = value.strip()
        started = []
        try:
            body = b"".join(self.app(environ, lambda status, headers, exc_info=None: started.append((status, headers))))
        except Exception:
            log.exception("metrics server: collecting the metrics failed")
            return _response("500 Internal Server Error", [], b"")
        status, headers = started[0]
        return _response(status, headers, b"" if method == "HEAD" else body)


class _Connection:
    __slots__ = ("sock", "deadline", "inbox", "out")

    def __init__(self, sock, deadline):
        self.sock, self.deadline, self.inbox, self.out = sock, deadline, b"", b""


def _response(status: str, headers, body: bytes) -> bytes:
    headers = [(k, v) for k, v in headers if k.lower() not in ("content-length", "connection")]
    lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers), f"Content-Length: {len(body)}",
             "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
