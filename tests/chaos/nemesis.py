"""The nemesis: a schedule of faults drawn from a seed, and the thread that applies and heals them.

Five kinds of fault, one at a time with quiet gaps between them:

- ``partition-node``: one RabbitMQ node cut from the other two (a minority partition; with
  ``pause_minority`` it pauses, its clients go to the majority);
- ``cut-clients-from-node``: every worker host and the client cut from one node (their connections to it
  stall until heartbeats give up; they fail over to another node of their list);
- ``cut-worker-from-postgres``: one worker host cut from PostgreSQL;
- ``pause-worker``: SIGSTOP of one worker process for longer than two heartbeats, then SIGCONT (the broker
  drops it and hands its deliveries to another instance while it still holds them);
- ``restart-node``: a node's Erlang VM killed (SIGKILL), started again after the fault's time.

``schedule`` is a pure function of the seed and the run's shape, so a run can be repeated exactly: every
round has each kind once, in an order, on targets and for durations drawn from the seed; a round that
would not fit the time left is shortened (its faults' durations scaled towards their minimums).
"""

import dataclasses
import json
import random
import threading
import time

# kind -> (shortest, longest) seconds. A partition outlasts net_ticktime (10 s) so that pause_minority acts;
# a pause outlasts two heartbeats (4 s) so that the broker drops the paused worker.
DURATIONS = {
    "partition-node": (20.0, 35.0),
    "cut-clients-from-node": (12.0, 25.0),
    "cut-worker-from-postgres": (10.0, 25.0),
    "pause-worker": (12.0, 20.0),
    "restart-node": (5.0, 15.0),
}
KINDS = tuple(DURATIONS)
GAP = (5.0, 12.0)  # seconds of quiet between two faults


@dataclasses.dataclass(frozen=True)
class Fault:
    """One planned fault: what, on which host, from ``start`` for ``duration`` seconds (from the run's start)."""

    kind: str
    target: str
    start: float
    duration: float

    @property
    def end(self) -> float:
        return self.start + self.duration


def schedule(seed: int, seconds: float, nodes: list[str], workers: list[str], warmup: float = 15.0,
             tail: float = 25.0) -> list[Fault]:
    """The faults of a run of ``seconds``: none in the first ``warmup`` seconds nor in the last ``tail``."""
    rng = random.Random(seed)
    targets = {"partition-node": nodes, "cut-clients-from-node": nodes, "restart-node": nodes,
               "cut-worker-from-postgres": workers, "pause-worker": workers}
    faults: list[Fault] = []
    t, end = warmup, seconds - tail
    while True:
        kinds = list(KINDS)
        rng.shuffle(kinds)
        plan = [(kind, rng.choice(sorted(targets[kind])), rng.random(), rng.uniform(*GAP)) for kind in kinds]
        shortest = sum(DURATIONS[k][0] + gap for k, _, _, gap in plan)
        extra = sum((DURATIONS[k][1] - DURATIONS[k][0]) * u for k, _, u, _ in plan)
        room = end - t
        if room < shortest:  # not even the shortest round fits: what fits of it at its shortest, then stop
            for kind, target, _, gap in plan:
                low = DURATIONS[kind][0]
                if t + low > end:
                    break
                faults.append(Fault(kind, target, round(t, 3), low))
                t += low + gap
            return faults
        scale = min(1.0, (room - shortest) / extra) if extra else 1.0
        for kind, target, u, gap in plan:
            low, high = DURATIONS[kind]
            duration = round(low + (high - low) * u * scale, 3)
            faults.append(Fault(kind, target, round(t, 3), duration))
            t += duration + gap
        if scale < 1.0:
            return faults


class Nemesis:
    """Applies ``faults`` on time from ``t0`` (an epoch time) through ``actions`` (kind -> target -> heal
    function), writing each one's real start and end to ``log`` (JSON lines) as it goes."""

    def __init__(self, faults: list[Fault], actions: dict, t0: float, log_path, say=print):
        self.faults = faults
        self.actions = actions
        self.t0 = t0
        self.log_path = log_path
        self.applied: list[dict] = []
        self.say = say
        self._stop = threading.Event()
        self._heal = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="nemesis", daemon=True)
        self.error: BaseException | None = None

    def start(self) -> "Nemesis":
        self._thread.start()
        return self

    def _wait_until(self, at: float) -> bool:
        """Sleep until ``at`` seconds after t0; False when stopped meanwhile."""
        return not self._stop.wait(max(0.0, self.t0 + at - time.time()))

    def _run(self) -> None:
        try:
            for fault in self.faults:
                if not self._wait_until(fault.start):
                    return
                record = {"kind": fault.kind, "target": fault.target, "planned_start": fault.start,
                          "planned_duration": fault.duration, "start": time.time()}
                with self._lock:
                    self._heal = self.actions[fault.kind](fault.target)
                self.say(f"fault  {fault.kind} {fault.target} for {fault.duration:.0f}s")
                self._wait_until(fault.end)
                record["healing"] = time.time()
                self._heal_now()
                record["end"] = time.time()
                self.say(f"healed {fault.kind} {fault.target} after {record['end'] - record['start']:.0f}s")
                self._record(record)
        except BaseException as exc:  # noqa: BLE001 - the run reports it and fails
            self.error = exc

    def _heal_now(self) -> None:
        with self._lock:
            heal, self._heal = self._heal, None
        if heal is not None:
            heal()

    def _record(self, record: dict) -> None:
        self.applied.append(record)
        with open(self.log_path, "a") as log:
            log.write(json.dumps(record) + "\n")

    def stop(self) -> None:
        """Stop applying faults and heal the one under way, if any."""
        self._stop.set()
        self._thread.join(timeout=300)
        self._heal_now()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)
