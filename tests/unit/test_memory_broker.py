"""The in-memory broker (eda.memory) behaves as RabbitMQ does where eda's runtime relies on it: TTL queues
dead-lettering back, mandatory returns before the confirm, consistent-hash routing, PRECONDITION_FAILED on a
redeclare with other arguments, prefetch, acks, requeues, single active consumers, quorum delivery limits."""

import select
import socket

import pytest
from amqp.basic_message import Message
from amqp.exceptions import NotFound, PreconditionFailed
from kombu import Exchange, Queue

from eda.contracts.envelope import new_event
from eda.errors import QueueMismatch, Unroutable
from eda.memory import Broker, open_connection
from eda.memory.routing import jump_hash, topic_matches
from eda.publishing.publisher import Publisher
from eda.topology import Topology, declare


@pytest.fixture
def broker():
    return Broker()


@pytest.fixture
def conn(broker):
    connection = open_connection(broker)
    yield connection
    connection.release()


def drain(conn):
    """Hand out every frame the broker sent (deliveries, confirms, returns), as the worker's I/O loop does."""
    while True:
        try:
            conn.connection.drain_events(timeout=0)
        except socket.timeout:
            return


def consume(channel, queue, prefetch=0):
    got = []
    channel.basic_qos(0, prefetch, False)
    channel.basic_consume(queue, callback=got.append)
    return got


def publish(channel, exchange, routing_key, body=b"{}", mandatory=False, **properties):
    channel.basic_publish(Message(body, **properties), exchange=exchange, routing_key=routing_key, mandatory=mandatory)


def test_a_ttl_queue_dead_letters_its_messages_back_to_the_work_queue_when_the_clock_passes_the_ttl(broker, conn):
    # Given a work queue and a retry queue whose TTL returns messages to it through the default exchange
    channel = conn.channel()
    channel.queue_declare("work", durable=True, auto_delete=False)
    channel.queue_declare("work.retry.5s", durable=True, auto_delete=False, arguments={
        "x-message-ttl": 5000, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "work"})
    got = consume(channel, "work")
    start = broker.clock()
    # When a message waits in the retry queue
    publish(channel, "", "work.retry.5s", b"retry me", application_headers={"eda-retry-count": 1})
    drain(conn)
    broker.advance(start + 4.999)
    drain(conn)
    assert got == [] and len(broker.queues["work.retry.5s"].messages) == 1
    # Then it reaches the work queue once 5 s passed on the broker's clock, with the broker's x-death record
    broker.advance(start + 5)
    drain(conn)
    [message] = got
    assert message.body == b"retry me"
    assert message.delivery_info["exchange"] == "" and message.delivery_info["routing_key"] == "work"
    headers = message.properties["application_headers"]
    assert headers["eda-retry-count"] == 1
    [death] = headers["x-death"]
    assert (death["queue"], death["reason"], death["count"]) == ("work.retry.5s", "expired", 1)
    assert headers["x-first-death-queue"] == "work.retry.5s"
    assert broker.clock() == start + 5 and broker.next_expiry() is None


def test_a_mandatory_message_no_queue_takes_comes_back_before_its_confirm(conn):
    # Given a topic exchange with no queue bound for the key
    channel = conn.channel()
    channel.exchange_declare("ns.events", "topic", durable=True, auto_delete=False)
    channel.confirm_select()
    seen = []
    channel.events["basic_return"].add(lambda exc, exchange, key, message: seen.append(("return", key, exc.reply_code)))
    channel.events["basic_ack"].add(lambda tag, multiple: seen.append(("ack", tag)))
    # When a mandatory message is published to it
    publish(channel, "ns.events", "nobody.listens", mandatory=True, message_id="m-1")
    drain(conn)
    # Then the broker returns it (312 NO_ROUTE) and acks it after that, as RabbitMQ does
    assert seen == [("return", "nobody.listens", 312), ("ack", 1)]


def test_eda_s_publisher_reports_an_unroutable_event_as_rabbitmq_makes_it_report_it(conn, invoices):
    conn.channel().exchange_declare("ns.events", "topic", durable=True, auto_delete=False)
    event = new_event("invoice.sent", {"invoice_id": "i-1"}, "test")
    with pytest.raises(Unroutable, match="routed to no queue .exchange 'ns.events', routing key 'invoice.sent'"):
        Publisher(conn).publish_events([event], "ns.events")


def test_a_consistent_hash_exchange_sends_every_message_of_one_key_to_one_queue(broker, conn):
    # Given four partition queues bound with weight 1 to a consistent-hash exchange on a header, itself
    # bound to a topic exchange (as eda declares an ordered worker's partitions)
    channel = conn.channel()
    channel.exchange_declare("ns.events", "topic", durable=True, auto_delete=False)
    channel.exchange_declare("ns.w.partitions", "x-consistent-hash", durable=True, auto_delete=False,
                             arguments={"hash-header": "eda-partition-key"})
    channel.exchange_bind("ns.w.partitions", "ns.events", "account.changed")
    for i in range(4):
        channel.queue_declare(f"ns.w.p{i}", durable=True, auto_delete=False)
        channel.queue_bind(f"ns.w.p{i}", "ns.w.partitions", "1")
    # When 20 keys' messages are published, five each, and three without the header
    for n in range(5):
        for key in range(20):
            publish(channel, "ns.events", "account.changed", f"{key}:{n}".encode(),
                    application_headers={"eda-partition-key": f"acct-{key}"})
    for n in range(3):
        publish(channel, "ns.events", "account.changed", f"none:{n}".encode())
    # Then each key's messages are in one queue, in order, and the keys spread over more than one queue
    where = {}
    for i in range(4):
        bodies = [m.body.decode() for m in broker.queues[f"ns.w.p{i}"].messages]
        for body in bodies:
            where.setdefault(body.split(":")[0], set()).add(i)
        for key in {b.split(":")[0] for b in bodies}:
            assert [b for b in bodies if b.startswith(key + ":")] == [f"{key}:{n}" for n in range(5 if key != "none" else 3)]
    assert all(len(queues) == 1 for queues in where.values()) and len(where) == 21
    assert len(set().union(*where.values())) > 1


def test_a_consistent_hash_binding_key_must_be_a_weight(conn):
    channel = conn.channel()
    channel.exchange_declare("ring", "x-consistent-hash", durable=True, auto_delete=False)
    channel.queue_declare("q", durable=True, auto_delete=False)
    with pytest.raises(PreconditionFailed, match="must be greater than 0"):
        channel.queue_bind("q", "ring", "0")


def test_the_jump_hash_moves_few_keys_when_a_bucket_is_added():
    moved = sum(jump_hash(key * 7919, 8) != jump_hash(key * 7919, 9) for key in range(1000))
    assert 0 < moved < 250  # about 1/9 of them
    assert all(0 <= jump_hash(key, 5) < 5 for key in range(100))


def test_a_redeclare_with_other_arguments_is_precondition_failed_and_the_channel_goes_on(broker, conn):
    # Given a classic queue
    channel = conn.channel()
    channel.queue_declare("q", durable=True, auto_delete=False, arguments={"x-dead-letter-exchange": "dlx"})
    # When it is declared again as a quorum queue
    with pytest.raises(PreconditionFailed) as raised:
        channel.queue_declare("q", durable=True, auto_delete=False,
                              arguments={"x-dead-letter-exchange": "dlx", "x-queue-type": "quorum"})
    # Then the broker says which argument differs, in RabbitMQ's words
    assert raised.value.reply_text == ("PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'q' in "
                                       "vhost '/': received the value 'quorum' of type 'longstr' but current is none")
    # And the channel opened again (as py-amqp reopens it), the queue unchanged
    assert channel.queue_declare("q", passive=True).queue == "q"
    assert broker.queues["q"].arguments == {"x-dead-letter-exchange": "dlx"}


def test_eda_s_topology_turns_the_memory_broker_s_precondition_failed_into_its_one_line_error(conn):
    channel = conn.channel()
    Topology("ns", (1000,)).declare_worker(channel, "billing", ["invoice.requested"])
    quorum = Topology("ns", (1000,), queue_type="quorum")
    with pytest.raises(QueueMismatch, match=r"queue 'ns.billing.dlq' exists with other arguments \(x-queue-type is "
                                            r"none there, quorum here\)"):
        quorum.declare_worker(channel, "billing", ["invoice.requested"])
    conn.channel().exchange_declare("other.events", "direct", durable=True, auto_delete=False)
    with pytest.raises(QueueMismatch, match="exchange 'other.events' exists with other properties .inequivalent arg "
                                            "'type'.*: received 'topic' but current is 'direct'.; eda needs a durable topic"):
        Topology("other").declare_exchanges(conn.channel())


def test_an_exchange_redeclared_with_another_type_is_refused(conn):
    channel = conn.channel()
    channel.exchange_declare("ns.events", "topic", durable=True, auto_delete=False)
    with pytest.raises(PreconditionFailed, match="inequivalent arg 'type' for exchange 'ns.events' in vhost '/': "
                                                 "received 'direct' but current is 'topic'"):
        channel.exchange_declare("ns.events", "direct", durable=True, auto_delete=False)


def test_a_passive_declare_of_a_missing_queue_is_not_found(conn):
    with pytest.raises(NotFound, match="no queue 'missing'"):
        conn.channel().queue_declare("missing", passive=True)


def test_kombu_entities_declare_through_the_memory_channel(broker, conn):
    exchange = Exchange("ns.events", type="topic", durable=True)
    declare(Queue("ns.w", exchange=exchange, routing_key="a.*", durable=True,
                  queue_arguments={"x-dead-letter-exchange": "ns.dlx"}), conn.channel())
    channel = conn.channel()
    publish(channel, "ns.events", "a.b", b"1")
    publish(channel, "ns.events", "a.b.c", b"2")
    assert [m.body for m in broker.queues["ns.w"].messages] == [b"1"]


def test_prefetch_bounds_the_unacked_deliveries_and_a_multiple_ack_settles_all_below(broker, conn):
    channel = conn.channel()
    channel.queue_declare("q", durable=True, auto_delete=False)
    for i in range(5):
        publish(channel, "", "q", str(i).encode())
    got = consume(conn.channel(), "q", prefetch=2)
    drain(conn)
    assert [m.body for m in got] == [b"0", b"1"]
    got[1].channel.basic_ack(got[1].delivery_tag, multiple=True)
    drain(conn)
    assert [m.body for m in got] == [b"0", b"1", b"2", b"3"]
    assert len(broker.queues["q"].messages) == 1


def test_a_requeued_message_goes_back_to_its_place_marked_redelivered(conn):
    channel = conn.channel()
    channel.queue_declare("q", durable=True, auto_delete=False)
    for i in range(3):
        publish(channel, "", "q", str(i).encode())
    consumer = conn.channel()
    got = consume(consumer, "q", prefetch=1)
    drain(conn)
    consumer.basic_reject(got[0].delivery_tag, requeue=True)
    drain(conn)
    assert [(m.body, m.delivery_info["redelivered"]) for m in got] == [(b"0", False), (b"0", True)]


def test_a_rejected_message_goes_to_the_queue_s_dead_letter_exchange(broker, conn):
    channel = conn.channel()
    channel.exchange_declare("dlx", "direct", durable=True, auto_delete=False)
    channel.queue_declare("q.dlq", durable=True, auto_delete=False)
    channel.queue_bind("q.dlq", "dlx", "q")
    channel.queue_declare("q", durable=True, auto_delete=False,
                          arguments={"x-dead-letter-exchange": "dlx", "x-dead-letter-routing-key": "q"})
    publish(channel, "", "q", b"poison")
    got = consume(channel, "q")
    drain(conn)
    channel.basic_reject(got[0].delivery_tag, requeue=False)
    [dead] = broker.queues["q.dlq"].messages
    assert dead.body == b"poison" and dead.properties["application_headers"]["x-death"][0]["reason"] == "rejected"


def test_a_closed_channel_s_unacked_messages_return_redelivered(broker, conn):
    channel = conn.channel()
    channel.queue_declare("q", durable=True, auto_delete=False)
    publish(channel, "", "q", b"1")
    consumer = conn.channel()
    got = consume(consumer, "q")
    drain(conn)
    consumer.close()
    [back] = broker.queues["q"].messages
    assert len(got) == 1 and back.body == b"1" and back.redelivered


def test_a_single_active_consumer_queue_delivers_to_one_consumer_until_it_goes(conn):
    channel = conn.channel()
    channel.queue_declare("p0", durable=True, auto_delete=False, arguments={"x-single-active-consumer": True})
    first, second = conn.channel(), conn.channel()
    got_first, got_second = consume(first, "p0"), consume(second, "p0")
    for i in range(2):
        publish(channel, "", "p0", str(i).encode())
    drain(conn)
    assert [m.body for m in got_first] == [b"0", b"1"] and got_second == []
    first.close()  # the two unacked return, to the next consumer
    publish(channel, "", "p0", b"2")
    drain(conn)
    assert [m.body for m in got_second] == [b"0", b"1", b"2"]


def test_a_quorum_queue_counts_deliveries_and_dead_letters_past_its_limit(broker, conn):
    channel = conn.channel()
    channel.exchange_declare("dlx", "direct", durable=True, auto_delete=False)
    channel.queue_declare("q.dlq", durable=True, auto_delete=False)
    channel.queue_bind("q.dlq", "dlx", "q")
    channel.queue_declare("q", durable=True, auto_delete=False, arguments={
        "x-queue-type": "quorum", "x-delivery-limit": 1, "x-dead-letter-exchange": "dlx",
        "x-dead-letter-routing-key": "q"})
    publish(channel, "", "q", b"crash")
    got = consume(channel, "q")
    for _ in range(2):
        drain(conn)
        channel.basic_reject(got[-1].delivery_tag, requeue=True)
    assert [m.properties.get("application_headers", {}).get("x-delivery-count") for m in got] == [None, 1]
    [dead] = broker.queues["q.dlq"].messages
    assert dead.properties["application_headers"]["x-death"][0]["reason"] == "delivery_limit"


def test_a_quorum_queue_must_be_durable(conn):
    with pytest.raises(PreconditionFailed, match="invalid property 'auto-delete'"):
        conn.channel().queue_declare("q", durable=True, auto_delete=True, arguments={"x-queue-type": "quorum"})


def test_an_unknown_delivery_tag_closes_the_channel_with_precondition_failed(conn):
    channel = conn.channel()
    channel.basic_ack(99)
    with pytest.raises(PreconditionFailed, match="unknown delivery tag 99"):
        drain(conn)


def test_publishing_to_a_missing_exchange_closes_the_channel_not_found(conn):
    channel = conn.channel()
    channel.confirm_select()
    acks = []
    channel.events["basic_ack"].add(lambda tag, multiple: acks.append(tag))
    publish(channel, "nowhere", "x")
    with pytest.raises(NotFound, match="no exchange 'nowhere'"):
        drain(conn)
    assert acks == []


def test_the_connection_s_socket_is_readable_exactly_while_frames_wait(conn):
    channel = conn.channel()
    channel.queue_declare("q", durable=True, auto_delete=False)
    consume(channel, "q")
    sock = conn.connection.sock
    assert select.select([sock], [], [], 0)[0] == []
    publish(channel, "", "q")
    assert select.select([sock], [], [], 0)[0] == [sock]
    drain(conn)
    assert select.select([sock], [], [], 0)[0] == []


def test_a_header_py_amqp_cannot_encode_fails_the_publish_as_on_a_socket(conn):
    with pytest.raises(Exception):
        publish(conn.channel(), "", "q", message_id="x" * 300)  # a short string holds 255 bytes


@pytest.mark.parametrize("pattern, key, matches", [
    ("order.placed", "order.placed", True), ("order.*", "order.placed", True), ("order.*", "order.a.b", False),
    ("order.#", "order", True), ("#", "a.b.c", True), ("*.placed", "order.placed", True), ("a.#.z", "a.b.c.z", True),
    ("a.#.z", "a.z", True), ("a.*.z", "a.z", False)])
def test_topic_bindings_match_as_amqp_says(pattern, key, matches):
    assert topic_matches(pattern, key) is matches


def test_direct_reply_to_sends_a_reply_straight_to_the_requesting_channel(conn):
    # Given a requester consuming direct reply-to on the channel it publishes its request on
    requester, server = conn.channel(), conn.channel()
    server.queue_declare("requests", durable=True, auto_delete=False)
    requests = consume(server, "requests")
    answers = []
    requester.basic_consume("amq.rabbitmq.reply-to", no_ack=True, callback=answers.append)
    # When it publishes a request with reply_to amq.rabbitmq.reply-to
    publish(requester, "", "requests", b"question", reply_to="amq.rabbitmq.reply-to")
    drain(conn)
    # Then the server sees the channel's own address, and a reply sent there reaches the requester
    [request] = requests
    address = request.properties["reply_to"]
    assert address.startswith("amq.rabbitmq.reply-to.")
    publish(server, "", address, b"answer")
    drain(conn)
    assert [m.body for m in answers] == [b"answer"]


def test_a_request_with_direct_reply_to_needs_its_reply_consumer(conn):
    channel = conn.channel()
    publish(channel, "", "anything", reply_to="amq.rabbitmq.reply-to")
    with pytest.raises(PreconditionFailed, match="fast reply consumer does not exist"):
        drain(conn)
