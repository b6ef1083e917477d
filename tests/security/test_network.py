"""Network surface: loopback defaults, the read-only metrics endpoint, Kafka SASL_SSL, PostgreSQL TLS.

The Kafka and PostgreSQL samples are real servers of their own, started here on free
ports from the configuration files in ``docs/samples/`` (never the shared stack on 9092
and 55432): a single-node KRaft broker with a SASL_SSL (SCRAM-SHA-512) listener only,
and a PostgreSQL 15 cluster whose pg_hba.conf has ``hostssl`` lines only. Clients are
configured only through the settings (``sfe.kafka_security.kafka_client_config`` and
``Settings.sqlalchemy_url``), from the sample ``.env`` files, and the ingest processes'
appender and a Faust (aiokafka) producer go through the same broker. Certificates are
generated in the test with ``cryptography``.
"""

from __future__ import annotations

import asyncio
import base64
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from string import Template
from typing import Any

import pytest
import sqlalchemy
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from schema_registry.codec import Codec
from sfe import metrics
from sfe.kafka_security import KafkaConfig, faust_broker_credentials, kafka_client_config
from sfe.secrets import Secret
from sfe.settings import ENV_PREFIX, Settings, SettingsError, load_settings
from sfe.stack.kafka import KafkaBroker
from simulator.cli import config_from
from simulator.config import SimConfig
from simulator.tls import TlsFiles, ensure_tls
from streams.ingest.appender import Checkpoint, OutboundRecord, load_checkpoints
from streams.ingest.cli import CHECKPOINT_TOPIC, build_ingestor
from tests.ports import free_port

SAMPLES = Path(__file__).resolve().parents[2] / "docs" / "samples"
LOOPBACK = "127.0.0.1"


def render(sample: str, **values: object) -> str:
    """A sample file of docs/samples with its ${...} placeholders filled in (all of them)."""
    return Template((SAMPLES / sample).read_text()).substitute(
        {key: str(value) for key, value in values.items()}
    )


def env_lines(text: str) -> dict[str, str]:
    """The KEY=VALUE lines of an .env sample."""
    pairs = (line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def settings_from_env(env: dict[str, str]) -> Settings:
    """Settings built by the production loader from exactly ``env`` (other SFE_* cleared)."""
    with pytest.MonkeyPatch.context() as patch:
        for key in [k for k in os.environ if k.startswith(ENV_PREFIX)]:
            patch.delenv(key)
        for key, value in env.items():
            patch.setenv(key, value)
        return load_settings()


def fetch(url: str, method: str = "GET") -> int:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def unrelated_ca(path: Path) -> Path:
    """The certificate of a CA (its own name and key) that signed nothing we serve."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "an unrelated CA")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return path


def outward_address() -> str | None:
    """A non-loopback address of this host, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: nothing is sent
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if metrics.is_loopback(address) or address == "0.0.0.0" else address


@pytest.fixture(autouse=True)
def no_ambient_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings built in a test see only what the test sets."""
    for key in [k for k in os.environ if k.startswith(ENV_PREFIX)]:
        monkeypatch.delenv(key)


# --- What listens where by default -------------------------------------------------------


def test_every_listener_defaults_to_loopback(tmp_path: Path) -> None:
    settings = settings_from_env({})
    assert settings.metrics_bind == LOOPBACK
    assert settings.ingress_bind == LOOPBACK
    assert settings.sim_host == LOOPBACK
    assert SimConfig(state_dir=tmp_path).host == LOOPBACK
    assert config_from(settings).host == LOOPBACK
    # Each is widened by its own explicit setting, and only by it.
    wide = settings_from_env(
        {"SFE_METRICS_BIND": "0.0.0.0", "SFE_INGRESS_BIND": "::", "SFE_SIM_HOST": "0.0.0.0"}
    )
    assert (wide.metrics_bind, wide.ingress_bind, config_from(wide).host) == (
        "0.0.0.0",
        "::",
        "0.0.0.0",
    )


def test_a_metrics_server_from_default_settings_is_reachable_on_loopback_only() -> None:
    settings = settings_from_env({})
    server = metrics.MetricsServer(settings.metrics_bind, 0).start()
    try:
        host, port = server.address
        assert host == LOOPBACK and port > 0
        assert server.url == f"http://127.0.0.1:{port}"
        assert fetch(f"{server.url}/healthz") == 200
        other = outward_address()
        if other is not None:
            with pytest.raises(OSError):
                socket.create_connection((other, port), timeout=2).close()
    finally:
        server.stop()


def test_the_metrics_endpoint_is_read_only_and_needs_no_token_on_loopback() -> None:
    server = metrics.MetricsServer(LOOPBACK, 0).start()
    try:
        assert [fetch(server.url + path) for path in ("/metrics", "/healthz", "/readyz")] == [
            200,
            200,
            200,
        ]
        # Nothing else: no admin paths, and no method that could change anything.
        assert fetch(server.url + "/admin") == 404
        assert fetch(server.url + "/metrics", method="POST") == 501
        assert fetch(server.url + "/metrics", method="DELETE") == 501
    finally:
        server.stop()


def test_a_widened_metrics_bind_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    assert metrics.is_loopback("127.0.0.1") and metrics.is_loopback("::1")
    assert metrics.is_loopback("localhost") and metrics.is_loopback("[::1]")
    assert not metrics.is_loopback("0.0.0.0") and not metrics.is_loopback("")
    assert not metrics.is_loopback("10.1.2.3") and not metrics.is_loopback("metrics.internal")
    other = outward_address()
    if other is None:
        pytest.skip("this host has no non-loopback address to bind to")
    with caplog.at_level("WARNING", logger="sfe.metrics"):
        metrics.MetricsServer(other, 0).start().stop()
    assert [r.getMessage() for r in caplog.records] == [
        f"metrics endpoint bound to {other}: /metrics, /healthz and /readyz answer anyone "
        "who reaches port 0 without authentication"
    ]


# --- Kafka client security settings (pure) -------------------------------------------------


def test_kafka_client_config_defaults_to_plaintext_on_the_local_broker() -> None:
    assert kafka_client_config(settings_from_env({})) == {
        "bootstrap.servers": "127.0.0.1:9092",
        "security.protocol": "PLAINTEXT",
    }
    assert faust_broker_credentials(settings_from_env({})) is None


def test_kafka_client_config_for_sasl_ssl(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    password_file = tmp_path / "kafka-password"
    password_file.write_text("s3cret-from-a-file\n")
    settings = settings_from_env(
        {
            "SFE_KAFKA_BOOTSTRAP": "kafka-1.internal:9094,kafka-2.internal:9094",
            "SFE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "SFE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
            "SFE_KAFKA_SASL_USERNAME": "sfe-pipeline",
            "SFE_KAFKA_SASL_PASSWORD_FILE": str(password_file),
            "SFE_KAFKA_SSL_CA_LOCATION": str(ca),
        }
    )
    assert kafka_client_config(settings) == {
        "bootstrap.servers": "kafka-1.internal:9094,kafka-2.internal:9094",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-256",
        "sasl.username": "sfe-pipeline",
        "sasl.password": "s3cret-from-a-file",
        "ssl.endpoint.identification.algorithm": "https",
        "ssl.ca.location": str(ca),
    }
    assert "s3cret" not in repr(settings) and "s3cret" not in str(settings.kafka_sasl_password)


def test_kafka_client_config_plain_ssl_and_sasl_plaintext() -> None:
    ssl_only = Settings(kafka_security_protocol="SSL")
    assert kafka_client_config(ssl_only) == {
        "bootstrap.servers": "127.0.0.1:9092",
        "security.protocol": "SSL",
        "ssl.endpoint.identification.algorithm": "https",
    }
    sasl = Settings(
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_username="u",
        kafka_sasl_password=Secret("p-p-p-p-p"),
    )
    assert kafka_client_config(sasl) == {
        "bootstrap.servers": "127.0.0.1:9092",
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "u",
        "sasl.password": "p-p-p-p-p",
    }


@pytest.mark.parametrize(
    ("fields", "variable"),
    [
        ({"kafka_security_protocol": "SASL_SSL"}, "SFE_KAFKA_SASL_USERNAME"),
        (
            {"kafka_security_protocol": "SASL_SSL", "kafka_sasl_username": "u"},
            "SFE_KAFKA_SASL_PASSWORD",
        ),
        ({"kafka_sasl_username": "u"}, "SFE_KAFKA_SASL_USERNAME/SFE_KAFKA_SASL_PASSWORD"),
        ({"kafka_ssl_ca_location": Path("/etc/hosts")}, "SFE_KAFKA_SSL_CA_LOCATION"),
        (
            {"kafka_security_protocol": "SSL", "kafka_ssl_ca_location": Path("/nonexistent.pem")},
            "SFE_KAFKA_SSL_CA_LOCATION",
        ),
    ],
)
def test_kafka_security_misconfigurations_name_the_variable(
    fields: dict[str, Any], variable: str
) -> None:
    with pytest.raises(SettingsError) as raised:
        kafka_client_config(Settings(**fields))
    assert str(raised.value).startswith(f"invalid setting {variable}: ")


def test_unknown_kafka_protocol_or_mechanism_fails_at_start() -> None:
    with pytest.raises(SettingsError, match="SFE_KAFKA_SECURITY_PROTOCOL"):
        settings_from_env({"SFE_KAFKA_SECURITY_PROTOCOL": "SASL_TLS"})
    with pytest.raises(SettingsError, match="SFE_KAFKA_SASL_MECHANISM"):
        settings_from_env({"SFE_KAFKA_SASL_MECHANISM": "GSSAPI"})


# --- PostgreSQL TLS settings (pure) --------------------------------------------------------


def test_database_tls_settings_go_into_the_url() -> None:
    base = "postgresql+psycopg://sfe:pw-1234@db.internal:5432/sfe"
    assert settings_from_env({"SFE_DATABASE_URL": base}).sqlalchemy_url() == base
    settings = settings_from_env(
        {
            "SFE_DATABASE_URL": base + "?sslmode=disable&application_name=sfe",
            "SFE_DATABASE_SSLMODE": "verify-full",
            "SFE_DATABASE_SSLROOTCERT": "/etc/sfe/pg-ca.pem",
        }
    )
    url = make_url(settings.sqlalchemy_url())
    assert (url.username, url.password, url.host, url.port, url.database) == (
        "sfe",
        "pw-1234",
        "db.internal",
        5432,
        "sfe",
    )
    assert dict(url.query) == {
        "sslmode": "verify-full",
        "sslrootcert": "/etc/sfe/pg-ca.pem",
        "application_name": "sfe",
    }
    with pytest.raises(SettingsError, match="SFE_DATABASE_SSLMODE"):
        settings_from_env({"SFE_DATABASE_SSLMODE": "allow-please"})


# --- Working sample: a SASL_SSL-only Kafka broker ------------------------------------------


@dataclass(frozen=True)
class SecureBroker:
    """A running temporary broker and the client settings of its sample .env files."""

    settings: Settings
    port: int
    tls: TlsFiles
    #: The settings of kafka-mtls.env: its MTLS listener, with a client certificate.
    mtls: Settings


def client_certificate(folder: Path, password: str) -> tuple[Path, Path, Path]:
    """A clients' CA, and a client certificate it signed with its key encrypted under
    ``password``: (CA, certificate, key) files."""
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sfe clients CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sfe-worker")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files = (folder / "clients-ca.pem", folder / "client.pem", folder / "client.key")
    files[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files[1].write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    files[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(password.encode()),
        )
    )
    files[2].chmod(0o600)
    return files


def _broker_classpath() -> str:
    classpath_file = KafkaBroker(load_settings()).classpath_file
    if not classpath_file.exists():
        pytest.skip(f"the Kafka distribution is not present ({classpath_file}; sfe stack up)")
    classpath = classpath_file.read_text().strip()
    if not classpath or not all(Path(jar).exists() for jar in classpath.split(":")):
        pytest.skip(f"the Kafka distribution of {classpath_file} is incomplete")
    return classpath


def _wait(
    condition: Callable[[], bool], timeout: float, what: str, alive: Callable[[], bool]
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if not alive():
            raise AssertionError(f"{what} exited")
        time.sleep(0.5)
    raise AssertionError(f"{what} not ready after {timeout} s")


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    classpath = _broker_classpath()
    java = shutil.which("java")
    if java is None:
        pytest.skip("no java runtime for the Kafka broker")
    home = tmp_path_factory.mktemp("kafka-sasl-ssl")
    tls = ensure_tls(home / "tls", LOOPBACK)
    keystore = home / "tls" / "keystore.pem"  # private key first, then the certificate
    keystore.write_bytes(tls.server_key.read_bytes() + tls.server_cert.read_bytes())
    keystore.chmod(0o600)
    port, controller_port, mtls_port = free_port(), free_port(), free_port()
    broker_password, app_password = secrets.token_urlsafe(18), secrets.token_urlsafe(18)
    key_password = secrets.token_urlsafe(18)
    clients_ca, client_cert, client_key = client_certificate(home / "clients", key_password)
    properties = home / "server.properties"
    properties.write_text(
        render(
            "kafka-sasl-ssl-server.properties",
            port=port,
            mtls_port=mtls_port,
            client_truststore=clients_ca,
            controller_port=controller_port,
            broker_user="broker",
            broker_password=broker_password,
            keystore=keystore,
            truststore=tls.ca_cert,
            data_dir=home / "data",
        )
    )
    log4j = home / "log4j2.yaml"
    log4j.write_text(
        (Path(__file__).resolve().parents[2] / "sfe/stack/resources/log4j2.yaml").read_text()
    )
    jvm = [java, f"-Dlog4j2.configurationFile={log4j}", "-XX:TieredStopAtLevel=1", "-cp", classpath]
    cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
    formatted = subprocess.run(
        [
            *jvm,
            "-Xmx256m",
            "kafka.tools.StorageTool",
            "format",
            "--cluster-id",
            cluster_id,
            "--config",
            str(properties),
            "--add-scram",
            f"SCRAM-SHA-512=[name=broker,password={broker_password}]",
            "--add-scram",
            f"SCRAM-SHA-512=[name=sfe-app,password={app_password}]",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert formatted.returncode == 0, formatted.stdout + formatted.stderr
    password_file = home / "kafka-password"
    password_file.write_text(app_password + "\n")
    password_file.chmod(0o600)
    settings = settings_from_env(
        env_lines(
            render(
                "kafka-sasl-ssl.env",
                port=port,
                username="sfe-app",
                password_file=password_file,
                ca_file=tls.ca_cert,
            )
        )
    )
    key_password_file = home / "clients" / "key-password"
    key_password_file.write_text(key_password + "\n")
    mtls = settings_from_env(
        env_lines(
            render(
                "kafka-mtls.env",
                mtls_port=mtls_port,
                ca_file=tls.ca_cert,
                certificate_file=client_cert,
                key_file=client_key,
                key_password_file=key_password_file,
            )
        )
    )
    log_file = home / "kafka.log"
    with log_file.open("wb") as log:
        broker = subprocess.Popen(
            [*jvm, "-Xms384m", "-Xmx384m", "kafka.Kafka", str(properties)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def answers() -> bool:
        try:
            probe = AdminClient({**kafka_client_config(settings), "log_level": 0})
            metadata = probe.list_topics(timeout=2)
        except KafkaException:
            return False
        return bool(metadata.brokers)

    try:
        try:
            _wait(answers, 90, "the SASL_SSL broker", alive=lambda: broker.poll() is None)
        except AssertionError as exc:
            raise AssertionError(f"{exc}:\n{log_file.read_text()[-3000:]}") from None
        yield SecureBroker(settings, port, tls, mtls)
    finally:
        broker.send_signal(signal.SIGTERM)
        try:
            broker.wait(30)
        except subprocess.TimeoutExpired:
            broker.kill()
            broker.wait(10)


def _refusal(config: KafkaConfig, expected: set[int], seconds: float = 20.0) -> set[int]:
    """Error codes a client with ``config`` reports, never reaching the cluster, until one of
    ``expected`` (or ``seconds``)."""
    errors: set[int] = set()
    # The callback is a client property the typed configuration does not describe.
    quiet: dict[str, Any] = {"log_level": 0, "error_cb": lambda e: errors.add(e.code())}
    admin = AdminClient({**config, **quiet})
    deadline = time.monotonic() + seconds
    while not errors & expected and time.monotonic() < deadline:
        with pytest.raises(KafkaException):
            admin.list_topics(timeout=1)
        admin.poll(0.1)
    return errors


def test_sample_broker_produces_and_consumes_over_sasl_ssl(secure_broker: SecureBroker) -> None:
    config = kafka_client_config(secure_broker.settings)
    assert config["security.protocol"] == "SASL_SSL"
    assert config["sasl.mechanism"] == "SCRAM-SHA-512"
    assert config["bootstrap.servers"] == f"127.0.0.1:{secure_broker.port}"
    topic = f"network-sample.{uuid.uuid4().hex[:8]}"
    admin = AdminClient(config)  # kept referenced: a collected client cancels its requests
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)

    delivered: list[tuple[str | None, int | None]] = []
    producer = Producer({**config, "acks": "all", "enable.idempotence": True})
    producer.produce(
        topic,
        key=b"00Q000000000001",
        value=b"over SASL_SSL",
        on_delivery=lambda err, msg: delivered.append((err.name() if err else None, msg.offset())),
    )
    assert producer.flush(30) == 0
    assert delivered == [(None, 0)]

    consumer = Consumer(
        {
            **config,
            "group.id": f"network-sample-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
        }
    )
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 30
        message = None
        while message is None and time.monotonic() < deadline:
            candidate = consumer.poll(0.5)
            if candidate is not None and candidate.error() is None:
                message = candidate
        assert message is not None
        assert (message.key(), message.value(), message.offset()) == (
            b"00Q000000000001",
            b"over SASL_SSL",
            0,
        )
    finally:
        consumer.close()


def test_sample_broker_refuses_plaintext_and_bad_credentials(
    secure_broker: SecureBroker, tmp_path: Path
) -> None:
    # The listener is up and answers a correctly configured client ...
    admin = AdminClient(kafka_client_config(secure_broker.settings))
    assert list(admin.list_topics(timeout=10).brokers) == [1]
    # ... and nobody else: not in plain text, not with a wrong password, not without its CA.
    bootstrap = f"127.0.0.1:{secure_broker.port}"
    plaintext = kafka_client_config(Settings(kafka_bootstrap=bootstrap))
    assert plaintext == {"bootstrap.servers": bootstrap, "security.protocol": "PLAINTEXT"}
    transport = {KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN}
    refused = _refusal(plaintext, transport)
    assert refused & transport, refused

    wrong_password = secure_broker.settings.model_copy(
        update={"kafka_sasl_password": Secret("not-the-password")}
    )
    rejected = _refusal(kafka_client_config(wrong_password), {KafkaError._AUTHENTICATION})
    assert KafkaError._AUTHENTICATION in rejected, rejected

    other_ca = unrelated_ca(tmp_path / "other-ca.pem")
    untrusted = secure_broker.settings.model_copy(update={"kafka_ssl_ca_location": other_ca})
    distrusted = _refusal(kafka_client_config(untrusted), {KafkaError._SSL})
    assert KafkaError._SSL in distrusted, distrusted


def test_sample_broker_takes_clients_with_a_certificate_over_mutual_tls(
    secure_broker: SecureBroker,
) -> None:
    config = kafka_client_config(secure_broker.mtls)
    assert config["security.protocol"] == "SSL" and "sasl.mechanism" not in config
    assert str(config["ssl.certificate.location"]).endswith("client.pem")
    assert isinstance(config["ssl.key.password"], str)
    topic = f"network-mtls.{uuid.uuid4().hex[:8]}"
    admin = AdminClient(config)
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    producer = Producer({**config, "enable.idempotence": True})
    producer.produce(topic, key=b"k", value=b"over mutual TLS")
    assert producer.flush(30) == 0
    consumer = Consumer(
        {**config, "group.id": f"mtls-{uuid.uuid4().hex[:6]}", "auto.offset.reset": "earliest"}
    )
    try:
        consumer.subscribe([topic])
        deadline, message = time.monotonic() + 30, None
        while message is None and time.monotonic() < deadline:
            candidate = consumer.poll(0.5)
            if candidate is not None and candidate.error() is None:
                message = candidate
        assert message is not None and message.value() == b"over mutual TLS"
    finally:
        consumer.close()
    # Without a certificate the listener refuses the handshake.
    anonymous = secure_broker.mtls.model_copy(
        update={
            "kafka_ssl_certificate_location": None,
            "kafka_ssl_key_location": None,
            "kafka_ssl_key_password": None,
        }
    )
    refused = _refusal(kafka_client_config(anonymous), {KafkaError._SSL, KafkaError._TRANSPORT})
    assert refused & {KafkaError._SSL, KafkaError._TRANSPORT}, refused
    # Faust's clients present the same certificate.
    credentials = faust_broker_credentials(secure_broker.mtls)
    assert credentials is not None
    assert credentials.context.get_ca_certs()  # type: ignore[attr-defined]


def test_mutual_tls_settings_are_checked_at_start(tmp_path: Path) -> None:
    certificate = tmp_path / "client.pem"
    certificate.write_text("not checked here")
    base = {
        "SFE_KAFKA_SECURITY_PROTOCOL": "SSL",
        "SFE_KAFKA_SSL_CERTIFICATE_LOCATION": str(certificate),
    }
    with pytest.raises(SettingsError, match="SFE_KAFKA_SSL_KEY_LOCATION: required"):
        kafka_client_config(settings_from_env(base))
    missing = {**base, "SFE_KAFKA_SSL_KEY_LOCATION": str(tmp_path / "absent.key")}
    with pytest.raises(SettingsError, match="SFE_KAFKA_SSL_KEY_LOCATION: no file at"):
        kafka_client_config(settings_from_env(missing))
    plaintext = {**base, "SFE_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"}
    with pytest.raises(SettingsError, match="SFE_KAFKA_SSL_CERTIFICATE_LOCATION: set, but"):
        kafka_client_config(settings_from_env(plaintext))
    orphan = {"SFE_KAFKA_SECURITY_PROTOCOL": "SSL", "SFE_KAFKA_SSL_KEY_PASSWORD": "x"}
    with pytest.raises(SettingsError, match="SFE_KAFKA_SSL_KEY_PASSWORD: set, but no"):
        kafka_client_config(settings_from_env(orphan))


def test_the_ingest_path_appends_through_the_sample_broker(secure_broker: SecureBroker) -> None:
    # `sfe ingest`, `sfe ingress` and `sfe backfill` build their appender like this.
    settings = secure_broker.settings.model_copy(update={"topic_prefix": "ingest-net."})
    config = kafka_client_config(settings)
    data, checkpoints = "ingest-net.sf.cdc.Lead", "ingest-net." + CHECKPOINT_TOPIC
    admin = AdminClient(config)
    created = admin.create_topics(
        [NewTopic(data, 1, 1), NewTopic(checkpoints, 1, 1, config={"cleanup.policy": "compact"})]
    )
    for future in created.values():
        future.result(30)
    ingestor = build_ingestor(settings, "network-ingest", reader=None)
    assert ingestor.start() == {}
    checkpoint = Checkpoint("/data/LeadChangeEvent", 42, ("delivery-1",))
    ingestor.appender.append([OutboundRecord(data, b"00Q1", b"change")], [checkpoint])
    ingestor.appender.close()

    codec = Codec(topic_prefix="ingest-net.")
    assert load_checkpoints(settings.kafka_bootstrap, checkpoints, codec, client_config=config) == {
        "/data/LeadChangeEvent": checkpoint
    }
    consumer = Consumer(
        {
            **config,
            "group.id": "network-ingest-check",
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
        }
    )
    try:
        consumer.subscribe([data])
        deadline = time.monotonic() + 30
        received = None
        while received is None and time.monotonic() < deadline:
            candidate = consumer.poll(0.5)
            if candidate is not None and candidate.error() is None:
                received = candidate
        assert received is not None
        assert (received.key(), received.value()) == (b"00Q1", b"change")
    finally:
        consumer.close()


async def test_faust_credentials_reach_the_sample_broker(secure_broker: SecureBroker) -> None:
    from aiokafka import AIOKafkaProducer
    from faust import SASLCredentials
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    credentials = faust_broker_credentials(secure_broker.settings)
    assert isinstance(credentials, SASLCredentials)
    assert credentials.protocol.value == "SASL_SSL"
    assert credentials.mechanism.value == "SCRAM-SHA-512"
    topic = f"network-faust.{uuid.uuid4().hex[:8]}"
    admin = AdminClient(kafka_client_config(secure_broker.settings))
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    producer = AIOKafkaProducer(
        bootstrap_servers=f"127.0.0.1:{secure_broker.port}",
        **credentials_to_aiokafka_auth(credentials),
    )
    await asyncio.wait_for(producer.start(), 30)
    try:
        sent = await asyncio.wait_for(producer.send_and_wait(topic, b"from faust"), 30)
    finally:
        await producer.stop()
    assert (sent.topic, sent.partition, sent.offset) == (topic, 0, 0)


# --- Working sample: a hostssl-only PostgreSQL cluster ------------------------------------


@dataclass(frozen=True)
class TlsPostgres:
    """A running temporary cluster and the settings of its sample .env file."""

    settings: Settings
    port: int
    tls: TlsFiles


def _postgres_bin() -> Path:
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists() and (candidate / "postgres").exists():
            return candidate
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    pytest.skip("no PostgreSQL server binaries (initdb, postgres)")


@pytest.fixture(scope="module")
def tls_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsPostgres]:
    bin_dir = _postgres_bin()
    run_as: list[str] = []
    account: pwd.struct_passwd | None = None
    if os.geteuid() == 0:  # the server refuses root; pytest's folders are private to root
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root without a 'postgres' account for the server")
        home = Path(tempfile.mkdtemp(prefix="sfe-tls-postgres-", dir="/var/tmp"))
        run_as = [
            "setpriv",
            f"--reuid={account.pw_uid}",
            f"--regid={account.pw_gid}",
            "--clear-groups",
            "--",
        ]
    else:
        home = tmp_path_factory.mktemp("tls-postgres")
    data, sockets = home / "data", home / "run"
    tls = ensure_tls(home / "tls", LOOPBACK)
    password = secrets.token_urlsafe(18)
    password_file = home / "superuser-password"
    password_file.write_text(password + "\n")
    sockets.mkdir()
    if account is not None:
        for path in (home, sockets, password_file, *(home / "tls").iterdir(), home / "tls"):
            os.chown(path, account.pw_uid, account.pw_gid)
    port = free_port()
    server: subprocess.Popen[bytes] | None = None
    try:
        initdb = subprocess.run(
            [
                *run_as,
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "--username=postgres",
                f"--pwfile={password_file}",
                "--auth-local=peer",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert initdb.returncode == 0, initdb.stdout + initdb.stderr
        (data / "pg_hba.conf").write_text((SAMPLES / "pg_hba-hostssl.conf").read_text())
        options = [
            line.split("=", 1)
            for line in render(
                "postgresql-tls.conf", server_cert=tls.server_cert, server_key=tls.server_key
            ).splitlines()
            if line and not line.startswith("#")
        ]
        argv = [*run_as, str(bin_dir / "postgres"), "-D", str(data)]
        for key, value in options:
            argv += ["-c", f"{key.strip()}={value.strip().strip(chr(39))}"]
        argv += ["-c", f"listen_addresses={LOOPBACK}", "-c", f"port={port}"]
        argv += ["-c", f"unix_socket_directories={sockets}", "-c", "fsync=off"]
        log_file = home / "postgres.log"
        with log_file.open("wb") as log:
            server = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        settings = settings_from_env(
            env_lines(
                render(
                    "postgres-tls.env",
                    user="postgres",
                    password=password,
                    port=port,
                    database="postgres",
                    ca_file=tls.ca_cert,
                )
            )
        )
        running = server
        probe = sqlalchemy.create_engine(settings.sqlalchemy_url(), poolclass=NullPool)

        def accepts() -> bool:
            try:
                probe.connect().close()
            except sqlalchemy.exc.OperationalError:
                return False
            return True

        try:
            _wait(accepts, 40, "the TLS PostgreSQL cluster", alive=lambda: running.poll() is None)
        except AssertionError as exc:
            raise AssertionError(f"{exc}:\n{log_file.read_text()[-3000:]}") from None
        finally:
            probe.dispose()
        yield TlsPostgres(settings, port, tls)
    finally:
        if server is not None:
            server.send_signal(signal.SIGINT)  # fast shutdown
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(10)
        shutil.rmtree(home, ignore_errors=True)


def test_sample_postgres_connects_with_verify_full(tls_postgres: TlsPostgres) -> None:
    settings = tls_postgres.settings
    assert (settings.database_sslmode, settings.database_sslrootcert) == (
        "verify-full",
        tls_postgres.tls.ca_cert,
    )
    engine = sqlalchemy.create_engine(settings.sqlalchemy_url())
    try:
        with engine.connect() as connection:
            ssl, version = connection.execute(
                sqlalchemy.text("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            ).one()
    finally:
        engine.dispose()
    assert ssl is True
    assert version in {"TLSv1.2", "TLSv1.3"}


def test_sample_postgres_refuses_plaintext_and_untrusted_servers(
    tls_postgres: TlsPostgres, tmp_path: Path
) -> None:
    plaintext = tls_postgres.settings.model_copy(update={"database_sslmode": "disable"})
    engine = sqlalchemy.create_engine(plaintext.sqlalchemy_url())
    try:
        with pytest.raises(sqlalchemy.exc.OperationalError) as refused:
            engine.connect().close()
    finally:
        engine.dispose()
    message = str(refused.value.orig)
    assert "no pg_hba.conf entry" in message and "no encryption" in message

    other_ca = unrelated_ca(tmp_path / "other-ca.pem")
    untrusted = tls_postgres.settings.model_copy(update={"database_sslrootcert": other_ca})
    engine = sqlalchemy.create_engine(untrusted.sqlalchemy_url())
    try:
        with pytest.raises(sqlalchemy.exc.OperationalError) as rejected:
            engine.connect().close()
    finally:
        engine.dispose()
    assert "certificate verify failed" in str(rejected.value.orig)


def test_a_command_connects_every_client_through_the_settings(
    secure_broker: SecureBroker,
) -> None:
    # `sfe topics ensure` builds its admin client from the process's security settings,
    # as every other command's clients are built (sfe.kafka_security.client_config).
    from click.testing import CliRunner

    from sfe import kafka_security
    from sfe.cli import main

    settings = secure_broker.settings.model_copy(update={"topic_prefix": "cli-net."})
    try:
        outcome = CliRunner().invoke(main, ["topics", "ensure"], obj=settings)
        assert outcome.exit_code == 0, outcome.output
    finally:
        kafka_security.use_properties({})  # later tests in this process use PLAINTEXT
    topics = AdminClient(kafka_client_config(settings)).list_topics(timeout=30).topics
    assert "cli-net.decisions.leads" in topics and "cli-net.commands.salesforce" in topics
