"""Settings: defaults for the local stack, and bad values rejected naming the variable."""

from __future__ import annotations

import pytest

from sfe.settings import SettingsError, load_settings


def test_defaults_point_at_the_local_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("SFE_KAFKA_BOOTSTRAP", "SFE_DATABASE_URL"):
        monkeypatch.delenv(variable, raising=False)
    settings = load_settings()
    assert settings.kafka_bootstrap == "127.0.0.1:9092"
    assert settings.kafka_port == 9092
    assert settings.sqlalchemy_url().startswith("postgresql+psycopg://")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SFE_KAFKA_BOOTSTRAP", "nonsense"),
        ("SFE_KAFKA_BOOTSTRAP", "127.0.0.1:99999"),
        ("SFE_DATABASE_URL", "mysql://u:p@h/db"),
        ("SFE_DATABASE_URL", "not a url"),
        ("SFE_SF_LOGIN_URL", "ftp://example"),
        ("SFE_SF_API_VERSION", "62"),
        ("SFE_METRICS_PORT", "seventy"),
        ("SFE_LOG_LEVEL", "LOUD"),
    ],
)
def test_bad_value_fails_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as excinfo:
        load_settings()
    assert variable in str(excinfo.value)


def test_secrets_do_not_print(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SFE_DATABASE_URL", "postgresql+psycopg://sfe:hunter2secret@127.0.0.1:5/sfe")
    monkeypatch.setenv("SFE_SF_PASSWORD", "s3cr3t-pw")
    settings = load_settings()
    rendered = repr(settings) + str(settings) + settings.model_dump_json()
    assert "hunter2secret" not in rendered
    assert "s3cr3t-pw" not in rendered
    assert settings.sf_password is not None
    assert settings.sf_password.get_secret_value() == "s3cr3t-pw"


def test_settings_are_frozen() -> None:
    settings = load_settings()
    with pytest.raises(Exception, match="frozen"):
        settings.kafka_bootstrap = "other:1"  # type: ignore[misc]
