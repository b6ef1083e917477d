"""Process settings: one frozen, typed object built once at start from `SFE_*` variables.

Every value comes from the environment (prefix ``SFE_``) with defaults that point at
the local stack started by ``sfe stack up``. Secrets are :class:`sfe.secrets.Secret`
(``Secret('****')`` in every rendering). A secret ``SFE_X`` can instead come from a
mounted file ``SFE_X_FILE`` or a Vault KV v2 reference ``vault://mount/path#key``
(:mod:`sfe.secrets`); the Salesforce key and the ingress secrets are read lazily and
re-read on change (rotation without restart), the others once at start. A bad value
raises :class:`SettingsError`, whose message names the variable, so a misconfigured
process fails at start rather than half-way through a run.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from sfe.secrets import (
    VAULT_SCHEME,
    Secret,
    SecretSet,
    SecretSource,
    SecretUnavailable,
    VaultRef,
    remember,
)

ENV_PREFIX = "SFE_"
_HOST_PORT = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")

KafkaSecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
KafkaSaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
DatabaseSslMode = Literal["disable", "prefer", "require", "verify-ca", "verify-full"]


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the environment variable."""


class Settings(BaseSettings):
    """All configuration of an ``sfe`` process."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore")

    # Local state and logs of the stack (Kafka data, PostgreSQL cluster, pid files).
    state_dir: Path = Field(default_factory=lambda: Path.cwd() / ".stack")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # Kafka: the log of record.
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_controller_port: int = Field(default=9093, ge=1, le=65535)
    kafka_version: str = "4.1.1"
    kafka_heap: str = "768m"
    schema_registry_url: str | None = None
    # Credentials of the schema registry, "user:password" (Confluent Cloud: API key and
    # secret), and the CA bundle its HTTPS certificate is checked against (unset: the
    # system's). Credentials never go in the URL.
    schema_registry_basic_auth: Secret | None = None
    schema_registry_ca_location: Path | None = None
    # Prefix of every topic name (an isolated environment on a shared cluster), e.g. "staging.".
    topic_prefix: str = Field(default="", pattern=r"^[A-Za-z0-9._-]*$", max_length=100)
    # Security of every Kafka client connection (sfe.kafka_security): PLAINTEXT for the local
    # stack; SSL, SASL_PLAINTEXT or SASL_SSL for a secured cluster (docs/network.md).
    kafka_security_protocol: KafkaSecurityProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: KafkaSaslMechanism = "SCRAM-SHA-512"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: Secret | None = None
    # PEM bundle of the CA(s) that signed the brokers' certificates; unset: the system's.
    kafka_ssl_ca_location: Path | None = None
    # Mutual TLS: the client's certificate (PEM, chain included) and private key (PEM,
    # encrypted with the password when one is set), for brokers with ssl.client.auth=required.
    kafka_ssl_certificate_location: Path | None = None
    kafka_ssl_key_location: Path | None = None
    kafka_ssl_key_password: Secret | None = None

    # PostgreSQL: the read models. Role and database are created from this URL.
    database_url: Secret = Secret("postgresql+psycopg://sfe:sfe@127.0.0.1:55432/sfe")
    # TLS to PostgreSQL: libpq's sslmode and sslrootcert, added to the URL by sqlalchemy_url()
    # (they override the URL's own). Unset: the URL's, else libpq's default (prefer).
    database_sslmode: DatabaseSslMode | None = None
    database_sslrootcert: Path | None = None
    postgres_bin_dir: Path | None = None

    # Salesforce (the local org simulator by default).
    sf_login_url: str = "https://127.0.0.1:8443"
    sf_api_version: str = "62.0"
    sf_client_id: str = "sfe-local-client"
    sf_client_secret: Secret | None = None
    sf_username: str = "integration@sfe.local"
    sf_password: Secret | None = None
    # The JWT signing key: a mounted file (re-read at every token refresh, so replacing it
    # rotates the key), or the PEM itself / a vault://mount/path#key reference.
    sf_private_key_file: Path | None = None
    sf_private_key: Secret | None = None
    sf_jwt_audience: str | None = None
    # The OAuth grant: "auto" picks JWT bearer whenever a key is set (the production flow);
    # the password flow only against a local login URL (the simulator) unless named here.
    sf_auth_flow: Literal["auto", "jwt", "password"] = "auto"
    # Salesforce's token answer carries no expiry: the session timeout of the org (Session
    # Settings, 2 h by default). The token is renewed at 90 % of it, or on INVALID_SESSION_ID.
    sf_session_seconds: float = Field(default=7200.0, gt=0)
    sf_ca_bundle: Path | None = None
    sf_call_options_client: str = "sfe-pipeline"
    # Id of the integration user: CDC events it committed are our own writes echoed back.
    sf_integration_user_id: str | None = None
    # The org whose Outbound Messages and webhooks the ingress accepts (15 or 18 chars).
    sf_organization_id: str | None = None
    # Shared secret of the HTTP ingress: HMAC key of webhooks, token of Outbound Messages.
    # During a rotation the previous one is accepted too; the *_FILE variants are re-read
    # when the file changes.
    ingress_secret: Secret | None = None
    ingress_secret_file: Path | None = None
    ingress_secret_previous: Secret | None = None
    ingress_secret_previous_file: Path | None = None
    ingress_bind: str = "127.0.0.1"
    ingress_port: int = Field(default=8088, ge=0, le=65535)

    # The Salesforce org simulator (`sfe sim serve`).
    sim_host: str = "127.0.0.1"
    # Bearer token of the simulator's admin endpoint /_sim; required to listen beyond loopback.
    sim_admin_token: Secret | None = None
    sim_port: int = Field(default=8443, ge=0, le=65535)
    sim_sqlite_file: Path | None = None
    sim_jwt_cert_file: Path | None = None
    sim_token_ttl_seconds: float = Field(default=7200.0, gt=0)
    sim_daily_api_limit: int = Field(default=100_000, ge=1)
    sim_event_retention_seconds: float = Field(default=72 * 3600.0, gt=0)

    # The Salesforce sink (`sfe sink salesforce`): its memory namespace in PostgreSQL, the
    # commands per batch, and the API budget it leaves to others (`Sforce-Limit-Info`).
    sink_name: str = Field(default="salesforce", pattern=r"^[A-Za-z0-9._-]+$", max_length=100)
    sink_batch_size: int = Field(default=10_000, ge=1, le=50_000)
    # Updates of one object and field set at or above this many records in a batch go
    # through a Bulk API 2.0 job (about six calls for any volume); 0: never.
    sink_bulk_threshold: int = Field(default=5000, ge=0)
    sink_api_reserve: int = Field(default=5000, ge=0)
    sink_slowdown_window: int = Field(default=5000, ge=0)
    sink_max_delay_seconds: float = Field(default=2.0, ge=0)
    sink_budget_probe_seconds: float = Field(default=60.0, gt=0)
    # The External ID field (on every object the agents create: Task, Case) that the sink
    # upserts creates on, holding the command id; empty: plain creates, which a lost
    # answer can duplicate.
    sink_create_key_field: str = Field(
        default="SFE_Command_Id__c", pattern=r"^([A-Za-z][A-Za-z0-9_]*)?$", max_length=80
    )

    # The notification sink (`sfe sink notifications`), off until a transport is set: a Slack
    # incoming webhook and/or an SMTP server. Its memory namespace, the commands per batch
    # (the most a crash can send twice) and how long one command's failures are retried.
    notify_sink_name: str = Field(
        default="notifications", pattern=r"^[A-Za-z0-9._-]+$", max_length=100
    )
    notify_batch_size: int = Field(default=1, ge=1, le=1000)
    notify_max_attempts: int = Field(default=5, ge=1, le=50)
    notify_backoff_seconds: float = Field(default=0.5, gt=0, le=60)
    # Total wait per command; below Kafka's 300 s poll interval, which a batch must not outlive.
    notify_retry_seconds: float = Field(default=120.0, ge=0, le=240)
    notify_slack_webhook_url: Secret | None = None
    notify_slack_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    notify_slack_ca_bundle: Path | None = None
    notify_smtp_host: str | None = None
    notify_smtp_port: int = Field(default=587, ge=1, le=65535)
    notify_smtp_security: Literal["starttls", "ssl", "none"] = "starttls"
    notify_smtp_username: str | None = None
    notify_smtp_password: Secret | None = None
    notify_smtp_from: str | None = None
    notify_smtp_timeout_seconds: float = Field(default=30.0, gt=0, le=120)
    notify_smtp_ca_bundle: Path | None = None
    # Addresses of recipients that are not addresses (user ids, roles): name=address,...
    notify_email_aliases: str = ""
    # Where mail to any other non-address recipient goes; unset: such commands fail.
    notify_email_fallback: str | None = None

    # The workers (`sfe worker`): batch size of the lead path and the flows' thresholds.
    worker_batch_size: int = Field(default=2000, ge=1, le=50_000)
    worker_batch_wait_ms: int = Field(default=100, ge=0, le=60_000)
    # Which facts start lead qualification: CDC Lead creates, New_Lead__e, or both.
    lead_triggers: Literal["cdc", "platform_event", "both"] = "cdc"
    lead_einstein_weight: float = Field(default=0.4, ge=0, le=1)
    lead_senior_ae_above: float = Field(default=80.0, ge=0, le=100)
    lead_nurture_above: float = Field(default=50.0, ge=0, le=100)
    # User ids of the senior AEs high-value leads are assigned to (comma-separated).
    lead_senior_ae_queue: str = Field(default="", pattern=r"^[A-Za-z0-9, ]*$")
    lead_slack_channel: str = "#high-value-leads"
    # Enrichment service (company intelligence, deep analysis); unset: the local provider.
    enrichment_url: str | None = None
    enrichment_timeout_seconds: float = Field(default=2.0, gt=0, le=60)
    opportunity_at_risk_below: float = Field(default=0.30, ge=0, le=1)
    onboarding_step_timeout_seconds: float = Field(default=120.0, gt=0)
    onboarding_max_attempts: int = Field(default=3, ge=1, le=20)
    onboarding_portal_domain: str = "portal.example.com"
    # The daily churn batch: a cron expression in the given time zone.
    churn_schedule: str = "0 2 * * *"
    churn_timezone: str = "UTC"
    churn_high_risk_above: float = Field(default=0.70, ge=0, le=1)
    upsell_candidate_at_least: float = Field(default=0.5, ge=0, le=1)

    # The audit trail (`sfe audit`): entries older than this many days go at `sfe audit prune`
    # (default 7 years, leap days included).
    audit_retention_days: int = Field(default=2557, ge=1, le=36_500)

    # Personal data at rest (sfe.privacy, docs/privacy.md): personal fields are sealed with
    # AES-256-GCM under a key per data subject, the keys wrapped by the master key (base64
    # of 32 bytes; *_FILE and vault:// work). Unset: the local stack's key file
    # (<state_dir>/privacy/master.key, made by `sfe stack up`), else processes refuse to start.
    privacy_encryption: bool = True
    privacy_master_key: Secret | None = None
    # During a master-key rotation, the other master key: keys it wrapped are read too, it
    # never wraps one (docs/privacy.md, "Rotating the master key").
    privacy_master_key_secondary: Secret | None = None
    # Or wrap the subject keys with a key of Vault's transit engine (VAULT_ADDR, VAULT_TOKEN):
    # "vault-transit", with the engine's mount and the key's name.
    privacy_key_wrapper: Literal["master", "vault-transit"] = "master"
    privacy_vault_transit_mount: str = Field(default="transit", pattern=r"^[A-Za-z0-9_./-]+$")
    privacy_vault_transit_key: str = Field(default="sfe-privacy", pattern=r"^[A-Za-z0-9_.-]+$")
    # Extra personal fields, as Object.Field,Object.Field (custom fields holding personal data).
    privacy_extra_fields: str = Field(default="", pattern=r"^[A-Za-z0-9_.,\s]*$")
    # How long a process keeps subject keys: an erasure reaches running processes within it.
    privacy_key_cache_seconds: float = Field(default=60.0, ge=0, le=3600)

    # Model registry: ONNX files, manifests and evaluation reports (default: <state_dir>/models).
    model_dir: Path | None = None

    # Observability.
    metrics_bind: str = "127.0.0.1"
    metrics_port: int = Field(default=9464, ge=0, le=65535)
    # How often workers publish the PSI of their models' recent inputs (sfe_feature_psi).
    drift_report_seconds: float = Field(default=60.0, gt=0)

    @field_validator("kafka_bootstrap")
    @classmethod
    def _bootstrap_is_host_port_list(cls, value: str) -> str:
        servers = [part.strip() for part in value.split(",")]
        for server in servers:
            match = _HOST_PORT.match(server)
            if not match or not 0 < int(match.group(2)) < 65536:
                raise ValueError(f"expected host:port[,host:port...], got {value!r}")
        return ",".join(servers)

    @field_validator("database_url")
    @classmethod
    def _database_url_is_postgres(cls, value: Secret) -> Secret:
        try:
            url = make_url(value.get_secret_value())
        except ArgumentError:
            raise ValueError(
                "not a database URL (postgresql+psycopg://user:pass@host:port/db)"
            ) from None
        if not url.drivername.startswith("postgresql"):
            raise ValueError(f"expected a postgresql URL, got driver {url.drivername!r}")
        if not url.database:
            raise ValueError("the URL names no database")
        return value

    @field_validator("churn_timezone")
    @classmethod
    def _is_time_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"not an IANA time zone such as Europe/Paris: {value!r}") from None
        return value

    @field_validator("churn_schedule")
    @classmethod
    def _is_cron(cls, value: str) -> str:
        from croniter import croniter

        if not croniter.is_valid(value):
            raise ValueError(f"not a cron expression such as '0 2 * * *': {value!r}")
        return value

    @field_validator("sf_login_url", "schema_registry_url", "enrichment_url")
    @classmethod
    def _is_http_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError(f"expected an http(s) URL, got {value!r}")
        if value is not None and "@" in value.split("://", 1)[1].split("/", 1)[0]:
            raise ValueError(
                "credentials do not go in the URL (it is printed): "
                "use SFE_SCHEMA_REGISTRY_BASIC_AUTH for the schema registry"
            )
        return value.rstrip("/") if value else value

    @field_validator("schema_registry_basic_auth")
    @classmethod
    def _is_user_and_password(cls, value: Secret | None) -> Secret | None:
        if value is not None and ":" not in value.get_secret_value():
            raise ValueError("expected user:password")
        return value

    @field_validator("notify_slack_webhook_url")
    @classmethod
    def _webhook_is_https(cls, value: Secret | None) -> Secret | None:
        if value is not None and not re.match(r"^https://[^\s/]+/\S*$", value.get_secret_value()):
            # The URL is a secret: the message must not repeat it.
            raise ValueError("expected an https:// URL (a Slack incoming webhook)")
        return value

    @field_validator("sf_private_key", "ingress_secret", "ingress_secret_previous")
    @classmethod
    def _vault_reference_is_well_formed(cls, value: Secret | None) -> Secret | None:
        if value is not None and value.get_secret_value().startswith(VAULT_SCHEME):
            try:
                VaultRef.parse(value.get_secret_value())
            except SecretUnavailable as exc:
                raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _register_secrets_for_redaction(self) -> Settings:
        # Every secret value is known to the log filter (sfe.logging) from now on.
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, Secret) and not value.get_secret_value().startswith(VAULT_SCHEME):
                remember(value.get_secret_value())
        password = make_url(self.database_url.get_secret_value()).password
        if password:
            remember(str(password))
        return self

    @field_validator("notify_email_aliases")
    @classmethod
    def _aliases_are_name_address_pairs(cls, value: str) -> str:
        for part in filter(None, (p.strip() for p in value.split(","))):
            if not re.fullmatch(r"[^=\s]+=[^@\s=]+@[^@\s=]+\.[^@\s=]+", part):
                raise ValueError(f"expected name=address[,name=address...], got {part!r}")
        return value

    @field_validator("sf_api_version")
    @classmethod
    def _is_api_version(cls, value: str) -> str:
        if not re.fullmatch(r"\d{2}\.0", value):
            raise ValueError(f"expected a Salesforce API version such as 62.0, got {value!r}")
        return value

    @property
    def kafka_host(self) -> str:
        """Host of the first bootstrap server."""
        return self.kafka_bootstrap.split(",")[0].rsplit(":", 1)[0].strip("[]")

    @property
    def kafka_port(self) -> int:
        """Port of the first bootstrap server."""
        return int(self.kafka_bootstrap.split(",")[0].rsplit(":", 1)[1])

    @property
    def models_path(self) -> Path:
        """Root of the model registry: ``SFE_MODEL_DIR`` or ``models/`` under the state dir."""
        return self.model_dir if self.model_dir is not None else self.state_dir / "models"

    @property
    def senior_ae_queue(self) -> tuple[str, ...]:
        """The senior AE user ids of ``SFE_LEAD_SENIOR_AE_QUEUE``."""
        return tuple(p.strip() for p in self.lead_senior_ae_queue.split(",") if p.strip())

    def ingress_secrets(self) -> SecretSet:
        """The ingress secrets accepted now: current, then previous (during a rotation)."""
        return SecretSet(
            SecretSource("SFE_INGRESS_SECRET", self.ingress_secret, self.ingress_secret_file),
            SecretSource(
                "SFE_INGRESS_SECRET_PREVIOUS",
                self.ingress_secret_previous,
                self.ingress_secret_previous_file,
            ),
        )

    def sqlalchemy_url(self) -> str:
        """The database URL with its secret revealed, for engine creation only.

        ``SFE_DATABASE_SSLMODE`` and ``SFE_DATABASE_SSLROOTCERT``, when set, are added to
        its query (psycopg hands them to libpq), replacing the URL's own.
        """
        raw = self.database_url.get_secret_value()
        tls: dict[str, str] = {}
        if self.database_sslmode is not None:
            tls["sslmode"] = self.database_sslmode
        if self.database_sslrootcert is not None:
            tls["sslrootcert"] = str(self.database_sslrootcert)
        if not tls:
            return raw
        return make_url(raw).update_query_dict(tls).render_as_string(hide_password=False)


# Secrets read once at start from SFE_X_FILE or a vault:// reference in SFE_X. The JWT key
# and the ingress secrets are not among them: they are read lazily, at every use.
_SECRETS_READ_AT_START = (
    "database_url",
    "kafka_sasl_password",
    "kafka_ssl_key_password",
    "schema_registry_basic_auth",
    "sf_client_secret",
    "sf_password",
    "notify_slack_webhook_url",
    "notify_smtp_password",
    "privacy_master_key",
    "privacy_master_key_secondary",
)


def _secrets_from_files_and_vault() -> dict[str, str]:
    found: dict[str, str] = {}
    for field in _SECRETS_READ_AT_START:
        variable = ENV_PREFIX + field.upper()
        if os.environ.get(variable + "_FILE") or os.environ.get(variable, "").startswith(
            VAULT_SCHEME
        ):
            try:
                found[field] = SecretSource.from_env(variable).require()
            except SecretUnavailable as exc:
                raise SettingsError(f"invalid setting {variable}: {exc}") from None
    return found


def load_settings() -> Settings:
    """Build settings from the environment, translating validation errors to :class:`SettingsError`."""
    try:
        return Settings(**_secrets_from_files_and_vault())  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "?"
            variable = ENV_PREFIX + field.upper()
            problems.append(f"{variable}: {error['msg']}")
        raise SettingsError("invalid setting " + "; ".join(problems)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings of this process, built once."""
    return load_settings()
