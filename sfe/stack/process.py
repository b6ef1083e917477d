"""Daemon processes of the local stack: start detached, remember by PID, stop by PID only.

A service is identified by a pid file in the state folder *and* a marker that must
appear in the process's command line, so a recycled PID of some other program is
never mistaken for ours and never signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path


class StackError(RuntimeError):
    """The local stack cannot be brought up, inspected or stopped; the message says why."""


@dataclass(frozen=True)
class ServiceStatus:
    """What `sfe stack status` prints for one service."""

    name: str
    pid: int | None
    url: str
    running: bool

    def line(self) -> str:
        """One human-readable status line."""
        state = f"running  pid={self.pid}" if self.running else "stopped"
        return f"{self.name:<10} {state:<20} {self.url}"


def read_pid(pid_file: Path) -> int | None:
    """The PID stored in ``pid_file`` (first line), or None when absent or unreadable."""
    try:
        first_line = pid_file.read_text().splitlines()[0]
        return int(first_line.strip())
    except (FileNotFoundError, IndexError, ValueError):
        return None


def is_our_process(pid: int | None, marker: str) -> bool:
    """True when ``pid`` is alive and its command line contains ``marker``."""
    if pid is None or pid <= 0:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    # Field 3 of /proc/<pid>/stat is the state; a zombie has exited already.
    if stat.rsplit(")", 1)[1].split()[0] == "Z":
        return False
    return marker in cmdline


def spawn_daemon(
    argv: Sequence[str], log_file: Path, pid_file: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own session with output to ``log_file``; record its PID in ``pid_file``."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    pid_file.write_text(f"{process.pid}\n")
    return process


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when a TCP connection to ``host:port`` succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(
    condition: Callable[[], bool],
    timeout: float,
    what: str,
    alive: Callable[[], bool] | None = None,
    log_file: Path | None = None,
) -> None:
    """Poll ``condition`` until true; fail early when ``alive`` turns false, or at ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if alive is not None and not alive():
            raise StackError(f"{what}: the process exited during start-up{_log_hint(log_file)}")
        time.sleep(0.25)
    raise StackError(f"{what}: not ready after {timeout:.0f} s{_log_hint(log_file)}")


def stop_pid(pid: int, marker: str, sig: int = signal.SIGTERM, timeout: float = 60.0) -> None:
    """Signal our process ``pid`` and wait for it to exit; SIGKILL it if it outlives ``timeout``."""
    if not is_our_process(pid, marker):
        return
    os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_our_process(pid, marker):
            _reap(pid)
            return
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)
    while is_our_process(pid, marker):
        time.sleep(0.1)
    _reap(pid)


def _reap(pid: int) -> None:
    """Collect the exit status when ``pid`` is our own child (no-op otherwise)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _log_hint(log_file: Path | None) -> str:
    if log_file is None or not log_file.exists():
        return ""
    tail = log_file.read_text(errors="replace").splitlines()[-15:]
    return f"; last lines of {log_file}:\n  " + "\n  ".join(tail)
