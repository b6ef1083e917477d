"""The demo's child processes: each ``sfe`` command with its own log file, stopped by PID.

Children start in a session of their own, so a Ctrl-C in the terminal reaches only the
demo, which then stops them in order (the simulator last, since the others talk to
it). Unless the demo is asked to leave them running, each child also gets the Linux
parent-death signal, so even a demo killed with SIGKILL leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

_METRICS_URL = re.compile(r"metrics at (http://\S+?)/metrics")
_PR_SET_PDEATHSIG = 1
#: Seconds a child gets between SIGTERM and SIGKILL.
STOP_TIMEOUT_SECONDS = 40.0


class DemoError(RuntimeError):
    """The demo cannot go on; the message says what failed and where its log is."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(host: str, port: int) -> bool:
    """Whether ``port`` can be bound on ``host``."""
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


@dataclass
class Child:
    """One running ``sfe`` command."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        """The process id."""
        return self.process.pid

    def alive(self) -> bool:
        """Whether the process still runs."""
        return self.process.poll() is None

    def output(self, tail: int = 4000) -> str:
        """The end of what the process printed."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return text[-tail:]

    def metrics_url(self) -> str | None:
        """The ``/metrics`` URL the process announced, once it did."""
        match = _METRICS_URL.search(self.output(100_000))
        return f"{match.group(1)}/metrics" if match else None


@dataclass
class Children:
    """The demo's processes, started from one environment, stopped together."""

    folder: Path
    env: Mapping[str, str]
    die_with_parent: bool = True
    #: The long-running children (services), in start order.
    started: list[Child] = field(default_factory=list)
    #: Commands that run to their end (``sfe churn run``), while they run.
    running_once: list[Child] = field(default_factory=list)

    def _popen(self, name: str, args: Sequence[str], die_with_parent: bool) -> Child:
        log = self.folder / f"{name}.log"
        with log.open("ab") as handle:
            process = subprocess.Popen(
                [sys.executable, "-m", "sfe.cli", *args],
                env=dict(self.env),
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if die_with_parent else None,
            )
        return Child(name, process, log)

    def start(self, name: str, args: Sequence[str]) -> Child:
        """Start ``sfe <args>`` as a service, its output in ``<folder>/<name>.log``.

        Start services before any other thread of the demo runs: the parent-death
        signal is set between fork and exec, which is only safe without threads.
        """
        child = self._popen(name, args, self.die_with_parent)
        self.started.append(child)
        return child

    def run_once(self, name: str, args: Sequence[str], timeout: float) -> tuple[int, str]:
        """Run ``sfe <args>`` to its end (killed after ``timeout``); its exit code and output."""
        child = self._popen(name, args, die_with_parent=False)  # may run beside threads
        self.running_once.append(child)
        try:
            code = child.process.wait(timeout)
        except subprocess.TimeoutExpired:
            _stop([child])
            code = child.process.wait()
        finally:
            self.running_once.remove(child)
        return code, child.output(100_000)

    def get(self, name: str) -> Child:
        """The child started under ``name``."""
        for child in self.started:
            if child.name == name:
                return child
        raise KeyError(name)

    def check(self) -> None:
        """Raise :class:`DemoError` naming the first child that exited."""
        for child in self.started:
            code = child.process.poll()
            if code is not None:
                raise DemoError(
                    f"{child.name} exited with code {code}; its log is {child.log}:\n"
                    + _indent(child.output(1500))
                )

    def wait_for(
        self, what: str, condition: Callable[[], object], timeout: float, interval: float = 0.25
    ) -> None:
        """Poll ``condition`` until it holds; :class:`DemoError` on time-out or a dead child."""
        deadline = time.monotonic() + timeout
        while True:
            self.check()
            try:
                if condition():
                    return
            except Exception:  # not up yet: connection refused, half-written log, ...
                pass
            if time.monotonic() > deadline:
                raise DemoError(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(interval)

    def pids(self) -> dict[str, int]:
        """Each child's PID by name."""
        return {child.name: child.pid for child in self.started}

    def stop_all(self, last: Sequence[str] = ("simulator",)) -> list[str]:
        """SIGTERM every child (those named in ``last`` after the others), SIGKILL stragglers.

        Returns the names of children that had to be killed.
        """
        first = [*self.running_once, *(c for c in self.started if c.name not in last)]
        final = [c for c in self.started if c.name in last]
        killed = _stop(first) + _stop(final)
        return killed


def _stop(children: Sequence[Child]) -> list[str]:
    for child in children:
        if child.alive():
            _signal(child, signal.SIGTERM)
    killed: list[str] = []
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    for child in children:
        try:
            child.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal(child, signal.SIGKILL)
            child.process.wait(30)
            killed.append(child.name)
    return killed


def _signal(child: Child, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(child.pid, signum)  # by PID: the child itself, nothing else


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.strip().splitlines())
