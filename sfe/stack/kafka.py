"""A single-node Apache Kafka broker in KRaft mode, run from the official Maven artifacts.

``mvn`` resolves ``org.apache.kafka:kafka_2.13`` and its runtime dependencies into the
user's local Maven repository (downloaded once, then cached); the classpath is written
to the state folder and the broker runs as a plain ``java`` process on loopback.
Storage is formatted on first start. The settings make one node behave like a cluster
for our purposes: replication factor 1 for internal topics, ``min.insync.replicas=1``
and no initial rebalance delay, so transactions, consumer groups and compaction work.
"""

from __future__ import annotations

import base64
import importlib.resources
import re
import shutil
import subprocess
import uuid
from pathlib import Path

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

BROKER_MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL_CLASS = "kafka.tools.StorageTool"
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class KafkaBroker:
    """Lifecycle of the local broker: resolve, configure, format, start, stop, report."""

    name = "kafka"

    def __init__(self, settings: Settings) -> None:
        """Bind the broker to ``settings`` (ports, version, state folder)."""
        self.settings = settings
        self.home = settings.state_dir / "kafka"
        self.data_dir = self.home / "data"
        self.pid_file = self.home / "kafka.pid"
        self.log_file = self.home / "kafka.log"
        self.config_file = self.home / "server.properties"
        self.classpath_file = self.home / f"classpath-{settings.kafka_version}.txt"

    @property
    def url(self) -> str:
        """Bootstrap address clients use."""
        return f"kafka://{self.settings.kafka_host}:{self.settings.kafka_port}"

    @property
    def marker(self) -> str:
        """Command-line fragment that identifies our broker process."""
        return f"{BROKER_MAIN_CLASS} {self.config_file}"

    def status(self) -> ServiceStatus:
        """Whether our broker runs, with its PID and URL."""
        pid = read_pid(self.pid_file)
        return ServiceStatus(self.name, pid, self.url, is_our_process(pid, self.marker))

    def start(self, timeout: float = 120.0) -> bool:
        """Start the broker unless ours already runs; return True when it was started now."""
        if self.status().running:
            return False
        host, port = self.settings.kafka_host, self.settings.kafka_port
        if host not in _LOOPBACK:
            raise StackError(
                f"SFE_KAFKA_BOOTSTRAP points at {host}; the local stack runs Kafka on 127.0.0.1 only"
            )
        if port_open(host, port):
            raise StackError(
                f"port {port} is taken by a process that is not our broker; "
                "stop it or set SFE_KAFKA_BOOTSTRAP=127.0.0.1:<free port>"
            )
        java = _require_java()
        classpath = self._classpath()
        self._write_config()
        if not (self.data_dir / "meta.properties").exists():
            self._format(java, classpath)
        process = spawn_daemon(
            [
                java,
                f"-Xms{self.settings.kafka_heap}",
                f"-Xmx{self.settings.kafka_heap}",
                "-XX:+UseG1GC",
                "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={self.home / 'log4j2.yaml'}",
                "-cp",
                classpath,
                BROKER_MAIN_CLASS,
                str(self.config_file),
            ],
            self.log_file,
            self.pid_file,
        )
        wait_until(
            self._ready,
            timeout,
            "kafka broker",
            alive=lambda: process.poll() is None,
            log_file=self.log_file,
        )
        return True

    def stop(self) -> bool:
        """Stop our broker by its PID (controlled shutdown); return True when one was running."""
        pid = read_pid(self.pid_file)
        if not is_our_process(pid, self.marker):
            self.pid_file.unlink(missing_ok=True)
            return False
        assert pid is not None
        stop_pid(pid, self.marker, timeout=60.0)
        self.pid_file.unlink(missing_ok=True)
        return True

    def _ready(self) -> bool:
        """The broker answers a metadata request (not just an open port)."""
        if not port_open(self.settings.kafka_host, self.settings.kafka_port):
            return False
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.settings.kafka_bootstrap})
        try:
            metadata = admin.list_topics(timeout=2)
        except Exception:
            return False
        return bool(metadata.brokers)

    def _classpath(self) -> str:
        """Runtime classpath of the broker, resolved by Maven once per version."""
        if self.classpath_file.exists():
            classpath = self.classpath_file.read_text().strip()
            if classpath and all(Path(jar).exists() for jar in classpath.split(":")):
                return classpath
        mvn = shutil.which("mvn")
        if mvn is None:
            raise StackError(
                "Maven (mvn) is not installed; it fetches the Kafka broker from Maven Central. "
                "Install it (Debian/Ubuntu: apt-get install maven)"
            )
        self.home.mkdir(parents=True, exist_ok=True)
        pom = self.home / "pom.xml"
        pom.write_text(_resource("pom.xml"))
        command = [
            mvn,
            "-q",
            "-B",
            "-f",
            str(pom),
            f"-Dkafka.version={self.settings.kafka_version}",
            "dependency:build-classpath",
            "-Dmdep.includeScope=runtime",
            f"-Dmdep.outputFile={self.classpath_file}",
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=900)
        if result.returncode != 0:
            raise StackError(
                f"Maven could not resolve org.apache.kafka:kafka_2.13:{self.settings.kafka_version}:\n"
                + (result.stdout + result.stderr)[-3000:]
            )
        return self.classpath_file.read_text().strip()

    def _write_config(self) -> None:
        """Write server.properties and the log4j2 configuration for the current settings."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        host, port = self.settings.kafka_host, self.settings.kafka_port
        controller = f"{host}:{self.settings.kafka_controller_port}"
        properties = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{controller}",
            "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{controller}",
            "advertised.listeners": f"PLAINTEXT://{host}:{port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": "1",
            "default.replication.factor": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "10",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "min.insync.replicas": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
            "log.cleaner.enable": "true",
            "log.cleaner.backoff.ms": "1000",
        }
        self.config_file.write_text(
            "".join(f"{key}={value}\n" for key, value in properties.items())
        )
        (self.home / "log4j2.yaml").write_text(_resource("log4j2.yaml"))

    def _format(self, java: str, classpath: str) -> None:
        """Format KRaft storage with a fresh cluster id (first start only)."""
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        result = subprocess.run(
            [
                java,
                f"-Dlog4j2.configurationFile={self.home / 'log4j2.yaml'}",
                "-cp",
                classpath,
                STORAGE_TOOL_CLASS,
                "format",
                "--cluster-id",
                cluster_id,
                "--config",
                str(self.config_file),
                "--ignore-formatted",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise StackError(
                "formatting Kafka storage failed:\n" + (result.stdout + result.stderr)[-3000:]
            )


def _require_java() -> str:
    """Path of a Java 17+ runtime, or a StackError saying what to install."""
    java = shutil.which("java")
    if java is None:
        raise StackError(
            "Java is not installed; the Kafka broker needs Java 17 or newer "
            "(Debian/Ubuntu: apt-get install openjdk-17-jre-headless)"
        )
    result = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    match = re.search(r'version "(\d+)', result.stderr + result.stdout)
    if match is None or int(match.group(1)) < 17:
        raise StackError(f"{java} is older than Java 17, which Kafka 4 needs; install Java 17+")
    return java


def _resource(name: str) -> str:
    return importlib.resources.files("sfe.stack").joinpath("resources", name).read_text()
