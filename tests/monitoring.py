"""What a platform sees of eda, for the tests: a Prometheus scrape of a metrics port (and a free port to
serve one on), and systemd's end of the notify protocol."""

import socket
import struct
import urllib.request
import uuid

from prometheus_client.parser import text_string_to_metric_families

from tests.support import wait_until


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on (now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> dict:
    """Every sample of http://127.0.0.1:PORT/metrics as {(name, ((label, value), ...)): value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


class NotifySocket:
    """An AF_UNIX datagram socket under an abstract name, in the role of systemd's NOTIFY_SOCKET; it notes
    which process sent each message (SO_PASSCRED), as systemd does."""

    def __init__(self):
        self.name = f"@eda-test-{uuid.uuid4().hex[:12]}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(b"\0" + self.name[1:].encode())
        self.messages: list[dict] = []  # each message as a dict of its KEY=value lines, in arrival order
        self.senders: list[int] = []  # the pid that sent each of them

    def receive(self, timeout: float) -> dict | None:
        """The next message, or None after ``timeout``."""
        self.sock.settimeout(timeout)
        try:
            data, ancillary, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(struct.calcsize("3i")))
        except socket.timeout:
            return None
        pid = next(struct.unpack("3i", d)[0] for level, kind, d in ancillary
                   if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS)
        message = dict(line.split("=", 1) for line in data.decode().splitlines())
        self.messages.append(message)
        self.senders.append(pid)
        return message

    def wait_for(self, key: str, timeout: float = 60.0) -> dict:
        """Receive until a message carrying ``key`` arrives."""
        return wait_until(lambda: (lambda m: m if m and key in m else None)(self.receive(0.2)), timeout,
                          interval=0, message=f"{key} from eda")

    def drain(self) -> None:
        """Receive what is still on its way (after the process exited)."""
        while self.receive(0.1) is not None:
            pass

    def close(self):
        self.sock.close()
