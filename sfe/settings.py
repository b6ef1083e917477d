"""Process settings: one frozen, typed object built once at start from `SFE_*` variables.

Every value comes from the environment (prefix ``SFE_``) with defaults that point at
the local stack started by ``sfe stack up``. Secrets are ``SecretStr`` so they never
print. A bad value raises :class:`SettingsError`, whose message names the variable,
so a misconfigured process fails at start rather than half-way through a run.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

ENV_PREFIX = "SFE_"
_HOST_PORT = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")


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
    # Prefix of every topic name (an isolated environment on a shared cluster), e.g. "staging.".
    topic_prefix: str = Field(default="", pattern=r"^[A-Za-z0-9._-]*$", max_length=100)

    # PostgreSQL: the read models. Role and database are created from this URL.
    database_url: SecretStr = SecretStr("postgresql+psycopg://sfe:sfe@127.0.0.1:55432/sfe")
    postgres_bin_dir: Path | None = None

    # Salesforce (the local org simulator by default).
    sf_login_url: str = "https://127.0.0.1:8443"
    sf_api_version: str = "62.0"
    sf_client_id: str = "sfe-local-client"
    sf_client_secret: SecretStr | None = None
    sf_username: str = "integration@sfe.local"
    sf_password: SecretStr | None = None
    sf_private_key_file: Path | None = None
    # The JWT key itself (PEM) when it comes from the environment rather than a file.
    sf_private_key: SecretStr | None = None
    sf_jwt_audience: str | None = None
    sf_ca_bundle: Path | None = None
    sf_call_options_client: str = "sfe-pipeline"
    # Id of the integration user: CDC events it committed are our own writes echoed back.
    sf_integration_user_id: str | None = None
    # The org whose Outbound Messages and webhooks the ingress accepts (15 or 18 chars).
    sf_organization_id: str | None = None
    # Shared secret of the HTTP ingress: HMAC key of webhooks, token of Outbound Messages.
    ingress_secret: SecretStr | None = None
    ingress_bind: str = "127.0.0.1"
    ingress_port: int = Field(default=8088, ge=0, le=65535)

    # The Salesforce org simulator (`sfe sim serve`).
    sim_host: str = "127.0.0.1"
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
    notify_slack_webhook_url: SecretStr | None = None
    notify_slack_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    notify_slack_ca_bundle: Path | None = None
    notify_smtp_host: str | None = None
    notify_smtp_port: int = Field(default=587, ge=1, le=65535)
    notify_smtp_security: Literal["starttls", "ssl", "none"] = "starttls"
    notify_smtp_username: str | None = None
    notify_smtp_password: SecretStr | None = None
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
    def _database_url_is_postgres(cls, value: SecretStr) -> SecretStr:
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
        return value.rstrip("/") if value else value

    @field_validator("notify_slack_webhook_url")
    @classmethod
    def _webhook_is_https(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not re.match(r"^https://[^\s/]+/\S*$", value.get_secret_value()):
            # The URL is a secret: the message must not repeat it.
            raise ValueError("expected an https:// URL (a Slack incoming webhook)")
        return value

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

    def sqlalchemy_url(self) -> str:
        """The database URL with its secret revealed, for engine creation only."""
        return self.database_url.get_secret_value()


def load_settings() -> Settings:
    """Build settings from the environment, translating validation errors to :class:`SettingsError`."""
    try:
        return Settings()
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
