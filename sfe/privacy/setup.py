"""Building :class:`~sfe.privacy.service.Privacy` and the key store from settings.

The subject keys are wrapped by the master key (``SFE_PRIVACY_MASTER_KEY``, or the
local stack's key file) or, with ``SFE_PRIVACY_KEY_WRAPPER=vault-transit``, by a key of
Vault's transit engine. ``SFE_PRIVACY_MASTER_KEY_SECONDARY`` names a second master key
whose wrapped keys are read too, during a rotation.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

from sqlalchemy import Engine, create_engine

from sfe.privacy.cipher import KEY_BYTES
from sfe.privacy.keystore import KeyWrapper, MasterKeyWrapper, PostgresKeyStore
from sfe.privacy.policy import Policy
from sfe.privacy.service import Privacy
from sfe.privacy.vault import VaultTransitWrapper
from sfe.secrets import SecretUnavailable, VaultClient, remember
from sfe.settings import Settings, SettingsError

MASTER_KEY_VARIABLE = "SFE_PRIVACY_MASTER_KEY"
SECONDARY_KEY_VARIABLE = "SFE_PRIVACY_MASTER_KEY_SECONDARY"


def local_master_key_file(settings: Settings) -> Path:
    """Where the local stack keeps its master key."""
    return settings.state_dir / "privacy" / "master.key"


def ensure_local_master_key(settings: Settings) -> Path:
    """Make the local stack's master key (32 random bytes, base64, mode 0600) if absent."""
    path = local_master_key_file(settings)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(base64.b64encode(os.urandom(KEY_BYTES)).decode() + "\n")
    return path


def master_key(settings: Settings) -> bytes:
    """The configured master key, else the local stack's; :class:`SettingsError` if neither."""
    if settings.privacy_master_key is not None:
        return _decode(settings.privacy_master_key.get_secret_value(), MASTER_KEY_VARIABLE)
    path = local_master_key_file(settings)
    if not path.exists():
        raise SettingsError(
            f"invalid setting {MASTER_KEY_VARIABLE}: not set, and the local stack has no key "
            f"at {path}. Set it (or {MASTER_KEY_VARIABLE}_FILE) to the base64 of 32 random "
            "bytes, e.g. `openssl rand -base64 32`, or run `sfe stack up` for a local one"
        )
    text = path.read_text().strip()
    remember(text)  # the log filter scrubs it like any configured secret
    return _decode(text, f"{MASTER_KEY_VARIABLE} (from {path})")


def key_wrapper(settings: Settings) -> KeyWrapper:
    """What wraps the subject keys: the master key, or Vault's transit engine."""
    if settings.privacy_key_wrapper == "vault-transit":
        try:
            client = VaultClient.from_env()
        except SecretUnavailable as exc:
            raise SettingsError(f"invalid setting SFE_PRIVACY_KEY_WRAPPER: {exc}") from None
        return VaultTransitWrapper(
            client, settings.privacy_vault_transit_mount, settings.privacy_vault_transit_key
        )
    return MasterKeyWrapper(master_key(settings))


def secondary_wrappers(settings: Settings) -> list[KeyWrapper]:
    """The wrappers read but never used to wrap: the secondary master key's, if set."""
    secret = settings.privacy_master_key_secondary
    if secret is None:
        return []
    return [MasterKeyWrapper(_decode(secret.get_secret_value(), SECONDARY_KEY_VARIABLE))]


def key_store(settings: Settings, engine: Engine | None = None) -> PostgresKeyStore:
    """The subject keys of this environment (namespace: the topic prefix)."""
    engine = engine or create_engine(settings.sqlalchemy_url(), pool_pre_ping=True)
    return PostgresKeyStore(
        engine, key_wrapper(settings), settings.topic_prefix, secondary_wrappers(settings)
    )


def privacy_from(settings: Settings, engine: Engine | None = None) -> Privacy | None:
    """The process's :class:`Privacy`, or None when ``SFE_PRIVACY_ENCRYPTION`` is off.

    Settings are checked now (a bad one raises :class:`SettingsError` naming it); the
    key store is first read when the first event is sealed or opened.
    """
    if not settings.privacy_encryption:
        return None
    try:
        policy = Policy.with_extras(settings.privacy_extra_fields)
    except ValueError as exc:
        raise SettingsError(f"invalid setting SFE_PRIVACY_EXTRA_FIELDS: {exc}") from None
    return Privacy(
        key_store(settings, engine),
        policy=policy,
        cache_seconds=settings.privacy_key_cache_seconds,
    )


def _decode(text: str, variable: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SettingsError(f"invalid setting {variable}: not base64") from None
    if len(key) != KEY_BYTES:
        raise SettingsError(
            f"invalid setting {variable}: decodes to {len(key)} bytes, not {KEY_BYTES}"
        )
    return key
