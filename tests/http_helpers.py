"""Bases for the tests' in-process HTTP stand-ins (Vault, a schema registry).

:class:`JsonHandler` answers JSON; :class:`LocalServer` serves a handler on a free
loopback port from a daemon thread, over TLS when given a certificate.
"""

from __future__ import annotations

import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
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


class LocalServer:
    """A threaded HTTP(S) server of ``handler`` on 127.0.0.1 and a free port."""

    def __init__(
        self, handler: type[BaseHTTPRequestHandler], tls: tuple[Path, Path] | None = None
    ) -> None:
        """Serve now; ``tls`` is (certificate, key) for HTTPS."""
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.scheme = "http"
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def address(self) -> str:
        """The server's base URL."""
        return f"{self.scheme}://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.server.shutdown()
        self.server.server_close()
