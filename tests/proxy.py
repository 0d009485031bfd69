"""A TCP proxy in front of a server (the broker, PostgreSQL) that a test can cut or silence."""

import socket
import struct
import threading
import time
from urllib.parse import urlsplit, urlunsplit


class TcpProxy:
    """A TCP proxy in front of the broker that a test can cut (every connection reset) or silence
    (nothing forwarded either way, sockets left open: a peer that vanished without a word)."""

    def __init__(self, host: str, port: int):
        self.target = (host, port)
        self.silent = False
        self.hold_client = False  # hold what clients send (their acks), still forwarding what the broker sends
        self.leak = 0  # while silent, bytes of the broker's next data still let through (half a frame)
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, broker_url: str) -> str:
        """``broker_url`` with its host and port replaced by the proxy's."""
        parts = urlsplit(broker_url)
        userinfo = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
        return urlunsplit(parts._replace(netloc=f"{userinfo}127.0.0.1:{self.port}"))

    def _accept(self):
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return  # closed
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets += [client, upstream]
            for src, dst, from_broker in ((client, upstream, False), (upstream, client, True)):
                threading.Thread(target=self._pump, args=(src, dst, from_broker), daemon=True).start()

    def go_silent(self, mid_frame=False):
        """Forward nothing more; with ``mid_frame``, only the first bytes of the broker's next frame."""
        self.leak = 3 if mid_frame else 0
        self.silent = True

    def _pump(self, src, dst, from_broker):
        try:
            while data := src.recv(65536):
                if self.silent and from_broker and self.leak:
                    head, data, self.leak = data[:self.leak], data[self.leak:], 0
                    dst.sendall(head)
                while self.silent or (self.hold_client and not from_broker):
                    time.sleep(0.02)  # hold the bytes: the other side hears nothing
                dst.sendall(data)
        except OSError:
            pass
        while self.silent:
            time.sleep(0.02)  # not even a closed connection is passed on
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        """Reset every connection through the proxy, as a network cut does; new ones are accepted."""
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for s in sockets:
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST, not FIN
                s.shutdown(socket.SHUT_RDWR)  # wakes the pump blocked on it, so the close really happens
            except OSError:
                pass
            s.close()

    def close(self):
        """Refuse new connections from now on (a broker gone for good) and reset those open."""
        try:
            self._server.shutdown(socket.SHUT_RDWR)  # wakes the accept thread, which close alone does not
        except OSError:
            pass
        self._server.close()
        self.silent = False
        self.cut()
