"""Sealing one personal value: AES-256-GCM under its subject's key, as a self-describing string.

A sealed value is ``sfe:pii:v1:<subject>:<base64url(nonce || ciphertext || tag)>``. The
subject (a Salesforce record id, not itself personal) names the key; the field name and
the subject are the associated data, so a sealed value moved to another field or
another subject does not open. The nonce is derived from the value (an HMAC under a
key of its own, as in SIV constructions): the same value of the same field of the same
subject always seals to the same string. That keeps derived events deterministic
(a replay yields byte-identical events) and lets the Salesforce sink recognise a value
it has already written, at the price of revealing, to whoever can read the log, that
two sealed values of one subject's field are equal.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "sfe:pii:v1:"
#: What a personal value reads as once its subject is erased, where text must stand.
ERASED = "sfe:pii:erased"
KEY_BYTES = 32
_NONCE_BYTES = 12


class SealError(ValueError):
    """A sealed value is malformed or does not open under its subject's key."""


@dataclass(frozen=True)
class SubjectKey:
    """One subject's data key and the two keys derived from it (encryption, nonces)."""

    subject: str
    encryption: AESGCM
    nonce_key: bytes

    @classmethod
    def derive(cls, subject: str, key: bytes) -> SubjectKey:
        """The derived keys of ``key`` (32 random bytes held by the key store)."""
        if len(key) != KEY_BYTES:
            raise ValueError(f"a subject key has {KEY_BYTES} bytes, not {len(key)}")
        encryption = hmac.new(key, b"sfe-pii-encryption", hashlib.sha256).digest()
        nonce_key = hmac.new(key, b"sfe-pii-nonce", hashlib.sha256).digest()
        return cls(subject, AESGCM(encryption), nonce_key)

    def seal(self, name: str, plaintext: str) -> str:
        """``plaintext`` of field ``name`` sealed (deterministically) under this key."""
        data = plaintext.encode()
        aad = _associated_data(self.subject, name)
        nonce = hmac.new(self.nonce_key, aad + b"\x00" + data, hashlib.sha256).digest()
        nonce = nonce[:_NONCE_BYTES]
        sealed = nonce + self.encryption.encrypt(nonce, data, aad)
        return f"{PREFIX}{self.subject}:{base64.urlsafe_b64encode(sealed).decode()}"

    def open(self, name: str, token: str) -> str:
        """The plaintext of ``token``, a value of field ``name`` sealed under this key."""
        subject, body = parse(token)
        if subject != self.subject:
            raise SealError(f"value sealed for subject {subject}, not {self.subject}")
        return self.open_body(name, body)

    def open_body(self, name: str, body: str) -> str:
        """The plaintext of a sealed value's body (the part after its subject)."""
        try:
            sealed = base64.urlsafe_b64decode(body)
        except ValueError as exc:
            raise SealError(f"sealed value of {name} is not base64: {exc}") from None
        if len(sealed) < _NONCE_BYTES + 16:
            raise SealError(f"sealed value of {name} is too short")
        try:
            data = self.encryption.decrypt(
                sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], _associated_data(self.subject, name)
            )
        except InvalidTag:
            raise SealError(
                f"sealed value of {name} does not open under the key of {self.subject}"
            ) from None
        return data.decode()


def is_sealed(value: object) -> bool:
    """Whether ``value`` is a sealed personal value."""
    return isinstance(value, str) and value.startswith(PREFIX)


def parse(token: str) -> tuple[str, str]:
    """The subject and the encoded body of a sealed value."""
    if not token.startswith(PREFIX):
        raise SealError("not a sealed value")
    subject, separator, body = token[len(PREFIX) :].partition(":")
    if not separator or not subject or not body:
        raise SealError("malformed sealed value")
    return subject, body


def _associated_data(subject: str, name: str) -> bytes:
    return subject.encode() + b"\x00" + name.encode()
