"""A base for the tests' in-process HTTP stand-ins (Vault, a schema registry): JSON replies."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from typing import Any


class JsonHandler(BaseHTTPRequestHandler):
    """A request handler that answers JSON and keeps quiet about each request.

    Subclasses answer in :meth:`on_get` and :meth:`on_post`; a method they leave alone
    answers 405.
    """

    content_type = "application/json"

    def do_GET(self) -> None:
        """Answered by :meth:`on_get`."""
        self.on_get()

    def do_POST(self) -> None:
        """Answered by :meth:`on_post`."""
        self.on_post()

    def on_get(self) -> None:
        """Answer a GET request."""
        self.reply(405, {"errors": ["method not allowed"]})

    def on_post(self) -> None:
        """Answer a POST request."""
        self.reply(405, {"errors": ["method not allowed"]})

    def read_json(self) -> Any:
        """The request's JSON body."""
        return json.loads(self.rfile.read(int(self.headers["Content-Length"])))

    def reply(self, status: int, body: dict[str, Any]) -> None:
        """Answer ``status`` with ``body`` as JSON."""
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", self.content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        """No access log on the test's output."""
