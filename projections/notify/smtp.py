"""E-mail through an SMTP server (the standard library's ``smtplib``).

A recipient is an e-mail address, or a name the agents use for a person or a role (a
Salesforce user id, ``marketing-automation``): names are looked up in the configured
aliases, then sent to the fallback address when one is set; otherwise the command
fails permanently, naming the setting to fill. The message carries the command id
twice: as its ``Message-ID`` (``<command-id@sender-domain>``) and as
``X-SFE-Command-Id``, so a mail system or a reader can drop the rare repeat.

Connection security is ``starttls`` (the default; the server must offer it),
``ssl`` (SMTPS) or ``none``; login happens when a user name is configured.
SMTP 4xx answers, time-outs and dropped connections are transient; 5xx answers
(refused sender or recipient, rejected content, failed login) are permanent.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from pathlib import Path
from typing import Literal

from pydantic import SecretStr

from projections.notify.transport import PermanentDelivery, TransientDelivery
from schema_registry.events import NotificationChannel, NotificationRequested

Security = Literal["starttls", "ssl", "none"]


def parse_aliases(text: str) -> dict[str, str]:
    """``name=address,name=address`` as a mapping (names lower-cased); ValueError when malformed."""
    aliases: dict[str, str] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        name, sep, address = part.partition("=")
        if not sep or not name.strip() or not is_address(address.strip()):
            raise ValueError(f"expected name=address[,name=address...], got {part.strip()!r}")
        aliases[name.strip().lower()] = address.strip()
    return aliases


def is_address(text: str) -> bool:
    """Whether ``text`` is a plain e-mail address (``local@domain``, no display name)."""
    _, address = parseaddr(text)
    local, at, domain = address.rpartition("@")
    return bool(at and local and "." in domain and address == text.strip())


def resolve(recipient: str, aliases: Mapping[str, str], fallback: str | None) -> str:
    """The address to mail ``recipient`` at; :class:`PermanentDelivery` when there is none."""
    name = recipient.strip()
    if is_address(name):
        return name
    if name.lower() in aliases:
        return aliases[name.lower()]
    if fallback:
        return fallback
    raise PermanentDelivery(
        "NO_ADDRESS",
        f"recipient {name!r} is not an e-mail address; map it in SFE_NOTIFY_EMAIL_ALIASES "
        "or set SFE_NOTIFY_EMAIL_FALLBACK",
    )


def message(command: NotificationRequested, sender: str, to: str) -> EmailMessage:
    """The e-mail for ``command``: title as subject, body as plain text, the id as Message-ID."""
    domain = parseaddr(sender)[1].rpartition("@")[2] or "sfe.local"
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = to
    mail["Subject"] = " ".join(command.title.split())
    mail["Date"] = format_datetime(command.time)
    mail["Message-ID"] = f"<{command.id}@{domain}>"
    mail["X-SFE-Command-Id"] = command.id
    mail["X-SFE-Template"] = command.template
    mail["X-SFE-Subject-Record"] = command.subject
    if to != command.recipient.strip():
        mail["X-SFE-Recipient"] = command.recipient.strip()
    mail.set_content(command.body)
    return mail


def _classify(code: int, text: bytes | str, what: str) -> PermanentDelivery | TransientDelivery:
    answer = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    reason = f"{what}: {answer.strip()[:200]}"
    if 400 <= code < 500:
        return TransientDelivery(f"SMTP_{code}", reason)
    return PermanentDelivery(f"SMTP_{code}", reason)


class SmtpTransport:
    """Sends notifications as e-mail through one SMTP server."""

    channel = NotificationChannel.EMAIL

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        security: Security = "starttls",
        username: str | None = None,
        password: SecretStr | None = None,
        timeout_s: float = 30.0,
        ca_bundle: Path | None = None,
        aliases: Mapping[str, str] | None = None,
        fallback: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.sender = sender
        self.security = security
        self.username = username
        self._password = password
        self.timeout_s = timeout_s
        self.aliases = dict(aliases or {})
        self.fallback = fallback
        self._tls = ssl.create_default_context(cafile=str(ca_bundle) if ca_bundle else None)

    def _connect(self) -> smtplib.SMTP:
        if self.security == "ssl":
            return smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout_s, context=self._tls)
        smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout_s)
        if self.security == "starttls":
            smtp.starttls(context=self._tls)
        return smtp

    def send(self, command: NotificationRequested) -> None:
        """Mail ``command`` (one connection per message); classify the server's answer."""
        to = resolve(command.recipient, self.aliases, self.fallback)
        mail = message(command, self.sender, to)
        try:
            with self._connect() as smtp:
                if self.username:
                    password = self._password.get_secret_value() if self._password else ""
                    smtp.login(self.username, password)
                smtp.send_message(mail, from_addr=parseaddr(self.sender)[1], to_addrs=[to])
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()))
            raise _classify(code, text, f"recipient {to} refused") from None
        except smtplib.SMTPResponseException as exc:
            # Sender refused, content rejected, login failed, or a greeting refusal.
            raise _classify(exc.smtp_code, exc.smtp_error, type(exc).__name__) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise PermanentDelivery("SMTP_NOT_SUPPORTED", str(exc)) from None
        except smtplib.SMTPServerDisconnected:
            raise TransientDelivery(
                "SMTP_DISCONNECTED", "the server closed the connection"
            ) from None
        except TimeoutError:
            raise TransientDelivery(
                "SMTP_TIMEOUT", f"no answer within {self.timeout_s:g}s"
            ) from None
        except (OSError, smtplib.SMTPException) as exc:
            # Refused or reset connections, TLS failures: the server may be back soon.
            raise TransientDelivery("SMTP_CONNECTION", f"{type(exc).__name__}: {exc}") from None
