"""Subject keys wrapped by HashiCorp Vault's transit engine instead of a local master key.

The wrapping key never leaves Vault: each batch of new subject keys is encrypted with
one ``POST /v1/<mount>/encrypt/<key>`` (``batch_input``), each batch of stored keys
decrypted with one ``POST /v1/<mount>/decrypt/<key>``. The plaintext sent is the
wrapping context (namespace and subject) followed by the key, and the context is
checked on the way back, so a wrapped key copied to another row opens nothing. A
transit key rotated in Vault keeps decrypting older ciphertexts (``vault:v1:``...).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from sfe.privacy.keystore import KeyStoreError, KeyStoreUnavailable
from sfe.secrets import SecretUnavailable, VaultClient

_SEPARATOR = b"\x00"
#: Vault errors worth retrying: Vault unreachable, or answering 5xx (sealed, standby).
_TRANSIENT = re.compile(r"unreachable|HTTP 5\d\d")


class VaultTransitWrapper:
    """Wraps and unwraps subject keys with the transit key ``key`` mounted at ``mount``."""

    def __init__(self, client: VaultClient, mount: str = "transit", key: str = "sfe-privacy"):
        """Use ``client`` (``VAULT_ADDR``, ``VAULT_TOKEN``) and the named transit key."""
        self.client = client
        self.mount = mount.strip("/")
        self.key = key

    def __repr__(self) -> str:
        return f"VaultTransitWrapper({self.name})"

    @property
    def name(self) -> str:
        """``vault-transit:<mount>/<key>``."""
        return f"vault-transit:{self.mount}/{self.key}"

    def wrap_many(self, items: Sequence[tuple[str, bytes]]) -> list[bytes]:
        """Vault's ciphertexts (``vault:vN:...``) of context and key, one request for all."""
        if not items:
            return []
        batch = [
            {"plaintext": base64.b64encode(context.encode() + _SEPARATOR + key).decode()}
            for context, key in items
        ]
        results = self._batch("encrypt", batch)
        try:
            return [str(result["ciphertext"]).encode() for result in results]
        except (KeyError, TypeError):
            raise KeyStoreError(f"{self.name}: an encrypt answer without ciphertext") from None

    def unwrap_many(self, items: Sequence[tuple[str, bytes]]) -> list[bytes]:
        """The keys, checked against their contexts, one request for all."""
        if not items:
            return []
        results = self._batch("decrypt", [{"ciphertext": wrapped.decode()} for _, wrapped in items])
        keys = []
        for (context, _), result in zip(items, results, strict=True):
            try:
                plain = base64.b64decode(str(result["plaintext"]))
            except (KeyError, TypeError, ValueError):
                raise KeyStoreError(f"{self.name}: a decrypt answer without plaintext") from None
            bound = context.encode() + _SEPARATOR
            if not plain.startswith(bound):
                raise KeyStoreError(f"the key of {context!r} was wrapped for another subject")
            keys.append(plain[len(bound) :])
        return keys

    def _batch(self, operation: str, batch: list[dict[str, str]]) -> list[Any]:
        path = f"{quote(self.mount)}/{operation}/{quote(self.key)}"
        try:
            answer = self.client.call(
                "POST", path, {"batch_input": batch}, what=f"{self.name} {operation}"
            )
            results = answer["data"]["batch_results"]
        except SecretUnavailable as exc:
            if _TRANSIENT.search(str(exc)):
                raise KeyStoreUnavailable(str(exc)) from None
            raise KeyStoreError(str(exc)) from None
        except (KeyError, TypeError):
            raise KeyStoreError(f"{self.name}: not a transit {operation} answer") from None
        if not isinstance(results, list) or len(results) != len(batch):
            raise KeyStoreError(f"{self.name}: {operation} answered for another batch")
        for result in results:
            if isinstance(result, dict) and result.get("error"):
                raise KeyStoreError(f"{self.name} {operation}: {result['error']}")
        return results
