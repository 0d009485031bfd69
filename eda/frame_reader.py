"""Reading AMQP frames in large chunks: one ``recv`` for all the socket holds, not three per frame.

py-amqp reads each frame with three ``recv`` calls (header, payload, end octet) and sets the socket's
timeout twice per ``drain_events``: a third of a no-op worker's I/O loop, and as much again for a
handler thread waiting for the GIL at each of those calls (benchmarks/PROFILE.md). ``FrameReader``
takes the transport's ``read_frame`` over with one served from a buffer, so py-amqp's own reads
(``drain_events``, a synchronous method waiting for its reply) and the worker's I/O loop
(``dispatch_ready``) share one buffer and never read past each other. Plain TCP only: a TLS socket
keeps bytes inside its SSL object where ``select`` does not see them, so TLS keeps py-amqp's reads.
"""

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
        transport._read_buffer = b""
        transport.read_frame = self.read_frame
        transport.frame_reader = self

    def read_frame(self, unpack=None):
        """py-amqp's ``read_frame``: the next frame, waiting on the socket (with the timeout py-amqp set)."""
        while (frame := self._next()) is None:
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
