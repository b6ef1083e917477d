"""The faults a soak injects, and the supervisor that restarts what they kill.

:class:`Supervised` wraps the demo's :class:`~sfe.demo.processes.Children`: a child
that exits (killed by a fault, or fallen over because its broker or database went
away) is started again with the same command line, as systemd or Kubernetes would,
and every restart is counted. :class:`FaultInjector` is a thread that, every
``interval`` seconds after the previous one, injects the next fault of its schedule
and records what it did.

Fault kinds (:data:`FAULT_KINDS`, in the order of the schedule):

- ``worker_kill``: SIGKILL the workflow worker (first, then after every two other faults);
- ``service_kill``: SIGKILL the ingestor, the Salesforce sink or the PostgreSQL
  projection, in turn;
- ``replay_expired``: the ingestor is stopped, the org keeps changing, every retained
  event is purged, then the ingestor starts again from a replay id that no longer exists;
- ``broker_restart``: stop the soak's Kafka broker (controlled shutdown), wait, start it;
- ``sf_5xx``: the pipeline's next API calls fail with 503 or 500;
- ``postgres_restart``: stop the soak's PostgreSQL (fast shutdown), wait, start it;
- ``sf_limit``: the pipeline's next API calls fail with ``REQUEST_LIMIT_EXCEEDED``;
- ``stream_drop``: the simulator closes every pending CometD long-poll;
- ``unknown_client``: the simulator forgets every CometD client (``403::Unknown client``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from sfe.demo.processes import Child, Children
from sfe.reliability.stack import PrivateStack

log = logging.getLogger(__name__)

#: Every kind, in the order of the schedule (slow ones spread out, none last).
FAULT_KINDS = (
    "worker_kill",
    "service_kill",
    "replay_expired",
    "broker_restart",
    "sf_5xx",
    "postgres_restart",
    "sf_limit",
    "stream_drop",
    "unknown_client",
)
#: The pipeline's client name in ``Sforce-Call-Options`` (Salesforce faults target it).
PIPELINE_CLIENT = "sfe-pipeline"
#: How long a Salesforce fault waits for the pipeline's next call to fail.
SALESFORCE_FAULT_WAIT_SECONDS = 20.0
#: Seconds the ingestor stays down before the purge (the org keeps changing meanwhile).
REPLAY_STOP_SECONDS = 6.0
#: Services ``service_kill`` takes turns on.
KILLABLE_SERVICES = ("ingest", "sink", "projection")


_ERROR_LINE = re.compile(r"^(?:[\w.]+\.)?\w*(?:Error|Exception|Exit)\b.*$", re.MULTILINE)


def last_error(text: str) -> str:
    """The last ``SomeError: message`` line of a log (a traceback's last line), or ``""``."""
    found = _ERROR_LINE.findall(text)
    return found[-1].strip()[:300] if found else ""


def _cmdline(pid: int) -> list[str]:
    raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    return [part.decode() for part in raw.split(b"\0") if part]


@dataclass
class Supervised(Children):
    """Children that are started again when they exit; restarts are counted by name."""

    #: Each service's ``sfe`` arguments (read from its command line when adopted).
    args: dict[str, list[str]] = field(default_factory=dict)
    restarts: Counter[str] = field(default_factory=Counter)
    #: Services deliberately kept down (not restarted) for a while.
    held: set[str] = field(default_factory=set)
    #: Exits nobody asked for: (service, exit code, the last error line of its log).
    crashes: list[tuple[str, int, str]] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)

    @classmethod
    def adopt(cls, children: Children) -> Supervised:
        """Supervise the running ``children`` (sharing their lists)."""
        supervised = cls(
            children.folder,
            children.env,
            children.die_with_parent,
            children.started,
            children.running_once,
        )
        for child in children.started:
            argv = _cmdline(child.pid)
            supervised.args[child.name] = argv[argv.index("sfe.cli") + 1 :]
        return supervised

    def check(self) -> None:
        """Start again every service that exited (unless held down)."""
        with self.lock:
            for index, child in enumerate(self.started):
                if child.name in self.held or child.process.poll() is None:
                    continue
                code = int(child.process.returncode or 0)
                self.crashes.append((child.name, code, last_error(child.output(20_000))))
                log.warning("%s exited with %s: starting it again", child.name, code)
                self.started[index] = self._restart(child)

    def _restart(self, child: Child) -> Child:
        self.restarts[child.name] += 1
        # No parent-death signal here: other threads run (see Children.start); stop_all
        # still stops the new process by PID.
        return self._popen(child.name, self.args[child.name], die_with_parent=False)

    def kill(self, name: str, signum: int = signal.SIGKILL) -> int:
        """Signal the service ``name``, wait for it to die, start it again; its old PID."""
        with self.lock:
            child = self.get(name)
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signum)
            child.process.wait(60)
            if name not in self.held:
                self.started[self.started.index(child)] = self._restart(child)
            return child.pid

    def hold(self, name: str) -> None:
        """Stop ``name`` with SIGTERM and keep it down until :meth:`release`."""
        with self.lock:
            self.held.add(name)
            child = self.get(name)
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGTERM)
            try:
                child.process.wait(60)
            except Exception:
                os.kill(child.pid, signal.SIGKILL)
                child.process.wait(30)

    def release(self, name: str) -> None:
        """Start ``name`` again after :meth:`hold`."""
        with self.lock:
            self.held.discard(name)
            child = self.get(name)
            self.started[self.started.index(child)] = self._restart(child)


@dataclass
class Injected:
    """One fault injected: its kind, when (seconds into the run) and what it did."""

    kind: str
    at: float
    detail: str
    seconds: float = 0.0


@dataclass
class Org:
    """How the soak reaches its org simulator's admin endpoint and state file."""

    base_url: str
    ca_file: str
    sqlite_file: Path

    def fault(self, **body: Any) -> dict[str, Any]:
        """``POST /_sim/faults`` with ``body``; the simulator's answer."""
        response = requests.post(
            f"{self.base_url}/_sim/faults", json=body, verify=self.ca_file, timeout=10
        )
        response.raise_for_status()
        return dict(response.json())

    def status(self) -> dict[str, Any]:
        """``GET /_sim/status``."""
        response = requests.get(f"{self.base_url}/_sim/status", verify=self.ca_file, timeout=10)
        response.raise_for_status()
        return dict(response.json())

    def events(self) -> list[tuple[str, int, str, str]]:
        """Every retained event in the org's SQLite file: (stream, replay id, channel, payload)."""
        with contextlib.closing(
            sqlite3.connect(f"file:{self.sqlite_file}?mode=ro", uri=True, timeout=30)
        ) as conn:
            rows = conn.execute("SELECT stream, replay_id, channel, payload FROM events")
            return [(str(s), int(r), str(c), str(p)) for s, r, c, p in rows]


class FaultInjector(threading.Thread):
    """Injects the faults of ``kinds`` in turn, one every ``interval`` seconds."""

    def __init__(
        self,
        kinds: Sequence[str],
        interval: float,
        children: Supervised,
        stack: PrivateStack,
        org: Org,
        keep_events: Callable[[], None],
        stop: threading.Event,
        echo: Callable[[str], None],
    ) -> None:
        """``keep_events`` copies the org's retained events before a purge."""
        super().__init__(name="soak-faults", daemon=True)
        unknown = set(kinds) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds: {', '.join(sorted(unknown))}")
        self.schedule = schedule(kinds)
        self.interval = interval
        self.children = children
        self.stack = stack
        self.org = org
        self.keep_events = keep_events
        self.stop = stop
        self.echo = echo
        self.started_at = time.monotonic()
        #: Held while something must not be disturbed (the churn batch runs).
        self.quiet = threading.Lock()
        self.injected: list[Injected] = []
        self.error: BaseException | None = None
        #: Pipeline API calls the Salesforce faults actually failed (the org counted down).
        self.failed_calls = 0
        self._armed = 0
        self._turn = 0
        self._service_turn = 0
        self._status_turn = 0

    def counts(self) -> Counter[str]:
        """Faults injected so far, by kind."""
        return Counter(fault.kind for fault in self.injected)

    def run(self) -> None:
        """Inject until stopped; an error ends the injection and is kept in :attr:`error`."""
        try:
            while not self.stop.wait(self.interval):
                if not self.schedule:
                    return
                kind = self.schedule[self._turn % len(self.schedule)]
                self._turn += 1
                with self.quiet:
                    if self.stop.is_set():
                        return
                    self.inject(kind)
        except BaseException as exc:
            log.exception("fault injection failed")
            self.error = exc

    def _count_armed(self) -> None:
        """Add the armed Salesforce failures used up so far to :attr:`failed_calls`."""
        if self._armed:
            remaining = int(self.org.status().get("fail_next", 0))
            self.failed_calls += self._armed - remaining
            self._armed = 0

    def disarm(self) -> None:
        """Count the armed Salesforce failures that were used up, and disarm the rest.

        Armed failures otherwise wait for the pipeline's next calls, whenever they come.
        """
        self._count_armed()
        self.org.fault(action="clear")

    def inject(self, kind: str) -> Injected:
        """Inject one fault of ``kind`` now."""
        began = time.monotonic()
        detail = getattr(self, f"_{kind}")()
        fault = Injected(kind, began - self.started_at, detail, time.monotonic() - began)
        self.injected.append(fault)
        self.echo(f"[{fault.at:5.0f}s fault] {kind}: {detail} ({fault.seconds:.1f} s)")
        return fault

    def _worker_kill(self) -> str:
        pid = self.children.kill("worker")
        return f"SIGKILL worker PID {pid}, started again as {self.children.get('worker').pid}"

    def _service_kill(self) -> str:
        name = KILLABLE_SERVICES[self._service_turn % len(KILLABLE_SERVICES)]
        self._service_turn += 1
        pid = self.children.kill(name)
        return f"SIGKILL {name} PID {pid}, started again as {self.children.get(name).pid}"

    def _broker_restart(self) -> str:
        before = self.stack.pids()["kafka"]
        self.stack.restart_broker(down_seconds=5)
        return f"broker PID {before} stopped, down 5 s, now PID {self.stack.pids()['kafka']}"

    def _postgres_restart(self) -> str:
        before = self.stack.pids()["postgres"]
        self.stack.restart_postgres(down_seconds=3)
        return f"postgres PID {before} stopped, down 3 s, now PID {self.stack.pids()['postgres']}"

    def _stream_drop(self) -> str:
        return f"dropped {self.org.fault(action='drop_connections')['dropped']} long-polls"

    def _unknown_client(self) -> str:
        answer = self.org.fault(action="forget_clients")
        return f"forgot {answer['forgotten']} CometD clients (dropped {answer['dropped']})"

    def _sf_5xx(self) -> str:
        status = (503, 500)[self._status_turn % 2]
        self._status_turn += 1
        return self._arm(status, f"the pipeline's next 5 API calls answer {status}")

    def _sf_limit(self) -> str:
        return self._arm(403, "the pipeline's next 5 API calls answer 403 REQUEST_LIMIT_EXCEEDED")

    def _arm(self, status: int, what: str) -> str:
        """Arm 5 failures of the pipeline's calls and wait (up to 20 s) for one to bite.

        Without the wait, failures armed while the pipeline happens to make no call (its
        sink restarting after another fault) would be disarmed unused at the end.
        """
        self._count_armed()
        self.org.fault(action="fail_next", count=5, status=status, client=PIPELINE_CLIENT)
        self._armed = 5
        deadline = time.monotonic() + SALESFORCE_FAULT_WAIT_SECONDS
        while time.monotonic() < deadline and not self.stop.is_set():
            if int(self.org.status().get("fail_next", 0)) < self._armed:
                return what + " (biting)"
            time.sleep(0.5)
        return what + f" (no pipeline call within {SALESFORCE_FAULT_WAIT_SECONDS:g} s)"

    def _replay_expired(self) -> str:
        self.children.hold("ingest")
        try:
            time.sleep(REPLAY_STOP_SECONDS)  # the workload goes on changing the org
            self.keep_events()
            self.org.fault(action="purge_events", older_than_seconds=0)
        finally:
            self.children.release("ingest")
        return (
            f"ingest stopped for {REPLAY_STOP_SECONDS:g} s, every retained event purged, "
            "ingest started again"
        )


def schedule(kinds: Sequence[str]) -> list[str]:
    """The order faults are injected in: a worker kill first and after every two others."""
    others = [kind for kind in FAULT_KINDS if kind in kinds and kind != "worker_kill"]
    if "worker_kill" not in kinds:
        return others
    steps: list[str] = []
    for index, kind in enumerate(others):
        if index % 2 == 0:
            steps.append("worker_kill")
        steps.append(kind)
    return steps or ["worker_kill"]
