"""The Confluent wire format through a schema registry that needs HTTPS and credentials.

A small server speaks the two endpoints the serializers use (register a schema under a
subject, fetch a schema by id) over TLS with HTTP basic authentication, like Confluent
Cloud's registry. Events encode and decode through it with the settings' credentials
and CA; wrong credentials and credentials in the URL are refused.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from schema_registry.codec import Codec
from schema_registry.events import ChangeType
from schema_registry.wire import ConfluentFormat
from sfe.secrets import Secret
from sfe.settings import Settings, SettingsError
from simulator.tls import TlsFiles, ensure_tls
from tests.http_helpers import JsonHandler, LocalServer
from tests.workers.support import change

USER, PASSWORD = "registry-key", "registry-secret"


class SecureRegistry(LocalServer):
    """A TLS schema registry accepting only ``USER:PASSWORD``."""

    def __init__(self, tls: TlsFiles) -> None:
        self.schemas: list[str] = []
        self.refused = 0
        registry = self
        expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

        class Handler(JsonHandler):
            content_type = "application/vnd.schemaregistry.v1+json"

            def _authorized(self) -> bool:
                if self.headers.get("Authorization") == expected:
                    return True
                registry.refused += 1
                self.reply(401, {"error_code": 401, "message": "Unauthorized"})
                return False

            def on_post(self) -> None:
                if not self._authorized():
                    return
                body = self.read_json()
                if not re.match(r"^/subjects/[^/]+/versions", self.path):
                    return self.reply(404, {"error_code": 404, "message": "not found"})
                if body["schema"] not in registry.schemas:
                    registry.schemas.append(body["schema"])
                self.reply(200, {"id": registry.schemas.index(body["schema"]) + 1})

            def on_get(self) -> None:
                if not self._authorized():
                    return
                found = re.match(r"^/schemas/ids/(\d+)", self.path)
                if found is None or int(found[1]) > len(registry.schemas):
                    return self.reply(404, {"error_code": 40403, "message": "not found"})
                self.reply(200, {"schema": registry.schemas[int(found[1]) - 1]})

        super().__init__(Handler, tls=(tls.server_cert, tls.server_key))


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return ensure_tls(tmp_path_factory.mktemp("registry-tls"), "127.0.0.1")


@pytest.fixture
def registry(tls: TlsFiles) -> Iterator[SecureRegistry]:
    server = SecureRegistry(tls)
    yield server
    server.stop()


def lead() -> Any:
    return change("Lead", "00Q8d0000000501AAA", ChangeType.CREATE, {"Company": "Acme"})


def test_events_cross_a_registry_that_needs_tls_and_credentials(
    registry: SecureRegistry, tls: TlsFiles
) -> None:
    settings = Settings(
        schema_registry_url=registry.address,
        schema_registry_basic_auth=Secret(f"{USER}:{PASSWORD}"),
        schema_registry_ca_location=tls.ca_cert,
    )
    codec = Codec.from_settings(settings, topic_prefix="sec.")
    assert isinstance(codec.wire, ConfluentFormat)
    event = lead()
    encoded = codec.encode("sec.sf.cdc.Lead", event)
    assert encoded.value[:1] == b"\x00" and registry.schemas
    reader = Codec.from_settings(settings, topic_prefix="sec.")  # a fresh cache: fetches by id
    decoded = reader.decode("sec.sf.cdc.Lead", encoded.value, encoded.headers)
    assert (decoded.id, decoded.fields) == (event.id, event.fields)  # (times kept in ms)
    assert registry.refused == 0


def test_wrong_credentials_and_an_untrusted_server_are_refused(
    registry: SecureRegistry, tls: TlsFiles, tmp_path: Path
) -> None:
    wrong = Settings(
        schema_registry_url=registry.address,
        schema_registry_basic_auth=Secret(f"{USER}:not-it"),
        schema_registry_ca_location=tls.ca_cert,
    )
    with pytest.raises(Exception, match=r"401|Unauthorized"):
        Codec.from_settings(wrong, topic_prefix="sec.").encode("sec.sf.cdc.Lead", lead())
    assert registry.refused >= 1
    untrusted = Settings(
        schema_registry_url=registry.address,
        schema_registry_basic_auth=Secret(f"{USER}:{PASSWORD}"),
    )
    with pytest.raises(Exception, match=r"(?i)certificate|ssl"):
        Codec.from_settings(untrusted, topic_prefix="sec.").encode("sec.sf.cdc.Lead", lead())
    missing = wrong.model_copy(update={"schema_registry_ca_location": tmp_path / "absent.pem"})
    with pytest.raises(SettingsError, match="SFE_SCHEMA_REGISTRY_CA_LOCATION: no file"):
        Codec.from_settings(missing)


def test_credentials_never_sit_in_the_url_and_need_a_colon() -> None:
    with pytest.raises(ValidationError, match="credentials do not go in the URL"):
        Settings(schema_registry_url=f"https://{USER}:{PASSWORD}@registry.example.com")
    with pytest.raises(ValidationError, match="user:password"):
        Settings(schema_registry_basic_auth="just-a-key")  # type: ignore[arg-type]
    assert "registry-secret" not in repr(
        Settings(schema_registry_basic_auth=Secret("k:registry-secret"))
    )
