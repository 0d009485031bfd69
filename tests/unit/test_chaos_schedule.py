"""The nemesis's schedule: a pure function of the seed, one fault at a time, inside the run, each kind in
every round, and the applier's log of real start and end times."""

import json
import time

import pytest

from tests.chaos.nemesis import DURATIONS, KINDS, Fault, Nemesis, schedule

NODES = ["r1", "r2", "r3"]
WORKERS = ["pay1", "pay2", "inv1", "inv2", "ship1", "ship2", "ledger"]


def test_the_same_seed_gives_the_same_schedule_and_another_seed_another():
    assert schedule(7, 300, NODES, WORKERS) == schedule(7, 300, NODES, WORKERS)
    assert schedule(7, 300, NODES, WORKERS) != schedule(8, 300, NODES, WORKERS)


@pytest.mark.parametrize("seed", range(1, 21))
def test_faults_never_overlap_and_stay_between_the_warmup_and_the_tail(seed):
    faults = schedule(seed, 600, NODES, WORKERS, warmup=15, tail=25)
    assert faults[0].start == 15
    for before, after in zip(faults, faults[1:]):
        assert after.start >= before.end + 5  # the shortest quiet gap
    assert faults[-1].end <= 600 - 25
    for fault in faults:
        low, high = DURATIONS[fault.kind]
        assert low <= fault.duration <= high
        assert fault.target in (NODES if fault.kind in ("partition-node", "cut-clients-from-node", "restart-node")
                                else WORKERS)


@pytest.mark.parametrize("seed", range(1, 21))
def test_a_short_run_has_every_kind_of_fault_once(seed):
    # The .ci/run's run: 180 s; the first round is shortened to fit rather than cut off
    kinds = [f.kind for f in schedule(seed, 180, NODES, WORKERS)]
    assert sorted(kinds[:len(KINDS)]) == sorted(KINDS)


def test_a_long_run_repeats_every_kind_on_varied_targets():
    faults = schedule(3, 1800, NODES, WORKERS)
    assert len(faults) >= 5 * len(KINDS)
    for kind in KINDS:
        assert len({f.target for f in faults if f.kind == kind}) >= 2


def test_the_nemesis_applies_and_heals_each_fault_in_turn_and_logs_its_real_times(tmp_path):
    events = []

    def action(kind):
        def apply(target):
            events.append(("cut", kind, target))
            return lambda: events.append(("heal", kind, target))
        return apply

    faults = [Fault("pause-worker", "pay1", 0.05, 0.1), Fault("restart-node", "r2", 0.3, 0.1)]
    t0 = time.time()
    nemesis = Nemesis(faults, {k: action(k) for k in KINDS}, t0, tmp_path / "faults.jsonl", say=lambda _: None)
    nemesis.start().join(timeout=5)
    assert events == [("cut", "pause-worker", "pay1"), ("heal", "pause-worker", "pay1"),
                      ("cut", "restart-node", "r2"), ("heal", "restart-node", "r2")]
    logged = [json.loads(line) for line in (tmp_path / "faults.jsonl").read_text().splitlines()]
    assert [(r["kind"], r["target"]) for r in logged] == [("pause-worker", "pay1"), ("restart-node", "r2")]
    for record, fault in zip(logged, faults):  # never before the planned times, however late the thread runs
        assert record["start"] >= t0 + fault.start and record["end"] >= t0 + fault.end


def test_stopping_the_nemesis_mid_fault_heals_it(tmp_path):
    healed = []
    nemesis = Nemesis([Fault("pause-worker", "pay1", 0.0, 60)],
                      {"pause-worker": lambda target: (lambda: healed.append(target))}, time.time(),
                      tmp_path / "faults.jsonl", say=lambda _: None).start()
    time.sleep(0.2)
    nemesis.stop()
    assert healed == ["pay1"]
