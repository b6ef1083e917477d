"""Slack incoming webhooks: one JSON POST per notification, over HTTPS.

The message is a section block (title in bold, then the body) and a context block
naming the command id and the record it is about, so a person or a bot seeing the
same id twice knows it is a repeat. ``channel`` is set from the command's recipient:
legacy webhooks post there, app webhooks post to the channel they were created for.

Answers: 2xx delivered; 429 and 5xx, time-outs and connection failures are
transient (``Retry-After`` honoured); any other status is permanent, with Slack's
short error text (``invalid_payload``, ``channel_not_found``). The webhook URL is a
secret: it is kept as a ``SecretStr``, never put in an error or a log line, and
urllib3's debug log (which prints request paths) is held at INFO.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import requests
from pydantic import SecretStr

from projections.notify.transport import PermanentDelivery, TransientDelivery, parse_retry_after
from schema_registry.events import NotificationChannel, NotificationRequested

#: Slack's limit for the text of a section block.
SECTION_LIMIT = 3000
#: How much of an error answer is kept in a result.
ANSWER_LIMIT = 200


def escape(text: str) -> str:
    """``text`` with the three characters Slack's mrkdwn reserves escaped (``&``, ``<``, ``>``)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def payload(command: NotificationRequested) -> dict[str, Any]:
    """The webhook body for ``command``: fallback text, a section, and the id in a context block."""
    text = _clip(f"*{escape(command.title)}*\n{escape(command.body)}", SECTION_LIMIT)
    body: dict[str, Any] = {
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": escape(
                            f"notification {command.id} · {command.template} · {command.subject}"
                        ),
                    }
                ],
            },
        ],
    }
    if command.recipient.strip():
        body["channel"] = command.recipient.strip()
    return body


class SlackWebhookTransport:
    """Posts notifications to one Slack incoming webhook."""

    channel = NotificationChannel.SLACK

    def __init__(
        self,
        url: SecretStr,
        timeout_s: float = 10.0,
        ca_bundle: Path | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self._url = url
        self.timeout_s = timeout_s
        self._verify: str | bool = str(ca_bundle) if ca_bundle is not None else True
        self._session = session or requests.Session()
        quiet = logging.getLogger("urllib3.connectionpool")
        if quiet.getEffectiveLevel() < logging.INFO:
            quiet.setLevel(logging.INFO)

    def send(self, command: NotificationRequested) -> None:
        """POST ``command`` to the webhook; classify Slack's answer."""
        try:
            response = self._session.post(
                self._url.get_secret_value(),
                json=payload(command),
                timeout=self.timeout_s,
                verify=self._verify,
                allow_redirects=False,
            )
        except requests.Timeout:
            raise TransientDelivery(
                "SLACK_TIMEOUT", f"no answer within {self.timeout_s:g}s"
            ) from None
        except requests.RequestException as exc:
            # The exception's text names the URL, whose path is the secret: keep its type only.
            raise TransientDelivery("SLACK_CONNECTION", type(exc).__name__) from None
        status = response.status_code
        if 200 <= status < 300:
            return
        answer = _clip(response.text.strip(), ANSWER_LIMIT) or response.reason or ""
        if status == 429 or status >= 500:
            raise TransientDelivery(
                f"SLACK_{status}", answer, parse_retry_after(response.headers.get("Retry-After"))
            )
        raise PermanentDelivery(f"SLACK_{status}", answer)
