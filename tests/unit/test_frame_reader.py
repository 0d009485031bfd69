"""The buffered frame reader: frames come out whole and in order, however the bytes arrive."""

import socket
import struct
import threading

import pytest
from amqp.exceptions import UnexpectedFrame
from amqp.transport import TCPTransport

from eda import frame_reader


def frame(frame_type: int, channel: int, payload: bytes, end: int = 0xCE) -> bytes:
    return struct.pack(">BHI", frame_type, channel, len(payload)) + payload + bytes([end])


class Inbound:
    """Stands in for py-amqp's connection: records the frames handed to it."""

    def __init__(self):
        self.frames = []

    def on_inbound_frame(self, f):
        self.frames.append(f)


@pytest.fixture
def wire():
    """A transport reading from one end of a real socket pair, and the other end to write to."""
    ours, theirs = socket.socketpair()
    transport = TCPTransport("localhost:5672")
    transport.sock, transport.connected = ours, True
    transport._setup_transport()
    reader = frame_reader.FrameReader(transport)
    yield transport, reader, theirs
    ours.close()
    theirs.close()


def test_every_complete_frame_of_one_read_is_handed_over_and_a_partial_one_waits(wire):
    transport, reader, peer = wire
    frames = [frame(1, 1, b"method"), frame(2, 1, b"header"), frame(3, 1, b"x" * 1000)]
    data = b"".join(frames)
    inbound = Inbound()

    peer.sendall(data[:-5])  # the last frame cut short
    reader.dispatch_ready(inbound)
    assert inbound.frames == [(1, 1, b"method"), (2, 1, b"header")]
    assert not reader.pending()

    peer.sendall(data[-5:])
    reader.dispatch_ready(inbound)
    assert inbound.frames[2] == (3, 1, b"x" * 1000)


def test_frames_of_successive_reads_stay_whole_though_every_read_reuses_one_buffer(wire):
    # Given more frames than one read takes (each read fills the reader's one buffer), each different
    transport, reader, peer = wire
    frames = [frame(3, 1, bytes([i % 251]) * 60_000) for i in range(12)]  # 720 KB: several reads
    inbound = Inbound()
    # When they arrive a piece at a time and are read as they come
    data = b"".join(frames)
    for start in range(0, len(data), 100_000):
        peer.sendall(data[start:start + 100_000])
        reader.dispatch_ready(inbound)
    for _ in range(100):  # whatever the socket still holds
        if len(inbound.frames) == len(frames):
            break
        reader.dispatch_ready(inbound)
    # Then each frame is the one sent, not overwritten by a later read
    assert inbound.frames == [(3, 1, bytes([i % 251]) * 60_000) for i in range(12)]


def test_py_amqp_reads_through_the_same_buffer(wire):
    transport, reader, peer = wire
    peer.sendall(frame(1, 0, b"a") + frame(8, 0, b"") + frame(1, 2, b"b"))

    # py-amqp's own read (a synchronous method waiting for its reply) takes the first frame...
    assert transport.read_frame() == (1, 0, b"a")
    # ...and the frames it read ahead are pending, for the I/O loop to handle before it waits
    assert reader.pending()
    inbound = Inbound()
    reader.dispatch_ready(inbound)
    assert inbound.frames == [(8, 0, b""), (1, 2, b"b")]
    assert not reader.pending()


def test_a_read_that_times_out_mid_frame_loses_nothing(wire):
    transport, reader, peer = wire
    whole = frame(3, 1, b"y" * 300)
    peer.sendall(whole[:100])
    with transport.having_timeout(0.05), pytest.raises(socket.timeout):
        transport.read_frame()
    peer.sendall(whole[100:])
    assert transport.read_frame() == (3, 1, b"y" * 300)


def test_a_frame_without_its_end_octet_is_refused(wire):
    transport, reader, peer = wire
    peer.sendall(frame(1, 1, b"m", end=0x00))
    with pytest.raises(UnexpectedFrame):
        reader.dispatch_ready(Inbound())


def test_a_closed_connection_is_an_error_and_marks_the_transport_disconnected(wire):
    transport, reader, peer = wire
    peer.close()
    with pytest.raises(OSError, match="closed"):
        transport.read_frame()
    assert transport.connected is False


def test_tls_transports_keep_py_amqps_reads():
    class Tls:
        transport = object()
    assert frame_reader.install(Tls()) is None


def test_frames_read_ahead_are_handled_before_a_closed_socket_is_noticed(wire):
    transport, reader, peer = wire
    # Given a frame read ahead by py-amqp's own read (the broker's Connection.Close, say)
    peer.sendall(frame(1, 0, b"cancel-ok") + frame(1, 0, b"close"))
    assert transport.read_frame() == (1, 0, b"cancel-ok")
    # and then the broker closes the socket
    peer.close()
    inbound = Inbound()
    # When the I/O loop handles what is ready, the buffered frame is handed over first
    with pytest.raises(OSError, match="closed"):
        reader.dispatch_ready(inbound)
    assert inbound.frames == [(1, 0, b"close")]


def test_batched_writes_go_out_in_one_piece_when_the_block_ends(wire):
    # Given writes made through the transport inside a batch
    transport, reader, peer = wire
    peer.setblocking(False)
    with reader.batched_writes():
        transport.write(frame(1, 1, b"publish one"))
        transport.write(memoryview(bytearray(frame(1, 1, b"publish two"))))  # a view, as py-amqp hands over
        with reader.batched_writes():  # an inner batch leaves the sending to the outer one
            transport.write(frame(1, 1, b"ack"))
        # Then nothing is sent while the block runs
        with pytest.raises(BlockingIOError):
            peer.recv(4096)
    # and everything, in order, once it ends
    assert peer.recv(4096) == frame(1, 1, b"publish one") + frame(1, 1, b"publish two") + frame(1, 1, b"ack")
    # and writes after it go out at once again
    transport.write(frame(1, 1, b"later"))
    assert peer.recv(4096) == frame(1, 1, b"later")


def test_a_read_waiting_for_the_broker_inside_a_batch_sends_what_is_held_first(wire):
    # Given a broker that answers a request only once it has received it
    transport, reader, peer = wire
    request, reply = frame(1, 1, b"queue.declare"), frame(1, 1, b"queue.declare-ok")

    def broker():
        if peer.recv(4096) == request:
            peer.sendall(reply)

    answering = threading.Thread(target=broker, daemon=True)
    answering.start()
    transport.sock.settimeout(5)
    # When a synchronous method writes its request and waits for the reply inside a batch
    with reader.batched_writes():
        transport.write(request)
        got = transport.read_frame()
    # Then the request went out before the wait, and the reply came back (no wait until the timeout)
    assert got == (1, 1, b"queue.declare-ok")
    answering.join(5)
