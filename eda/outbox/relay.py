"""``eda outbox relay``: publish committed outbox rows, confirmed and mandatory, and mark them sent.

Rows go out in the order they were added, a batch at a time with pipelined confirms; a row is marked
sent only after the broker acked its event, so a relay killed between the two publishes it again later
with the same event id (consumers' idempotency absorbs it), never loses it. A broker that is down or
refuses an event leaves its rows pending and is retried with backoff; a database that goes away is
reconnected. SIGTERM/SIGINT/SIGHUP finish the batch under way, and end any wait at once; systemd hears
READY, WATCHDOG and STOPPING.

Scheduled rows are published once due, earliest first, ahead of rows added for at once; between
batches the relay sleeps until the next due time, a NOTIFY of new rows, or a tick, whichever is first.
"""

import logging
import select
import signal
import socket
import time

from eda import tracing
from eda.connection import open_connection
from eda.contracts.envelope import Event
from eda.errors import BrokerUnavailable, ConfigError, PublishError
from eda.middleware import from_settings, publishing
from eda.outbox import recurring
from eda.outbox.outbox import Outbox
from eda.outbox.sessions import open_session
from eda.publishing.publisher import Publisher
from eda.systemd import Notifier
from eda.topology import Topology
from eda.wakeup import WakeUp, on_stop_signals

log = logging.getLogger("eda.outbox")

TICK = 1.0  # seconds between watchdog pings, heartbeats and checks for a stop while idle
PRUNE_EVERY = 60.0
METRICS_EVERY = 2.0
MAX_BACKOFF = 30.0
CONFIRM_TIMEOUT = 10.0  # below the unit's WatchdogSec: a silent broker ends a batch, not the relay
SCHEDULED_RETRY = 30.0  # seconds until a scheduled event the broker refused is tried again
HELD_ELSEWHERE = 0.05  # seconds to wait when due rows are there but another relay holds them


def row_event(row) -> Event:
    """The event a claimed outbox row holds, as much as publishing needs (its body is the rest): a
    row starts (position, event id, type, source, correlation id, body)."""
    event_id, event_type, source, correlation_id = row[1:5]
    return Event(type=event_type, data={}, source=source, id=event_id, time="", correlation_id=correlation_id)


class Relay:
    def __init__(self, settings, *, batch: int = 500, retention: float = 3600.0, poll: float = 0.5,
                 notifier: Notifier | None = None):
        self.settings = settings
        self.batch = batch
        self.retention = retention
        self.poll = poll
        self.metrics = settings.metrics_port is not None
        self.notifier = notifier or Notifier.from_env()
        self.exchange = Topology(settings.namespace).events.name
        self.outbox = Outbox(settings)  # a wrong database URL fails here: one line, exit 2
        # The app's recurring schedules (eda.schedule): their ticks are written as scheduled rows.
        schedules = recurring.of_app()
        self.ticker = recurring.Ticker(schedules, time.time()) if schedules else None
        for declared in schedules:
            log.info("recurring schedule %s: %s (%s, %s) -> %s", declared.name, declared.cron, declared.explain(),
                     declared.timezone, declared.event, extra={"schedule": declared.name, "cron": declared.cron})
        self.session = None
        self.publishing = None  # the publish middleware chain, composed in run()
        self.conn = self.publisher = None
        self.stopping = False
        self._signals = 0
        self._wakeup = WakeUp()  # written by a stop: every wait of the relay's returns at once
        self._backoff = 0.0
        self._next_prune = time.monotonic() + PRUNE_EVERY
        self._next_metrics = 0.0

    # The loop.

    def run(self) -> int:
        on_stop_signals(self._on_signal)
        # Tracing first (on only where OTEL_TRACES_EXPORTER asks), then EDA_MIDDLEWARE's: around each publish.
        self.publishing = publishing([*tracing.middleware("eda-outbox-relay"), *from_settings(self.settings)])
        if self.metrics:
            from eda.metrics import serve_outbox

            serve_outbox(self.settings.metrics_port, self.settings.metrics_address)
        self.session = open_session(self.outbox, self.poll)
        self.notifier.notify(READY=1, STATUS=f"relaying {self.outbox.where}")
        log.info("relaying the outbox in %s to exchange %s", self.outbox.where, self.exchange,
                 extra={"outbox": self.outbox.where, "exchange": self.exchange})
        waiting_logged = False
        try:
            while not self.stopping:
                self._tick()
                if not self.session.acquire():
                    if not waiting_logged:
                        log.info("another relay holds this SQLite outbox: standing by")
                        waiting_logged = True
                    self._sleep(TICK)
                    continue
                if waiting_logged:  # taken over from the relay that held it
                    waiting_logged = False
                    if self.ticker is not None:
                        self.ticker.resume(time.time())
                self._step()
        finally:
            self._close_broker()
            if self.session is not None:
                self.session.close()
        log.info("stopped: every published row of the last batch is marked sent")
        return 0

    def _step(self) -> None:
        """One round: a batch if the broker and database are there; wait when idle or after a failure."""
        try:
            self._chores()
        except self.session.errors as exc:
            self._reopen_session(exc)
            return
        if self.publisher is None and not self._connect_broker():
            return
        try:
            full = self._relay_batch()
        except BrokerUnavailable as exc:
            self._close_broker()
            self._retry(f"lost the broker: {exc}")
            return
        except PublishError as exc:
            self._retry(str(exc))
            return
        except self.session.errors as exc:
            self._reopen_session(exc)
            return
        self._backoff = 0.0
        if full or self.stopping:
            return
        try:
            wait = self._until_due(published=full is not None)
            if wait > 0:
                self.session.wait(wait, self._wakeup.read_fd)
        except self.session.errors as exc:
            self._reopen_session(exc)

    def _until_due(self, published: bool) -> float:
        """Seconds to sleep before the next batch: until the next scheduled row falls due, a tick at most.
        Due rows left after a batch that published some go at once; left after a batch that found none,
        another relay holds them (they are locked until it commits): a short wait, not a busy loop."""
        due = self.session.next_due()
        if due is None:
            return TICK
        left = due - time.time()
        if left > 0:
            return min(left, TICK)
        return 0.0 if published else HELD_ELSEWHERE

    def _relay_batch(self) -> bool | None:
        """Publish the rows due, oldest first; mark those confirmed. True when the batch was full, None
        when there was nothing to publish."""
        confirmed, failed, broken = [], [], None
        with self.session.claimed(self.batch, time.time()) as (rows, mark):
            if not rows:
                return None
            try:
                self._publish(rows, confirmed, failed)
            except BrokerUnavailable as exc:
                broken = exc
            except (OSError, *self.conn.connection_errors, *self.conn.channel_errors) as exc:
                broken = BrokerUnavailable(str(exc) or type(exc).__name__)
            if confirmed:
                mark(confirmed)  # committed as the claim's transaction ends
            refused_now = False
            if failed and broken is None:
                # A scheduled row the broker refused (no queue bound yet) is due again later; were it left
                # due, it would be claimed first by every batch, and each would back off for it.
                done = set(confirmed)
                refused_now = any(row[0] not in done and row[6] is None for row in rows)
                later = [row[0] for row in rows if row[0] not in done and row[6] is not None]
                if later:
                    self.session.postpone(later, time.time() + SCHEDULED_RETRY)
        if confirmed:
            self._published(len(confirmed))
        if broken is not None:
            raise broken
        if failed:
            more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
            if refused_now:
                raise PublishError(f"the broker did not take {failed[0]}{more}; the rows stay in the outbox")
            log.warning("the broker did not take %s%s; scheduled, it is due again in %.0fs", failed[0], more,
                        SCHEDULED_RETRY, extra={"error": str(failed[0])})
        return len(rows) == self.batch

    def _publish(self, rows, confirmed: list, failed: list) -> None:
        """Publish rows within the confirm window: the positions the broker took go to ``confirmed``,
        the errors of the others to ``failed`` (their rows stay pending)."""
        def send(row, settled):
            self.publisher.send_event(row_event(row), self.exchange, body=bytes(row[5]), mandatory=True,
                                      callback=settled, middleware=self.publishing)

        failed += self.publisher.publish_all(rows, send, on_confirmed=lambda row: confirmed.append(row[0]),
                                             timeout=CONFIRM_TIMEOUT, stop_at_error=False)

    # The broker.

    def _connect_broker(self) -> bool:
        try:
            self.conn = open_connection(self.settings)
            self.publisher = Publisher(self.conn)
            Topology(self.settings.namespace).declare_exchanges(self.publisher.channel)
        except ConfigError:
            raise  # a refused login: retrying cannot help
        except (BrokerUnavailable, OSError) as exc:
            self._close_broker()
            self._retry(str(exc))
            return False
        log.info("connected to the broker at %s", self.settings.safe_broker_url)
        self.notifier.notify(STATUS=f"relaying {self.outbox.where}")
        return True

    def _close_broker(self) -> None:
        if self.conn is not None:
            try:
                self.conn.release()
            except Exception:  # already broken
                pass
        self.conn = self.publisher = None

    def _tick(self) -> None:
        """Watchdog, and the broker connection's heartbeats (read what it sent, answer in time)."""
        self.notifier.ping_if_due()
        if self.conn is None:
            return
        try:
            self.conn.heartbeat_check()
            self.conn.drain_events(timeout=0.001)
        except socket.timeout:
            pass
        except (OSError, *self.conn.connection_errors) as exc:
            self._close_broker()
            log.warning("lost the broker: %s", exc)

    # Failures and waiting.

    def _retry(self, reason: str) -> None:
        self._backoff = min(MAX_BACKOFF, self._backoff * 2 or 1.0)
        log.warning("%s; the rows stay in the outbox, retrying in %.0fs", reason, self._backoff,
                    extra={"error": reason})
        self.notifier.notify(STATUS=f"retrying in {self._backoff:.0f}s: {reason}"[:200])
        self._sleep(self._backoff)

    def _reopen_session(self, exc) -> None:
        reason = " ".join(str(exc).split())[:300] or type(exc).__name__
        self.session.close()
        self._retry(f"lost the database: {reason}")
        while not self.stopping:
            try:
                self.session = open_session(self.outbox, self.poll)
                log.info("reconnected to the database")
                if self.ticker is not None:
                    self.ticker.resume(time.time())
                return
            except Exception as again:  # ConfigError from connecting, or the LISTEN that followed
                self._retry(" ".join(str(again).split())[:300])

    def _sleep(self, seconds: float) -> None:
        """Wait, still answering the watchdog and heartbeats, until ``seconds`` passed or a stop is asked."""
        deadline = time.monotonic() + seconds
        while not self.stopping and (left := deadline - time.monotonic()) > 0:
            select.select([self._wakeup.read_fd], [], [], min(left, TICK))
            self._tick()

    def _chores(self) -> None:
        """Write the recurring schedules' ticks that are due to be written; now and then, delete sent rows
        past the retention and count what is pending for the metrics."""
        if self.ticker is not None:
            ticks = self.ticker.due(time.time())
            if ticks:
                self.session.schedule([declared.event_at(tick) for declared, tick in ticks])
                self.ticker.written(ticks)
        now = time.monotonic()
        if now >= self._next_prune:
            self._next_prune = now + PRUNE_EVERY
            deleted = self.session.prune(self.retention)
            if deleted:
                log.info("deleted %d sent rows older than %.0fs", deleted, self.retention)
        if self.metrics and now >= self._next_metrics:
            self._next_metrics = now + METRICS_EVERY
            from eda.metrics import outbox_pending

            outbox_pending(*self.session.pending())

    def _published(self, count: int) -> None:
        log.info("published %d event%s from the outbox", count, "" if count == 1 else "s", extra={"published": count})
        if self.metrics:
            from eda.metrics import OUTBOX_PUBLISHED

            OUTBOX_PUBLISHED.inc(count)

    def _on_signal(self, signum, frame) -> None:
        self._signals += 1
        if self._signals > 1:
            log.warning("second signal: exiting now; rows published but not yet marked are published again")
            raise SystemExit(1)
        self.stopping = True
        self._wakeup.wake()  # a wait under way (select retries after the handler) returns now
        log.info("%s received: finishing the batch under way", signal.Signals(signum).name)
        self.notifier.notify(STOPPING=1, STATUS="stopping: finishing the batch under way")
