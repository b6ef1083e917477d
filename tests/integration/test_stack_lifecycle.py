"""`sfe stack up | status | down` on a second, private stack: idempotent, and stops only its own PIDs."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from sfe.cli import main
from sfe.settings import Settings, load_settings
from sfe.stack import PostgresCluster
from sfe.stack.process import is_our_process, port_open, read_pid
from tests.ports import free_port

pytestmark = pytest.mark.integration


def load_settings_from(env: dict[str, str]) -> Settings:
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        return load_settings()


@pytest.fixture
def private_stack_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    # pytest's temporary folders are private (0700): as root, the cluster must then live
    # where the unprivileged postgres account can reach it.
    state = tmp_path_factory.mktemp("stack") / uuid.uuid4().hex[:8]
    env = {
        "SFE_STATE_DIR": str(state),
        "SFE_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
        "SFE_KAFKA_CONTROLLER_PORT": str(free_port()),
        "SFE_KAFKA_HEAP": "384m",
        "SFE_DATABASE_URL": f"postgresql+psycopg://sfe:sfe@127.0.0.1:{free_port()}/sfe",
    }
    yield env
    location = state / "postgres" / "cluster-location"
    if location.exists():
        shutil.rmtree(location.read_text().strip(), ignore_errors=True)
    shutil.rmtree(state, ignore_errors=True)


def test_up_twice_status_and_down(private_stack_env: dict[str, str]) -> None:
    runner = CliRunner()
    env = private_stack_env
    state = Path(env["SFE_STATE_DIR"])
    try:
        first = runner.invoke(main, ["stack", "up"], env=env)
        assert first.exit_code == 0, first.output
        assert first.output.count("(started)") == 2

        second = runner.invoke(main, ["stack", "up"], env=env)
        assert second.exit_code == 0, second.output
        assert second.output.count("(already running)") == 2

        status = runner.invoke(main, ["stack", "status"], env=env)
        assert status.exit_code == 0, status.output
        kafka_port = env["SFE_KAFKA_BOOTSTRAP"].rsplit(":", 1)[1]
        assert f"kafka://127.0.0.1:{kafka_port}" in status.output
        assert "postgresql://sfe@127.0.0.1:" in status.output

        kafka_pid = read_pid(state / "kafka" / "kafka.pid")
        assert is_our_process(kafka_pid, str(state / "kafka" / "server.properties"))
        cluster = PostgresCluster(load_settings_from(env))
        postgres_pid = read_pid(cluster.pid_file)
        assert is_our_process(postgres_pid, str(cluster.data_dir))
        if os.geteuid() == 0:  # private state folder: the cluster lives where postgres can reach
            assert not cluster.data_dir.is_relative_to(state)
        # Same PIDs on the second `up`: nothing was restarted.
        assert f"pid={kafka_pid}" in second.output and f"pid={postgres_pid}" in second.output
    finally:
        down = runner.invoke(main, ["stack", "down"], env=env)
    assert down.exit_code == 0, down.output
    assert not is_our_process(kafka_pid, "kafka.Kafka")
    assert not is_our_process(postgres_pid, "postgres")
    assert not port_open("127.0.0.1", int(kafka_port))

    after = runner.invoke(main, ["stack", "status"], env=env)
    assert after.exit_code == 1
    assert after.output.count("stopped") == 2


def test_missing_maven_says_what_to_install(
    private_stack_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name: None if name == "mvn" else real_which(name))
    env = dict(private_stack_env, SFE_KAFKA_VERSION="9.9.9")  # no cached classpath for it
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    from sfe.settings import load_settings
    from sfe.stack import KafkaBroker, StackError

    with pytest.raises(StackError, match="apt-get install maven"):
        KafkaBroker(load_settings()).start()
