"""The simulator's web application and the ways to run it.

The aiohttp application of the simulator and the ways to run it: in the foreground
(``sfe sim serve``) or on a background thread (tests, notebooks).
"""

from __future__ import annotations

import asyncio
import signal
import socket
import ssl
import threading
from dataclasses import dataclass, replace

from aiohttp import web

from simulator.config import SimConfig
from simulator.http import (
    admin,
    bulk,
    cometd,
    composite,
    oauth,
    replication,
    rest,
    soap,
    tree,
)
from simulator.http.common import STATE
from simulator.http.middleware import salesforce_api
from simulator.state import Simulator, build
from streams.salesforce.auth import SalesforceAuthConfig


def make_app(state: Simulator) -> web.Application:
    """The web application serving ``state``."""
    app = web.Application(middlewares=[salesforce_api], client_max_size=150 * 1024 * 1024)
    app[STATE] = state
    state.streaming = cometd.Streaming(state.bus, state.config.long_poll_seconds)
    for module in (oauth, soap, replication, rest, composite, tree, bulk, cometd, admin):
        app.add_routes(with_trailing_slashes(module.routes()))
    return app


def with_trailing_slashes(routes: list[web.RouteDef]) -> list[web.RouteDef]:
    """``routes`` plus a ``/``-terminated twin of each, as Salesforce accepts both."""
    seen = {(r.method, r.path) for r in routes}
    twins = [
        web.RouteDef(r.method, r.path + "/", r.handler, r.kwargs)
        for r in routes
        if not r.path.endswith(("/", "{slash:/?}")) and (r.method, r.path + "/") not in seen
    ]
    return [*routes, *twins]


def ssl_context(state: Simulator) -> ssl.SSLContext:
    """The server-side TLS context with the generated certificate."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(state.tls_files.server_cert, state.tls_files.server_key)
    return context


@dataclass
class RunningSimulator:
    """A simulator serving on a background thread; :meth:`stop` ends it."""

    state: Simulator
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    runner: web.AppRunner

    @property
    def url(self) -> str:
        """The instance URL."""
        return self.state.config.base_url

    def client_config(self, call_options_client: str = "sfe-pipeline") -> SalesforceAuthConfig:
        """The project's password-flow login to this simulator, trusting its CA."""
        config = self.state.config
        return SalesforceAuthConfig(
            login_url=self.url,
            client_id=config.app.client_id,
            client_secret=config.app.client_secret,
            username=config.username,
            password=config.password,
            api_version=config.api_version,
            ca_bundle=self.state.tls_files.ca_cert,
            call_options_client=call_options_client,
        )

    def call(self, function: object, *args: object) -> object:
        """Run ``function(*args)`` on the server's loop and return its result."""

        async def invoke() -> object:
            return function(*args)  # type: ignore[operator]

        return asyncio.run_coroutine_threadsafe(invoke(), self.loop).result(10)

    def stop(self) -> None:
        """Stop serving and join the thread."""

        async def shutdown() -> None:
            self.state.streaming.forget_clients()
            await self.runner.cleanup()

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def free_port(host: str) -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def start_in_thread(config: SimConfig) -> RunningSimulator:
    """Build a simulator and serve it on a new thread; returns once it listens.

    Port 0 picks a free port.
    """
    config.check_exposure()
    if config.port == 0:
        config = replace(config, port=free_port(config.host))
    state = build(config)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, web.AppRunner] = {}

    def run() -> None:
        asyncio.set_event_loop(loop)
        runner = web.AppRunner(make_app(state), shutdown_timeout=1.0)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, config.host, config.port, ssl_context=ssl_context(state))
        loop.run_until_complete(site.start())
        holder["runner"] = runner
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name="sfe-simulator", daemon=True)
    thread.start()
    if not ready.wait(30):
        raise RuntimeError("the simulator did not start")
    return RunningSimulator(state, loop, thread, holder["runner"])


async def serve_forever(config: SimConfig, announce: object = print) -> None:
    """Serve until cancelled (``sfe sim serve``); port 0 picks a free port."""
    config.check_exposure()
    if config.port == 0:
        config = replace(config, port=free_port(config.host))
    state = build(config)
    runner = web.AppRunner(make_app(state), shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port, ssl_context=ssl_context(state))
    await site.start()
    announce(f"Salesforce org simulator at {config.base_url}")  # type: ignore[operator]
    announce(f"CA certificate: {state.tls_files.ca_cert}")  # type: ignore[operator]
    if state.jwt_key_file:
        announce(f"JWT signing key of the connected app: {state.jwt_key_file}")  # type: ignore[operator]
    stopped = asyncio.Event()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(signal_number, stopped.set)
    try:
        await stopped.wait()
    finally:
        state.streaming.forget_clients()
        await runner.cleanup()
