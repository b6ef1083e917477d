"""Salesforce auth and secrets: JWT by default, token refresh, rotation, Vault, no leaks.

The simulator is real (HTTPS, OAuth, REST); the Vault is a small in-test HTTP server that
answers exactly as Vault's KV version 2 engine documents ``GET /v1/<mount>/data/<path>``:
``{"data": {"data": {...}, "metadata": {...}}, ...}`` (403 ``{"errors": ["permission
denied"]}`` for a bad token, 404 ``{"errors": []}`` for a missing secret). The leak test
runs an end-to-end slice with every secret set to a random value and every logger at
DEBUG, and searches all captured output for those values.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from prometheus_client import REGISTRY, generate_latest
from simple_salesforce import Salesforce, SFType

from schema_registry.codec import Codec
from sfe.logging import RedactingFilter, configure_logging, redact
from sfe.secrets import (
    Secret,
    SecretSet,
    SecretSource,
    SecretUnavailable,
    VaultClient,
    VaultRef,
    known_secrets,
    resolve,
)
from sfe.settings import Settings, SettingsError, load_settings
from simulator.app import RunningSimulator, start_in_thread
from simulator.config import ConnectedApp, SimConfig
from simulator.http.admin import apply_fault
from streams.ingest.appender import TransactionalAppender
from streams.ingest.changes import EchoPolicy
from streams.ingest.ingestor import Ingestor, IngestSettings
from streams.ingest.ingress import SIGNATURE_HEADER, Ingress, sign
from streams.salesforce.auth import (
    Credentials,
    SalesforceAuthConfig,
    TokenCache,
    jwt_assertion,
    login,
)
from streams.salesforce.errors import LoginFailed
from streams.salesforce.rest import RefreshingSalesforce, auth_config, connect, http_session
from streams.salesforce.streaming import ConfiguredAuthenticator
from tests.http_helpers import JsonHandler, LocalServer
from tests.kafka_helpers import catalogue_topics

USERNAME = "integration@sfe.local"
ORG = "00D5g000000ABCDEAA"


# --- helpers -------------------------------------------------------------------------------


def new_key_pair(folder: Path, name: str) -> tuple[Path, Path]:
    """A fresh RSA key (PKCS#8 PEM) and a self-signed certificate for it."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    key_file, cert_file = folder / f"{name}.key", folder / f"{name}.pem"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_file, cert_file


def replace_file(path: Path, content: bytes) -> None:
    """Replace ``path`` atomically, as a secret mount or a deployment tool does."""
    staging = path.with_name(path.name + ".new")
    staging.write_bytes(content)
    os.replace(staging, path)


def key_body_lines(key_file: Path) -> list[str]:
    """The base64 lines of a PEM key (what a leak of the key would show)."""
    return [line for line in key_file.read_text().splitlines() if not line.startswith("-----")]


def leads(sf: Salesforce) -> SFType:
    """``sf.Lead``, typed."""
    return cast(SFType, sf.Lead)


def fault(sim: RunningSimulator, **body: Any) -> Any:
    return sim.call(apply_fault, sim.state, body)


def client_config(sim: RunningSimulator, **overrides: Any) -> SalesforceAuthConfig:
    base = SalesforceAuthConfig(
        login_url=sim.url,
        client_id=sim.state.config.app.client_id,
        username=USERNAME,
        ca_bundle=sim.state.tls_files.ca_cert,
        call_options_client="sfe-pipeline",
    )
    return replace(base, **overrides)


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class KvV2Vault(LocalServer):
    """An HTTP server answering like Vault's KV v2 read endpoint, on a free loopback port."""

    def __init__(self, token: str, secrets_by_path: dict[str, dict[str, str]]) -> None:
        self.token = token
        self.secrets = secrets_by_path
        self.reads = 0
        vault = self

        class Handler(JsonHandler):
            def on_get(self) -> None:
                if self.headers.get("X-Vault-Token") != vault.token:
                    return self.reply(403, {"errors": ["permission denied"]})
                prefix = "/v1/secret/data/"
                path = self.path.removeprefix(prefix) if self.path.startswith(prefix) else None
                if path is None or path not in vault.secrets:
                    return self.reply(404, {"errors": []})
                vault.reads += 1
                self.reply(
                    200,
                    {
                        "request_id": "4c9b1c2e-0000-0000-0000-000000000000",
                        "lease_id": "",
                        "renewable": False,
                        "lease_duration": 0,
                        "data": {
                            "data": vault.secrets[path],
                            "metadata": {
                                "created_time": "2026-11-26T07:00:00.000000Z",
                                "custom_metadata": None,
                                "deletion_time": "",
                                "destroyed": False,
                                "version": 3,
                            },
                        },
                        "wrap_info": None,
                        "warnings": None,
                        "auth": None,
                    },
                )

        super().__init__(Handler)


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def app_keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two key pairs of the connected app: the current one and the one rotated to."""
    folder = tmp_path_factory.mktemp("keys")
    old_key, old_cert = new_key_pair(folder, "app-old")
    new_key, new_cert = new_key_pair(folder, "app-new")
    return {"old_key": old_key, "old_cert": old_cert, "new_key": new_key, "new_cert": new_cert}


@pytest.fixture(scope="module")
def random_secrets() -> dict[str, str]:
    return {
        "client_secret": "cs-" + secrets.token_urlsafe(24),
        "password": "pw-" + secrets.token_urlsafe(24),
        "ingress": "whsec-" + secrets.token_urlsafe(24),
        "ingress_previous": "whold-" + secrets.token_urlsafe(24),
        "vault_token": "hvs." + secrets.token_urlsafe(24),
        "db_password": "db-" + secrets.token_urlsafe(16),
    }


@pytest.fixture(scope="module")
def sim(
    tmp_path_factory: pytest.TempPathFactory,
    app_keys: dict[str, Path],
    random_secrets: dict[str, str],
) -> Iterator[RunningSimulator]:
    """A simulator whose connected app holds the old certificate and random credentials."""
    config = SimConfig(
        state_dir=tmp_path_factory.mktemp("sim"),
        port=0,
        long_poll_seconds=5.0,
        password=random_secrets["password"],
        app=ConnectedApp(client_secret=random_secrets["client_secret"]),
        jwt_cert_file=app_keys["old_cert"],
    )
    running = start_in_thread(config)
    yield running
    running.stop()


@pytest.fixture
def key_file(tmp_path: Path, app_keys: dict[str, Path]) -> Path:
    """The mounted key file of the client, holding the old key."""
    path = tmp_path / "sf-jwt.key"
    path.write_bytes(app_keys["old_key"].read_bytes())
    return path


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    """Everything every logger writes (DEBUG and up) through the project's configuration."""
    root = logging.getLogger()
    level = root.level
    buffer = io.StringIO()
    configure_logging("DEBUG", stream=buffer)
    for name in ("urllib3", "requests", "simple_salesforce", "aiohttp", "aiohttp.access"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    yield buffer
    for handler in list(root.handlers):
        if getattr(handler, "_sfe", False):
            root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture
def sfe_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No SFE_* or VAULT_* variable of the surrounding shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith(("SFE_", "VAULT_")):
            monkeypatch.delenv(name)
    return monkeypatch


# --- Secret, settings and flow choice (pure logic) -----------------------------------------


def test_secret_type_is_masked_everywhere(sfe_env: pytest.MonkeyPatch) -> None:
    value = "s-" + secrets.token_hex(16)
    secret = Secret(value)
    assert repr(secret) == "Secret('****')" and str(secret) == "****"
    assert f"{secret}" == "****" and secret.get_secret_value() == value
    for name in (
        "SFE_SF_PASSWORD",
        "SFE_SF_CLIENT_SECRET",
        "SFE_SF_PRIVATE_KEY",
        "SFE_INGRESS_SECRET",
        "SFE_INGRESS_SECRET_PREVIOUS",
        "SFE_NOTIFY_SMTP_PASSWORD",
    ):
        sfe_env.setenv(name, value)
    sfe_env.setenv("SFE_NOTIFY_SLACK_WEBHOOK_URL", f"https://hooks.slack.com/services/{value}")
    sfe_env.setenv("SFE_DATABASE_URL", f"postgresql+psycopg://sfe:{value}@127.0.0.1:5/sfe")
    settings = load_settings()
    rendered = repr(settings) + str(settings) + settings.model_dump_json()
    assert value not in rendered
    assert "sf_password=Secret('****')" in repr(settings)
    for name in (
        "database_url",
        "sf_client_secret",
        "sf_password",
        "sf_private_key",
        "ingress_secret",
        "ingress_secret_previous",
        "notify_slack_webhook_url",
        "notify_smtp_password",
    ):
        field_value = getattr(settings, name)
        assert isinstance(field_value, Secret) and repr(field_value) == "Secret('****')", name
    assert value not in repr(auth_config(settings))


def test_settings_read_secret_files_at_start(sfe_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "password").write_text("from-a-file-123\n")
    sfe_env.setenv("SFE_SF_PASSWORD_FILE", str(tmp_path / "password"))
    assert load_settings().sf_password == Secret("from-a-file-123")
    sfe_env.setenv("SFE_SF_PASSWORD_FILE", str(tmp_path / "missing"))
    with pytest.raises(SettingsError, match="SFE_SF_PASSWORD"):
        load_settings()
    sfe_env.delenv("SFE_SF_PASSWORD_FILE")
    sfe_env.setenv("SFE_INGRESS_SECRET", "vault://no-key-here")
    with pytest.raises(SettingsError, match="SFE_INGRESS_SECRET"):
        load_settings()


def test_jwt_is_the_default_flow(tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    real = SalesforceAuthConfig("https://login.salesforce.com", "cid", "user@example.com")
    local = replace(real, login_url="https://127.0.0.1:8443")
    assert replace(real, private_key_file=key, password="pw").flow == "jwt"
    assert replace(real, private_key="PEM", password="pw").flow == "jwt"
    assert replace(local, password="pw").flow == "password"
    assert replace(local, refresh_token="5Aep8x").flow == "refresh_token"
    with pytest.raises(LoginFailed, match="SFE_SF_PRIVATE_KEY_FILE") as refused:
        _ = replace(real, password="pw-value-xyz").flow
    assert refused.value.error == "invalid_config" and "pw-value-xyz" not in str(refused.value)
    assert replace(real, password="pw", auth_flow="password").flow == "password"
    with pytest.raises(LoginFailed, match="JWT bearer flow needs"):
        _ = replace(local, password="pw", auth_flow="jwt").flow
    with pytest.raises(LoginFailed, match="production"):
        _ = real.flow


def test_settings_choose_the_flow(sfe_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    sfe_env.setenv("SFE_SF_PASSWORD", "pw")
    assert auth_config(load_settings()).flow == "password"  # the local simulator
    sfe_env.setenv("SFE_SF_PRIVATE_KEY_FILE", str(tmp_path / "k.pem"))
    assert auth_config(load_settings()).flow == "jwt"
    sfe_env.setenv("SFE_SF_AUTH_FLOW", "password")
    sfe_env.setenv("SFE_SF_SESSION_SECONDS", "900")
    config = auth_config(load_settings())
    assert config.flow == "password" and config.session_seconds == 900.0
    sfe_env.setenv("SFE_SF_AUTH_FLOW", "magic")
    with pytest.raises(SettingsError, match="SFE_SF_AUTH_FLOW"):
        load_settings()


def test_redaction_patterns() -> None:
    session_id = "00D8d0000000001!AQ4AQ" + secrets.token_urlsafe(30)
    texts = {
        f"Authorization: Bearer {session_id}": session_id,
        "{'Authorization': 'OAuth abcdefghijk123'}": "abcdefghijk123",
        "GET /outbound-messages?token=tok-secret-1&x=1": "tok-secret-1",
        '{"access_token": "tok-2-abcdefgh", "instance_url": "https://x"}': "tok-2-abcdefgh",
        "grant_type=jwt&assertion=eyJhbGciOiJSUzI1NiJ9.e30.sig": "eyJhbGciOiJSUzI1NiJ9",
        f"session {session_id} expired": session_id,
        "X-Sfe-Signature: sha256=0123456789abcdef": "0123456789abcdef",
        "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY-----": "MIIEvQIBADANBg",
    }
    for text, secret in texts.items():
        assert secret not in redact(text), text
        assert "[REDACTED]" in redact(text)
    assert redact("nothing secret here: 42 leads") == "nothing secret here: 42 leads"
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "login %s", (session_id,), None)
    RedactingFilter().filter(record)
    assert record.getMessage() == "login [REDACTED]"


# --- secret sources: files and Vault -------------------------------------------------------


def test_file_secret_is_reread_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "ingress-secret"
    path.write_text("first-secret-value\n")
    source = SecretSource("SFE_INGRESS_SECRET", value="ignored-env-value", file=path)
    assert source.get() == "first-secret-value"
    replace_file(path, b"second-secret-value\n")
    assert source.get() == "second-secret-value"
    path.unlink()
    with pytest.raises(SecretUnavailable, match="SFE_INGRESS_SECRET_FILE") as missing:
        source.get()
    assert "second-secret-value" not in str(missing.value)
    assert resolve("SFE_X", {"SFE_X": "plain"}) == "plain"
    assert resolve("SFE_X", {}) is None
    assert "first-secret-value" not in repr(source)


def test_vault_kv2_reads_and_errors(tmp_path: Path, random_secrets: dict[str, str]) -> None:
    token = random_secrets["vault_token"]
    vault = KvV2Vault(token, {"sfe/ingress": {"webhook": "from-vault-1", "other": "x"}})
    try:
        env = {"VAULT_ADDR": vault.address, "VAULT_TOKEN": token}
        ref = VaultRef.parse("vault://secret/sfe/ingress#webhook")
        assert (ref.mount, ref.path, ref.key) == ("secret", "sfe/ingress", "webhook")
        assert VaultClient.from_env(env).read(ref) == "from-vault-1"
        clock = FakeClock()
        source = SecretSource(
            "SFE_INGRESS_SECRET",
            "vault://secret/sfe/ingress#webhook",
            vault=lambda: VaultClient.from_env(env),
            cache_seconds=60,
            clock=clock,
        )
        assert source.get() == "from-vault-1"
        vault.secrets["sfe/ingress"]["webhook"] = "from-vault-2"
        reads = vault.reads
        assert source.get() == "from-vault-1" and vault.reads == reads  # cached
        clock.now += 61
        assert source.get() == "from-vault-2" and vault.reads == reads + 1
        failures = {
            "vault://secret/sfe/missing#webhook": "HTTP 404",
            "vault://secret/sfe/ingress#nokey": "no string key",
        }
        for reference, message in failures.items():
            with pytest.raises(SecretUnavailable, match=message):
                VaultClient.from_env(env).read(VaultRef.parse(reference))
        with pytest.raises(SecretUnavailable, match="HTTP 403") as denied:
            VaultClient.from_env({**env, "VAULT_TOKEN": "wrong-token-xyz"}).read(ref)
        assert "wrong-token-xyz" not in str(denied.value) and token not in str(denied.value)
        with pytest.raises(SecretUnavailable, match="VAULT_ADDR"):
            VaultClient.from_env({})
        assert token not in repr(VaultClient.from_env(env))
    finally:
        vault.stop()


def test_settings_and_jwt_login_from_vault(
    sfe_env: pytest.MonkeyPatch,
    sim: RunningSimulator,
    app_keys: dict[str, Path],
    random_secrets: dict[str, str],
) -> None:
    token = random_secrets["vault_token"]
    pem = app_keys["old_key"].read_text()
    vault = KvV2Vault(
        token, {"sfe/salesforce": {"private_key": pem, "password": random_secrets["password"]}}
    )
    try:
        sfe_env.setenv("VAULT_ADDR", vault.address)
        sfe_env.setenv("VAULT_TOKEN", token)
        sfe_env.setenv("SFE_SF_LOGIN_URL", sim.url)
        sfe_env.setenv("SFE_SF_CA_BUNDLE", str(sim.state.tls_files.ca_cert))
        sfe_env.setenv("SFE_SF_PRIVATE_KEY", "vault://secret/sfe/salesforce#private_key")
        sfe_env.setenv("SFE_SF_PASSWORD", "vault://secret/sfe/salesforce#password")
        settings = load_settings()
        assert settings.sf_password == Secret(random_secrets["password"])  # read at start
        config = auth_config(settings)
        assert config.flow == "jwt"
        reads = vault.reads
        credentials = login(config, http_session(config))  # the key is read now
        assert credentials.instance_url == sim.url and vault.reads == reads + 1
        assert credentials.access_token in sim.state.authority.issued_tokens
    finally:
        vault.stop()


# --- token cache: proactive refresh, INVALID_SESSION_ID, one refresh at a time -------------


def test_token_is_renewed_before_the_session_expires(sim: RunningSimulator, key_file: Path) -> None:
    clock = FakeClock()
    config = client_config(sim, private_key_file=key_file, session_seconds=100.0)
    tokens = TokenCache(config, http_session(config), clock=clock)
    first = tokens.credentials()
    clock.now += 89.0
    assert tokens.credentials() is first and tokens.logins == 1
    clock.now += 2.0  # 91 s: past 90 % of the lifetime
    second = tokens.credentials()
    assert second.access_token != first.access_token and tokens.logins == 2
    assert second.issued_at == clock.now
    assert list(sim.state.authority.issued_tokens)[-1] == second.access_token
    assert tokens.invalidate(first.access_token) is second  # already replaced: no login
    assert tokens.logins == 2
    third = tokens.invalidate(second.access_token)
    assert third.access_token != second.access_token and tokens.logins == 3


def test_the_streaming_connection_shares_the_rest_clients_token(
    sim: RunningSimulator, key_file: Path
) -> None:
    config = client_config(sim, private_key_file=key_file)
    tokens = TokenCache(config, http_session(config))
    streaming = ConfiguredAuthenticator(config, tokens)
    asyncio.run(streaming.authenticate())
    first = tokens.credentials()
    assert streaming.access_token == first.access_token and tokens.logins == 1
    asyncio.run(streaming.authenticate())  # the server refused the token: renewed for both
    assert tokens.logins == 2 and streaming.access_token == tokens.credentials().access_token
    tokens.invalidate(streaming.access_token)  # the REST side renewed it meanwhile
    asyncio.run(streaming.authenticate())
    assert tokens.logins == 3, "a token already renewed by the REST side is taken, not renewed"
    assert streaming.access_token == tokens.credentials().access_token != first.access_token
    assert streaming.access_token in known_secrets()


def test_client_uses_the_renewed_token_without_a_refused_call(
    sim: RunningSimulator, key_file: Path
) -> None:
    clock = FakeClock()
    config = client_config(sim, private_key_file=key_file, session_seconds=100.0)
    tokens = TokenCache(config, http_session(config), clock=clock)
    sf = RefreshingSalesforce(tokens, version=config.api_version)
    before = sf.session_id
    assert sf.query("SELECT COUNT() FROM User")["totalSize"] == 1
    clock.now += 95.0
    issued = len(sim.state.authority.issued_tokens)
    assert leads(sf).describe()["name"] == "Lead"  # an SFType call, after proactive renewal
    assert len(sim.state.authority.issued_tokens) == issued + 1
    assert sf.session_id != before and tokens.logins == 2
    # The old token is still valid at the simulator: the renewal was proactive.
    assert sim.state.authority.sessions.get(before) is not None


def test_invalid_session_renews_once_across_threads(sim: RunningSimulator, key_file: Path) -> None:
    sf = connect(client_config(sim, private_key_file=key_file))
    assert sf.query("SELECT COUNT() FROM User")["totalSize"] == 1
    fault(sim, action="expire_sessions")
    issued = len(sim.state.authority.issued_tokens)
    barrier = threading.Barrier(6)
    results: list[int] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            _ = sf.session_id  # every thread holds the expired token
            barrier.wait(10)
            results.append(sf.query("SELECT COUNT() FROM User")["totalSize"])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == [] and results == [1] * 6
    assert len(sim.state.authority.issued_tokens) == issued + 1
    assert sf.tokens.logins == 2


# --- rotation ------------------------------------------------------------------------------


def test_rotated_key_file_is_used_at_the_next_refresh(
    sim: RunningSimulator, key_file: Path, app_keys: dict[str, Path]
) -> None:
    authority = sim.state.authority
    sf = connect(client_config(sim, private_key_file=key_file))
    assert sf.query("SELECT COUNT() FROM User")["totalSize"] == 1
    old_cert, new_cert = app_keys["old_cert"].read_bytes(), app_keys["new_cert"].read_bytes()
    # Step 1: the connected app holds both certificates; either key logs in.
    sim.call(authority.add_jwt_certificate, new_cert)
    try:
        for key in (app_keys["old_key"], app_keys["new_key"]):
            assert login(client_config(sim, private_key_file=key), sf.session).access_token
        # Step 2: the mounted key file is replaced; the running client keeps working.
        replace_file(key_file, app_keys["new_key"].read_bytes())
        # Step 3: the old certificate is removed; only the new key can log in now.
        assert sim.call(authority.remove_jwt_certificate, old_cert) is True
        with pytest.raises(LoginFailed, match="invalid_grant"):
            login(client_config(sim, private_key_file=app_keys["old_key"]), sf.session)
        fault(sim, action="expire_sessions")
        assert sf.query("SELECT COUNT() FROM User")["totalSize"] == 1  # re-auth, new key
        assert sf.tokens.logins == 2
    finally:
        sim.call(authority.add_jwt_certificate, old_cert)
        sim.call(authority.remove_jwt_certificate, new_cert)


@pytest.fixture
async def ingress_with_files(tmp_path: Path, random_secrets: dict[str, str]) -> Any:
    settings = Settings()
    with catalogue_topics(settings, "security") as prefix:
        codec = Codec(topic_prefix=prefix)
        appender = TransactionalAppender(
            settings.kafka_bootstrap, f"tx-{prefix}", prefix + "sfe.ingest.checkpoints", codec
        )
        ingestor = Ingestor(
            appender, codec, EchoPolicy("sfe-pipeline"), None, IngestSettings(topic_prefix=prefix)
        )
        ingestor.start()
        current, previous = tmp_path / "ingress-secret", tmp_path / "ingress-secret-previous"
        current.write_text(random_secrets["ingress"] + "\n")
        previous.write_text(random_secrets["ingress_previous"] + "\n")
        secret_set = Settings(
            ingress_secret_file=current, ingress_secret_previous_file=previous
        ).ingress_secrets()
        client = TestClient(TestServer(Ingress(ingestor, ORG, secret_set).app()))
        await client.start_server()
        try:
            yield client, current, previous
        finally:
            await client.close()


def webhook_body(delivery: str) -> bytes:
    return json.dumps(
        {
            "organizationId": ORG,
            "deliveryId": delivery,
            "changes": [
                {
                    "entity": "Lead",
                    "recordId": "00Q5g00000ABCDEAAA",
                    "changeType": "UPDATE",
                    "commitTimestamp": "2026-11-25T10:00:00Z",
                    "fields": {"Status": "Working"},
                }
            ],
        }
    ).encode()


@pytest.mark.integration
async def test_ingress_accepts_current_and_previous_secret_during_rotation(
    stack: Settings, ingress_with_files: Any, random_secrets: dict[str, str]
) -> None:
    client, current, previous = ingress_with_files

    async def status(secret: str, delivery: str) -> int:
        body = webhook_body(delivery)
        headers = {SIGNATURE_HEADER: sign(secret.encode(), body)}
        return (await client.post("/webhook", data=body, headers=headers)).status

    new, old = random_secrets["ingress"], random_secrets["ingress_previous"]
    assert await status(new, "rot-1") == 202
    assert await status(old, "rot-2") == 202
    assert await status("not-the-secret", "rot-3") == 401
    outbound = "/outbound-messages?token="
    assert (await client.post(outbound + old, data=b"<x/>")).status == 200  # dead-lettered
    # The rotation ends: the previous secret is removed from its mount, no restart.
    replace_file(previous, b"")
    assert await status(old, "rot-4") == 401
    assert (await client.post(outbound + old, data=b"<x/>")).status == 401
    # A new rotation starts: a new current secret, the old current becomes previous.
    newest = "whnew-" + secrets.token_urlsafe(16)
    replace_file(previous, new.encode())
    replace_file(current, newest.encode())
    assert await status(newest, "rot-5") == 202
    assert await status(new, "rot-6") == 202


def test_ingress_refuses_to_start_without_a_secret() -> None:
    empty = SecretSet(SecretSource("SFE_INGRESS_SECRET"), SecretSource("SFE_X_PREVIOUS"))
    with pytest.raises(ValueError, match="SFE_INGRESS_SECRET"):
        Ingress(None, ORG, empty)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="SFE_INGRESS_SECRET"):
        Ingress(None, ORG, b"")  # type: ignore[arg-type]


# --- no leaks: an end-to-end slice with every logger at DEBUG ------------------------------


@pytest.mark.integration
async def test_no_secret_appears_in_logs_reprs_or_errors(
    stack: Settings,
    sfe_env: pytest.MonkeyPatch,
    sim: RunningSimulator,
    key_file: Path,
    app_keys: dict[str, Path],
    random_secrets: dict[str, str],
    captured_logs: io.StringIO,
    ingress_with_files: Any,
) -> None:
    for name, value in {
        "SFE_SF_LOGIN_URL": sim.url,
        "SFE_SF_CA_BUNDLE": str(sim.state.tls_files.ca_cert),
        "SFE_SF_PRIVATE_KEY_FILE": str(key_file),
        "SFE_SF_PASSWORD": random_secrets["password"],
        "SFE_SF_CLIENT_SECRET": random_secrets["client_secret"],
        "SFE_INGRESS_SECRET": random_secrets["ingress"],
        "SFE_DATABASE_URL": f"postgresql+psycopg://sfe:{random_secrets['db_password']}@h:5/d",
    }.items():
        sfe_env.setenv(name, value)
    settings = load_settings()
    config = auth_config(settings)
    assert config.flow == "jwt"
    careless = logging.getLogger("sfe.careless")
    texts: list[str] = [repr(settings), str(settings), settings.model_dump_json(), repr(config)]

    # Log in with JWT, make REST calls, force a re-auth.
    sf = connect(config)
    lead = leads(sf).create({"LastName": "Leak", "Company": "Probe Inc"})
    assert leads(sf).get(lead["id"])["Company"] == "Probe Inc"
    first_token = sf.session_id
    fault(sim, action="expire_sessions")
    assert sf.query(f"SELECT Id FROM Lead WHERE Id = '{lead['id']}'")["totalSize"] == 1
    assert sf.session_id != first_token and sf.tokens.logins == 2
    # Code that logs what it should not: the filter still removes the credentials.
    careless.debug("calling with headers %s", sf.headers)
    careless.info("token answer %s", {"access_token": sf.session_id, "instance_url": sim.url})
    careless.warning("settings %r, config %r, cache %r", settings, config, sf.tokens)
    careless.debug("password was %s", random_secrets["password"])
    texts += [repr(sf), repr(sf.tokens), repr(sf.tokens.credentials())]
    texts.append(repr(Credentials(first_token, sim.url, "5Aep8-refresh")))

    # Failing logins: their exceptions name the problem, never the credential.
    failures: list[Callable[[], object]] = [
        lambda: login(replace(config, private_key_file=app_keys["new_key"]), sf.session),
        lambda: login(
            replace(config, private_key_file=None, auth_flow="password", password="wrong"),
            sf.session,
        ),
        lambda: login(
            replace(config, private_key_file=None, private_key="-----BEGIN PRIVATE KEY-----\n"),
            sf.session,
        ),
        lambda: jwt_assertion(replace(config, private_key_file=key_file.with_name("gone"))),
    ]
    for failure in failures:
        with pytest.raises(LoginFailed) as failed:
            failure()
        texts += [str(failed.value), repr(failed.value)]
        careless.error("login failed", exc_info=failed.value)

    # The ingress: a webhook and an Outbound Message whose URL carries the token.
    client, _, _ = ingress_with_files
    body = webhook_body("leak-1")
    signed = {SIGNATURE_HEADER: sign(random_secrets["ingress"].encode(), body)}
    assert (await client.post("/webhook", data=body, headers=signed)).status == 202
    token_url = "/outbound-messages?token=" + random_secrets["ingress"]
    assert (await client.post(token_url, data=b"<x/>")).status == 200
    careless.debug("webhook headers %s", signed)

    logs = captured_logs.getvalue()
    assert "logged in to" in logs and "salesforce token renewed" in logs  # capture works
    assert "urllib3.connectionpool" in logs
    everything = "\n".join([logs, *texts, generate_latest(REGISTRY).decode()])
    issued = list(sim.state.authority.issued_tokens)
    assert first_token in issued and len(issued) >= 2
    leaks: dict[str, list[str]] = {
        "access tokens": issued,
        "private key": [line for line in key_body_lines(key_file) if len(line) >= 16],
        "webhook secret": [random_secrets["ingress"]],
        "password": [random_secrets["password"]],
        "client secret": [random_secrets["client_secret"]],
        "database password": [random_secrets["db_password"]],
    }
    for kind, values in leaks.items():
        found = [value[:6] + "..." for value in values if value in everything]
        assert found == [], f"{kind} leaked: {found}"
    assert "aiohttp.access" in logs and "/outbound-messages?token=[REDACTED]" in logs
