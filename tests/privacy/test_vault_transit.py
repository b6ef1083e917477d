"""Subject keys wrapped by Vault's transit engine, against a server speaking its batch API."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import SecretStr
from sqlalchemy import Engine, select, update

from schema_registry.events import ChangeType
from sfe.privacy.keystore import KeyStoreError, PostgresKeyStore, subject_keys
from sfe.privacy.setup import privacy_from
from sfe.privacy.vault import VaultTransitWrapper
from sfe.secrets import VaultClient
from sfe.settings import Settings, SettingsError
from tests.http_helpers import JsonHandler, LocalServer
from tests.security.test_audit import database, engine
from tests.workers.support import change

pytestmark = pytest.mark.integration

__all__ = ["database", "engine"]

LEAD, OTHER = "00Q8d0000000301AAA", "00Q8d0000000302AAA"
TOKEN = "hvs.test-transit-token"


class TransitVault(LocalServer):
    """An HTTP server answering like Vault's transit encrypt and decrypt endpoints (batch)."""

    def __init__(self) -> None:
        self.key = AESGCM(os.urandom(32))
        self.requests: list[str] = []
        vault = self

        class Handler(JsonHandler):
            def on_post(self) -> None:
                if self.headers.get("X-Vault-Token") != TOKEN:
                    return self.reply(403, {"errors": ["permission denied"]})
                body = self.read_json()
                vault.requests.append(self.path)
                if self.path == "/v1/transit/encrypt/sfe-privacy":
                    results = [vault.encrypt(item["plaintext"]) for item in body["batch_input"]]
                elif self.path == "/v1/transit/decrypt/sfe-privacy":
                    results = [vault.decrypt(item["ciphertext"]) for item in body["batch_input"]]
                else:
                    return self.reply(404, {"errors": []})
                self.reply(200, {"data": {"batch_results": results}, "warnings": None})

        super().__init__(Handler)

    def encrypt(self, plaintext: str) -> dict[str, Any]:
        nonce = os.urandom(12)
        sealed = nonce + self.key.encrypt(nonce, base64.b64decode(plaintext), None)
        return {"ciphertext": "vault:v1:" + base64.b64encode(sealed).decode(), "key_version": 1}

    def decrypt(self, ciphertext: str) -> dict[str, Any]:
        sealed = base64.b64decode(ciphertext.removeprefix("vault:v1:"))
        plain = self.key.decrypt(sealed[:12], sealed[12:], None)
        return {"plaintext": base64.b64encode(plain).decode()}


@pytest.fixture
def vault() -> Iterator[TransitVault]:
    server = TransitVault()
    yield server
    server.stop()


def store(engine: Engine, vault: TransitVault, token: str = TOKEN) -> PostgresKeyStore:
    wrapper = VaultTransitWrapper(VaultClient(vault.address, token))
    return PostgresKeyStore(engine, wrapper, "test.")


def test_keys_are_wrapped_by_vault_one_request_per_batch(
    engine: Engine, vault: TransitVault
) -> None:
    subjects = [f"00Q8d00000004{n:02d}AAA" for n in range(50)]
    made = store(engine, vault).keys(subjects, create=True)
    assert vault.requests == ["/v1/transit/encrypt/sfe-privacy"]
    with engine.connect() as connection:
        rows = connection.execute(select(subject_keys)).all()
    assert {row.wrapped_by for row in rows} == {"vault-transit:transit/sfe-privacy"}
    assert all(bytes(row.wrapped_key).startswith(b"vault:v1:") for row in rows)
    assert all(made[row.subject] not in bytes(row.wrapped_key) for row in rows)
    assert store(engine, vault).keys(subjects, create=False) == made
    assert vault.requests[1:] == ["/v1/transit/decrypt/sfe-privacy"]


def test_a_wrapped_key_moved_to_another_subject_does_not_open(
    engine: Engine, vault: TransitVault
) -> None:
    keys = store(engine, vault)
    keys.keys([LEAD, OTHER], create=True)
    with engine.begin() as connection:
        wrapped = connection.execute(
            select(subject_keys.c.wrapped_key).where(subject_keys.c.subject == LEAD)
        ).scalar_one()
        connection.execute(
            update(subject_keys).where(subject_keys.c.subject == OTHER).values(wrapped_key=wrapped)
        )
    with pytest.raises(KeyStoreError, match="wrapped for another subject"):
        keys.keys([OTHER], create=False)


def test_a_refusing_vault_is_a_clear_error_without_the_token(
    engine: Engine, vault: TransitVault
) -> None:
    with pytest.raises(KeyStoreError) as refused:
        store(engine, vault, token="hvs.wrong").keys([LEAD], create=True)
    assert "vault-transit:transit/sfe-privacy encrypt: Vault answered HTTP 403" in str(
        refused.value
    )
    assert "hvs." not in str(refused.value)


def test_settings_choose_vault_transit_and_need_its_address(
    stack: Settings, database: str, vault: TransitVault, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = stack.model_copy(
        update={
            "privacy_key_wrapper": "vault-transit",
            "topic_prefix": "test.",
            "database_url": SecretStr(database),
        }
    )
    monkeypatch.delenv("VAULT_ADDR", raising=False)
    with pytest.raises(SettingsError, match=r"SFE_PRIVACY_KEY_WRAPPER: .*VAULT_ADDR"):
        privacy_from(settings)
    monkeypatch.setenv("VAULT_ADDR", vault.address)
    monkeypatch.setenv("VAULT_TOKEN", TOKEN)
    privacy = privacy_from(settings)
    assert privacy is not None
    lead = change("Lead", LEAD, ChangeType.CREATE, {"Email": "ada@example.org"})
    (sealed,) = privacy.seal([lead])
    assert sealed.fields["Email"] != "ada@example.org"
    assert privacy.unseal([sealed]) == [lead]
    assert privacy.store.subjects_with_email(privacy.email_digest("ADA@example.org")) == [LEAD]
