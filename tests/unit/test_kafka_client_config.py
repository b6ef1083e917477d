"""Every Kafka client of a command connects with the security its settings name."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from sfe import kafka_security
from sfe.cli import main
from sfe.settings import Settings


@pytest.fixture(autouse=True)
def plaintext_again() -> Iterator[None]:
    kafka_security.use_properties({})  # earlier commands in this process set theirs
    yield
    kafka_security.use_properties({})


def test_client_config_carries_the_process_security(tmp_path: Path) -> None:
    assert kafka_security.client_config("b:9092") == {"bootstrap.servers": "b:9092"}
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    settings = Settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="pipeline",
        kafka_sasl_password="pw",  # type: ignore[arg-type]
        kafka_ssl_ca_location=ca,
    )
    properties = kafka_security.use_for_process(settings)
    assert "bootstrap.servers" not in properties
    assert kafka_security.client_config("b:9093") == {
        "bootstrap.servers": "b:9093",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "pipeline",
        "sasl.password": "pw",
        "ssl.endpoint.identification.algorithm": "https",
        "ssl.ca.location": str(ca),
    }
    kafka_security.use_properties({})
    assert kafka_security.client_config("b:9092") == {"bootstrap.servers": "b:9092"}


def test_a_command_with_incomplete_sasl_settings_exits_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SFE_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.delenv("SFE_KAFKA_SASL_USERNAME", raising=False)
    outcome = CliRunner().invoke(main, ["topics", "ensure"])
    assert outcome.exit_code == 2
    assert "SFE_KAFKA_SASL_USERNAME" in outcome.stderr
    assert "Traceback" not in outcome.output
