"""Reading AMQP frames in large chunks: one ``recv`` for all the socket holds, not three per frame.

py-amqp reads each frame with three ``recv`` calls (header, payload, end octet) and sets the socket's
timeout twice per ``drain_events``: a third of a no-op worker's I/O loop, and as much again for a
handler thread waiting for the GIL at each of those calls (benchmarks/PROFILE.md). ``FrameReader``
takes the transport's ``read_frame`` over with one served from a buffer, so py-amqp's own reads
(``drain_events``, a synchronous method waiting for its reply) and the worker's I/O loop
(``dispatch_ready``) share one buffer and never read past each other. Plain TCP only: a TLS socket
keeps bytes inside its SSL object where ``select`` does not see them, so TLS keeps py-amqp's reads.

Writes can be held the same way (``batched_writes``): while the I/O loop settles a turn's outcomes, the
publishes and acks it makes go out in one ``sendall`` at the end instead of one each. Each ``sendall``
lets go of the GIL, and a handler thread or event loop waiting for it took it every time, so that the
I/O thread waited to get it back between two publishes (issue 20). Anything that waits for the broker
meanwhile (a synchronous method's reply) sends what is held first.
"""

from contextlib import contextmanager

import socket
import struct

from amqp.exceptions import UnexpectedFrame
from amqp.transport import TCPTransport

FRAME_END = 0xCE
CHUNK = 256 * 1024  # bytes asked of the socket per recv: about 500 small deliveries
_HEADER = struct.Struct(">BHI")  # frame type, channel, payload size


class FrameReader:
    """Serves a py-amqp transport's frames from a buffer filled by large reads."""

    def __init__(self, transport: TCPTransport):
        self.transport = transport
        self.sock = transport.sock
        self.buffer = bytes(transport._read_buffer)  # a frame py-amqp began to read, if any
        self.pos = 0
        # Read into this one buffer: ``recv(CHUNK)`` made a CHUNK-sized bytes object per read, which the
        # C library maps and unmaps (mmap, mremap, munmap: three system calls a read, and fresh pages).
        self._chunk = bytearray(CHUNK)
        self._view = memoryview(self._chunk)
        self._held = None  # bytes written while writes are batched, sent at the batch's end
        transport._read_buffer = b""
        transport.read_frame = self.read_frame
        transport.frame_reader = self

    @contextmanager
    def batched_writes(self):
        """Hold what is written to the socket until the block ends (or a read must wait for the
        broker), then send it in one ``sendall``. Re-entrant: an inner block leaves it to the outer one."""
        if self._held is not None:
            yield
            return
        transport = self.transport
        sendall = transport._write
        self._held = held = []

        def hold(data):
            held.append(bytes(data))  # py-amqp may hand a view of a buffer it reuses: copied

        transport._write = hold
        try:
            yield
        finally:
            transport._write = sendall
            self._held = None
            if held:
                sendall(b"".join(held))

    def _send_held(self) -> None:
        held = self._held
        if held:
            data = b"".join(held)
            held.clear()
            self.sock.sendall(data)

    def read_frame(self, unpack=None):
        """py-amqp's ``read_frame``: the next frame, waiting on the socket (with the timeout py-amqp set)."""
        while (frame := self._next()) is None:
            self._send_held()  # a reply waited for must not wait behind the request held here
            self._fill(0)
        return frame

    def dispatch_ready(self, connection) -> None:
        """Hand py-amqp every complete frame buffered, then read what the socket holds now without
        waiting and hand on those too. Buffered frames go first: a broker's Connection.Close read ahead
        must be handled (its reason logged, close-ok sent) before a read that finds the socket closed.
        What is left in the buffer afterwards is part of a frame, so waiting on the socket is safe."""
        self._dispatch(connection)
        try:
            self._fill(socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            pass
        self._dispatch(connection)

    def _dispatch(self, connection) -> None:
        while (frame := self._next()) is not None:
            connection.on_inbound_frame(frame)

    def pending(self) -> bool:
        """True when a complete frame waits in the buffer (read ahead by a synchronous method's wait):
        the socket may then have nothing more to say, so waiting on it first could stall."""
        buf, pos = self.buffer, self.pos
        return len(buf) - pos >= 8 and len(buf) > pos + 7 + _HEADER.unpack_from(buf, pos)[2]

    def _next(self):
        """The next complete frame in the buffer, or None."""
        buf, pos = self.buffer, self.pos
        if len(buf) - pos < 8:
            return None
        frame_type, channel, size = _HEADER.unpack_from(buf, pos)
        end = pos + 7 + size
        if len(buf) <= end:
            return None
        if buf[end] != FRAME_END:
            raise UnexpectedFrame(f"Received frame_end {buf[end]:#04x} while expecting 0xce")
        self.pos = end + 1
        return frame_type, channel, buf[pos + 7:end]

    def _fill(self, flags: int) -> None:
        try:
            size = self.sock.recv_into(self._chunk, CHUNK, flags)
        except (socket.timeout, BlockingIOError, InterruptedError):
            raise
        except OSError:
            self.transport.connected = False
            raise
        if not size:
            self.transport.connected = False
            raise OSError("Server unexpectedly closed connection")
        # Only the unread tail is kept: one copy per recv, not per frame.
        data = self._view[:size].tobytes()
        self.buffer = self.buffer[self.pos:] + data if self.pos < len(self.buffer) else data
        self.pos = 0


def install(amqp_connection) -> FrameReader | None:
    """Give a connected py-amqp connection a ``FrameReader``; None for TLS (py-amqp reads those)."""
    transport = getattr(amqp_connection, "transport", None)
    if type(transport) is not TCPTransport or transport.sock is None:
        return None
    return FrameReader(transport)


def reader_of(amqp_connection) -> FrameReader | None:
    """The connection's ``FrameReader``, if it has one."""
    return getattr(getattr(amqp_connection, "transport", None), "frame_reader", None)
