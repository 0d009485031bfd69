"""One chaos run: build the hosts, start the cluster, PostgreSQL, the gateway and the workers, drive
orders through the nemesis's faults, heal, drain, observe, check and report.

Everything the run makes is undone on the way out, whatever happened (an ExitStack: processes stopped,
PostgreSQL and the nodes stopped, namespaces and their veths deleted, the run's temporary folder
removed); SIGTERM and SIGINT unwind it too. Only the report folder stays.
"""

import contextlib
import json
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

from tests.chaos import nemesis as nemesis_module
from tests.chaos import processes, report
from tests.chaos.checker import History, check
from tests.chaos.network import Network, clean
from tests.chaos.nodes import Cluster
from tests.chaos.postgres import Postgres

NODES = ["r1", "r2", "r3"]
WORKER_HOSTS = [host for hosts in processes.WORKERS.values() for host in hosts]
HOSTS = [*NODES, "pg", "gw", "client", *WORKER_HOSTS]
DRAIN_TIMEOUT = 300  # seconds after the heal for every queue to empty
SETTLED_POLLS = 3  # consecutive looks at empty queues that count as drained


class RunError(Exception):
    """The run could not be carried out (set-up failed, a fault could not be applied): not a verdict."""


def say(text: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {text}", flush=True)


@contextlib.contextmanager
def signals_unwind():
    """SIGTERM (as SIGINT) raises KeyboardInterrupt, so that every clean-up of the run runs."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class Run:
    def __init__(self, seed: int, seconds: float, rate: float, out: Path):
        self.seed, self.seconds, self.rate, self.out = seed, seconds, rate, out
        self.logs = out / "logs"
        self.workers: dict[str, processes.Process] = {}
        self.problems: list[str] = []

    def execute(self) -> int:
        if os.geteuid() != 0:
            raise RunError("the chaos run needs root (network namespaces, PostgreSQL as the postgres user)")
        shutil.rmtree(self.out, ignore_errors=True)
        self.logs.mkdir(parents=True)
        removed = clean()
        if removed:
            say(f"removed {len(removed)} namespaces of dead chaos runs")
        with signals_unwind(), contextlib.ExitStack() as stack:
            tmp = Path(tempfile.mkdtemp(prefix=f"edachaos-{os.getpid()}-"))
            tmp.chmod(0o755)  # PostgreSQL runs as postgres under it
            stack.callback(shutil.rmtree, tmp, ignore_errors=True)
            stack.callback(self._keep_server_logs, tmp)  # runs before the folder is removed
            net = Network(HOSTS)
            stack.callback(net.destroy)
            net.create()
            say(f"{len(HOSTS)} hosts in namespaces {net.hosts['r1'].netns.rsplit('-', 1)[0]}-*")
            cluster = Cluster([net[n] for n in NODES], tmp / "rabbitmq")
            stack.callback(cluster.stop)
            cluster.start()
            say("three RabbitMQ nodes clustered (pause_minority)")
            pg = Postgres(net["pg"], tmp / "postgres")
            stack.callback(pg.stop)
            pg.start()
            urls = [node.url for node in cluster.nodes]
            client_url = processes.failover_url(urls, self.seed)
            gateway = processes.python_module("gateway", net["gw"], "tests.chaos.gateway",
                                              ["--host", net["gw"].address, "--port", str(processes.GATEWAY_PORT),
                                               "--log", str(self.out / "gateway.jsonl"),
                                               "--latency", str(processes.GATEWAY_LATENCY)], self.logs)
            stack.callback(gateway.stop)
            gateway.start().wait_for_log(lambda r: r.get("message") == "serving", 60, "the gateway serving")
            self._run_module("spy", net["client"], "tests.chaos.observe", ["--url", client_url, "--declare-spy"])
            self._start_workers(net, urls, pg.url, stack)
            say("workers consuming: " + ", ".join(self.workers))
            return self._drive(net, cluster, client_url, pg.url, stack)

    def _keep_server_logs(self, tmp: Path) -> None:
        """The nodes' and PostgreSQL's logs into the report folder, before the run's folder goes."""
        for log in [*tmp.glob("rabbitmq/*/log/*.log"), tmp / "postgres" / "server.log"]:
            if log.is_file():
                name = log.name if log.parent.name != "log" else f"{log.parent.parent.name}-{log.name}"
                shutil.copy(log, self.logs / name)

    def _run_module(self, name, host, module, args, timeout=300) -> None:
        process = processes.python_module(name, host, module, args, self.logs).start()
        try:
            code = process.proc.wait(timeout)
        except Exception:
            process.stop()
            raise
        if code != 0:
            raise RunError(f"{module} exited {code}: {process.log.read_text(errors='replace')[-3000:]}")

    def _start_workers(self, net, urls, database_url, stack) -> None:
        gateway_url = f"http://{net['gw'].address}:{processes.GATEWAY_PORT}"
        for name, hosts in processes.WORKERS.items():
            for index, host in enumerate(hosts):
                worker = processes.worker(name, net[host], len(self.workers), urls, database_url, gateway_url,
                                          self.logs)
                stack.callback(worker.stop)
                self.workers[host] = worker.start()
        for host, worker in self.workers.items():
            processes.wait_consuming(worker, worker.argv[-1], timeout=180)

    def _actions(self, net: Network, cluster: Cluster) -> dict:
        nodes = dict(zip(NODES, cluster.nodes))
        clients = [*WORKER_HOSTS, "client"]

        def partition(target):
            others = [n for n in NODES if n != target]
            net.cut_groups([target], others)
            return lambda: net.heal_groups([target], others)

        def cut_clients(target):
            net.cut_groups(clients, [target])
            return lambda: net.heal_groups(clients, [target])

        def cut_from_postgres(target):
            net.cut(target, "pg")
            return lambda: net.heal(target, "pg")

        def pause(target):
            self.workers[target].pause()
            return self.workers[target].resume

        def restart(target):
            nodes[target].kill()

            def start_again():
                nodes[target].start()
                nodes[target].wait_up()
            return start_again

        return {"partition-node": partition, "cut-clients-from-node": cut_clients,
                "cut-worker-from-postgres": cut_from_postgres, "pause-worker": pause, "restart-node": restart}

    def _drive(self, net, cluster, client_url, database_url, stack) -> int:
        faults = nemesis_module.schedule(self.seed, self.seconds, NODES, WORKER_HOSTS)
        (self.out / "schedule.json").write_text(json.dumps([f.__dict__ for f in faults], indent=1))
        history_path = self.out / "load.jsonl"
        load = processes.python_module("load", net["client"], "tests.chaos.load",
                                       ["--url", client_url, "--rate", str(self.rate), "--seconds", str(self.seconds),
                                        "--seed", str(self.seed), "--out", str(history_path)], self.logs)
        stack.callback(load.stop)
        load.start()
        t0 = self._wait_start(history_path, load)
        say(f"orders flowing at {self.rate:g}/s for {self.seconds:g}s; {len(faults)} faults planned")
        nemesis = nemesis_module.Nemesis(faults, self._actions(net, cluster), t0, self.out / "faults.jsonl", say=say)
        stack.callback(nemesis.stop)
        nemesis.start()
        code = load.proc.wait(self.seconds + processes.RECONNECT_WINDOW + 120)
        if code != 0:
            self.problems.append(f"the load exited {code} (see logs/load.log)")
        nemesis.stop()
        if nemesis.error:
            raise RunError(f"the nemesis failed: {nemesis.error!r}")
        net.heal_all()
        for worker in self.workers.values():
            worker.resume()
        say("healed; waiting for the cluster and the queues to drain")
        cluster.wait_healthy()
        self._drain(cluster)
        for host, worker in self.workers.items():
            if not worker.alive():
                self.problems.append(f"worker {host} exited {worker.proc.returncode} during the run "
                                     f"(see logs/{host}.log)")
            worker.stop()
        queues = [q["name"] for q in cluster.queues() if q["name"] != "chaos.spy" and q.get("messages")]
        self._run_module("observe", net["client"], "tests.chaos.observe",
                         ["--url", client_url, "--database-url", database_url, "--queues", ",".join(queues),
                          "--out", str(self.out / "observed.json")])
        history = self._history(history_path)
        verdict = check(history)
        verdict.violations[:0] = self.problems
        data = report.write(self.out, {"seed": self.seed, "seconds": self.seconds, "rate": self.rate}, history, verdict,
                            nemesis.applied, t0)
        print((self.out / "summary.md").read_text(), flush=True)
        say(f"report in {self.out} (summary.md, summary.json, throughput.png, logs/)")
        return 0 if data["verdict"]["ok"] else 1

    def _wait_start(self, history_path: Path, load) -> float:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if history_path.exists():
                for line in history_path.read_text().splitlines():
                    record = json.loads(line)
                    if record["kind"] == "start":
                        return record["at"]
            if not load.alive():
                break
            time.sleep(0.2)
        raise RunError(f"the load did not start: {load.log.read_text(errors='replace')[-3000:]}")

    def _drain(self, cluster: Cluster) -> None:
        deadline, settled = time.monotonic() + DRAIN_TIMEOUT, 0
        while time.monotonic() < deadline and settled < SETTLED_POLLS:
            busy = {q["name"]: q["messages"] for q in cluster.queues()
                    if q["name"] != "chaos.spy" and not q["name"].endswith(".dlq") and q.get("messages")}
            settled = 0 if busy else settled + 1
            time.sleep(2)
        if settled < SETTLED_POLLS:
            say(f"queues still busy after {DRAIN_TIMEOUT}s: {busy}")

    def _history(self, history_path: Path) -> History:
        records = [json.loads(line) for line in history_path.read_text().splitlines()]
        observed = json.loads((self.out / "observed.json").read_text())
        gateway_path = self.out / "gateway.jsonl"
        gateway = [json.loads(line) for line in gateway_path.read_text().splitlines()] if gateway_path.exists() else []
        stock = {r["sku"]: r["quantity"] for r in records if r["kind"] == "stock"}
        return History(orders=[r for r in records if r["kind"] == "order"], stock=stock,
                       events=observed["events"], tables=observed["tables"], gateway=gateway,
                       queues=observed["queues"],
                       others=[r for r in records if r["kind"] == "failed"])


def run(seed: int, seconds: float, rate: float, out: Path) -> int:
    try:
        return Run(seed, seconds, rate, out).execute()
    except KeyboardInterrupt:
        say("interrupted: everything the run made is removed")
        return 130

