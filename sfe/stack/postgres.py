"""A PostgreSQL cluster owned by the project: initdb into the state folder, own port, loopback only.

The cluster listens on the host and port of ``SFE_DATABASE_URL`` and gets that URL's
role (with its password, scram-sha-256 over TCP) and database. The superuser is
reachable only through a Unix socket inside the state folder. PostgreSQL refuses to
run as root, so when we are root the server runs as the unprivileged ``postgres``
account (``setpriv`` execs it directly, so the PID we record is the postmaster's);
if that account cannot reach the state folder, the cluster's data lives under
``/var/tmp/sfe-postgres-<hash of the state folder>`` and the state folder records where.
"""

from __future__ import annotations

import glob
import hashlib
import os
import pwd
import shutil
import stat
import subprocess
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from sfe.settings import Settings
from sfe.stack.process import (
    ServiceStatus,
    StackError,
    is_our_process,
    port_open,
    read_pid,
    spawn_daemon,
    stop_pid,
    wait_until,
)

SUPERUSER = "postgres"
_RUN_AS_WHEN_ROOT = "postgres"


class PostgresCluster:
    """Lifecycle of the project's PostgreSQL cluster."""

    name = "postgres"

    def __init__(self, settings: Settings) -> None:
        """Bind the cluster to ``settings`` (URL, binaries, state folder)."""
        self.settings = settings
        self.home = settings.state_dir / "postgres"
        self.log_file = self.home / "postgres.log"
        cluster_root = _cluster_root(self.home, self._run_as_account())
        self.data_dir = cluster_root / "data"
        self.socket_dir = cluster_root / "run"
        url = make_url(settings.sqlalchemy_url())
        self.host = url.host or "127.0.0.1"
        self.port = url.port or 5432
        self.role = url.username or "sfe"
        self.password = url.password
        self.database = url.database or "sfe"

    @property
    def url(self) -> str:
        """Connection URL without the password."""
        return f"postgresql://{self.role}@{self.host}:{self.port}/{self.database}"

    @property
    def pid_file(self) -> Path:
        """PostgreSQL's own pid file: the postmaster's PID on its first line."""
        return self.data_dir / "postmaster.pid"

    @property
    def marker(self) -> str:
        """Command-line fragment that identifies our postmaster."""
        return f"-D {self.data_dir}"

    def status(self) -> ServiceStatus:
        """Whether our postmaster runs, with its PID and URL."""
        pid = read_pid(self.pid_file)
        return ServiceStatus(self.name, pid, self.url, is_our_process(pid, self.marker))

    def start(self, timeout: float = 60.0) -> bool:
        """Initialise (first time) and start the cluster; return True when it was started now."""
        if self.status().running:
            self._ensure_role_and_database()
            return False
        if self.host not in {"127.0.0.1", "localhost"}:
            raise StackError(
                f"SFE_DATABASE_URL points at {self.host}; the local stack runs PostgreSQL on 127.0.0.1 only"
            )
        if port_open(self.host, self.port):
            raise StackError(
                f"port {self.port} is taken by a server that is not ours; stop it or "
                "set SFE_DATABASE_URL to another port"
            )
        if self.password is None:
            raise StackError("SFE_DATABASE_URL has no password; the project role needs one")
        bin_dir = self._bin_dir()
        run_as = self._run_as()
        self._prepare_dirs(run_as)
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb(bin_dir, run_as)
        argv = [
            *self._as_user(run_as),
            str(bin_dir / "postgres"),
            "-D",
            str(self.data_dir),
            "-c",
            f"listen_addresses={self.host if self.host != 'localhost' else '127.0.0.1'}",
            "-c",
            f"port={self.port}",
            "-c",
            f"unix_socket_directories={self.socket_dir}",
            "-c",
            "max_connections=200",
            "-c",
            "fsync=on",
        ]
        process = spawn_daemon(argv, self.log_file, self.home / "launcher.pid")
        wait_until(
            self._ready,
            timeout,
            "postgres",
            alive=lambda: process.poll() is None,
            log_file=self.log_file,
        )
        self._ensure_role_and_database()
        return True

    def stop(self) -> bool:
        """Fast-shutdown our postmaster by PID; return True when one was running."""
        pid = read_pid(self.pid_file)
        if not is_our_process(pid, self.marker):
            return False
        assert pid is not None
        import signal

        stop_pid(pid, self.marker, sig=signal.SIGINT, timeout=60.0)
        (self.home / "launcher.pid").unlink(missing_ok=True)
        return True

    def superuser_conninfo(self) -> str:
        """Libpq conninfo for the superuser over the private Unix socket."""
        return f"host={self.socket_dir} port={self.port} user={SUPERUSER} dbname=postgres"

    def _ready(self) -> bool:
        try:
            with psycopg.connect(self.superuser_conninfo(), connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    def _ensure_role_and_database(self) -> None:
        """Create the project role and database from SFE_DATABASE_URL when missing."""
        with psycopg.connect(self.superuser_conninfo(), autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_roles WHERE rolname = %s", (self.role,)
            ).fetchone()
            verb = "ALTER" if exists else "CREATE"
            conn.execute(
                sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(self.role), sql.Literal(self.password)
                )
            )
            has_db = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)
            ).fetchone()
            if not has_db:
                conn.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(self.database), sql.Identifier(self.role)
                    )
                )

    def _bin_dir(self) -> Path:
        """Directory with initdb and postgres, or a StackError saying what to install."""
        candidates: list[Path] = []
        if self.settings.postgres_bin_dir is not None:
            candidates.append(self.settings.postgres_bin_dir)
        candidates += [
            Path(p).parent
            for p in sorted(
                glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version_key, reverse=True
            )
        ]
        which = shutil.which("initdb")
        if which:
            candidates.append(Path(which).parent)
        for candidate in candidates:
            if (candidate / "initdb").exists() and (candidate / "postgres").exists():
                return candidate
        raise StackError(
            "PostgreSQL server binaries (initdb, postgres) not found: install them "
            "(Debian/Ubuntu: apt-get install postgresql) or set SFE_POSTGRES_BIN_DIR"
        )

    @staticmethod
    def _run_as_account() -> pwd.struct_passwd | None:
        """The unprivileged account to run the server as when we are root, if it exists."""
        if os.geteuid() != 0:
            return None
        try:
            return pwd.getpwnam(_RUN_AS_WHEN_ROOT)
        except KeyError:
            return None

    def _run_as(self) -> pwd.struct_passwd | None:
        """The account to run the server as when we are root (None: run as ourselves)."""
        if os.geteuid() != 0:
            return None
        account = self._run_as_account()
        if account is None:
            raise StackError(
                "running as root, PostgreSQL needs an unprivileged account named 'postgres' "
                "(created by the postgresql package, or: useradd --system postgres)"
            )
        return account

    def _as_user(self, run_as: pwd.struct_passwd | None) -> list[str]:
        if run_as is None:
            return []
        return [
            "setpriv",
            f"--reuid={run_as.pw_uid}",
            f"--regid={run_as.pw_gid}",
            "--clear-groups",
            "--",
        ]

    def _prepare_dirs(self, run_as: pwd.struct_passwd | None) -> None:
        for directory in (self.home, self.data_dir.parent, self.data_dir, self.socket_dir):
            directory.mkdir(parents=True, exist_ok=True)
        if self.data_dir.parent != self.home:
            self.data_dir.parent.chmod(0o755)
            (self.home / "cluster-location").write_text(f"{self.data_dir.parent}\n")
        for directory in (self.data_dir, self.socket_dir):
            directory.chmod(0o700)
            if run_as is not None:
                os.chown(directory, run_as.pw_uid, run_as.pw_gid)
        if run_as is not None:
            probe = subprocess.run(
                [*self._as_user(run_as), "test", "-w", str(self.data_dir)], capture_output=True
            )
            if probe.returncode != 0:
                raise StackError(
                    f"the '{run_as.pw_name}' account cannot reach {self.data_dir}; make its parent "
                    "folders traversable (chmod o+x) or set SFE_STATE_DIR to a folder it can reach"
                )

    def _initdb(self, bin_dir: Path, run_as: pwd.struct_passwd | None) -> None:
        result = subprocess.run(
            [
                *self._as_user(run_as),
                str(bin_dir / "initdb"),
                "-D",
                str(self.data_dir),
                f"--username={SUPERUSER}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0:
            raise StackError("initdb failed:\n" + (result.stdout + result.stderr)[-3000:])


def _cluster_root(home: Path, run_as: pwd.struct_passwd | None) -> Path:
    """Choose where the cluster's data and socket live.

    Inside the state folder when the server's account can reach it; otherwise (root
    with a private checkout, e.g. mode 0700) a folder of its own under /var/tmp, named
    after the state folder so every later `up`, `status` and `down` finds it again.
    """
    if run_as is None or _can_traverse(home.parent, run_as):
        return home
    digest = hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:12]
    return Path("/var/tmp") / f"sfe-postgres-{digest}"


def _can_traverse(directory: Path, account: pwd.struct_passwd) -> bool:
    """True when ``account`` may enter every folder from / down to ``directory``."""
    groups = {account.pw_gid}
    for path in [directory.resolve(), *directory.resolve().parents]:
        try:
            info = path.stat()
        except FileNotFoundError:
            continue  # created later by us, with traversable permissions
        if info.st_uid == account.pw_uid:
            allowed = info.st_mode & stat.S_IXUSR
        elif info.st_gid in groups:
            allowed = info.st_mode & stat.S_IXGRP
        else:
            allowed = info.st_mode & stat.S_IXOTH
        if not allowed:
            return False
    return True


def _version_key(path: str) -> int:
    try:
        return int(Path(path).parent.parent.name)
    except ValueError:
        return 0
