"""A worker process hides what its start-up made from the garbage collector (gc.freeze): a full collection
then walks only what events made since, not the ~30,000 objects of modules, contracts and workers (10-15 ms
of CPU each time, every event in flight waiting). A Runner on a thread of another program leaves that
program's objects alone. Each case runs in a process of its own, on eda's in-memory broker."""

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import gc, sys, tempfile, threading
    from eda import Settings, Worker, handles, running
    from eda.middleware import Middleware
    from eda.runtime.runner import Runner

    class Quiet(Worker):
        name = "quiet"
        inline = True

        @handles("order.placed")
        def ignore(self, event, ctx):
            pass

    class Report(Middleware):
        def on_ready(self, runner):
            print("frozen at ready:", gc.get_freeze_count(), flush=True)
            runner.stop()

    settings = Settings(broker_url="memory://", namespace="gcfreeze", state_dir=tempfile.mkdtemp())
    if sys.argv[1] == "process":
        sys.exit(Runner([Quiet], settings, middleware=[Report()]).run())
    with running(Quiet, settings=settings):
        print("frozen at ready:", gc.get_freeze_count(), flush=True)
""")


def frozen_at_ready(how: str) -> int:
    out = subprocess.run([sys.executable, "-c", SCRIPT, how], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    line = next(line for line in out.stdout.splitlines() if line.startswith("frozen at ready:"))
    return int(line.split(":")[1])


def test_a_worker_process_freezes_its_start_up_objects_before_it_consumes():
    assert frozen_at_ready("process") > 10_000


def test_workers_on_a_thread_of_another_program_leave_its_objects_to_the_collector():
    assert frozen_at_ready("thread") == 0
