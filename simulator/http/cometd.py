"""The Streaming API: a Bayeux server with long-polling and the replay extension.

The Streaming API: a Bayeux server at ``/cometd/NN.N`` with long-polling and the
``replay`` extension, delivering Change Data Capture and Platform Events.

A client's position on each subscribed channel only moves once a response carrying
events has been written, so a dropped connection loses nothing. Faults can drop every
pending long-poll or forget every client (``403::Unknown client``), as a real org does
after a server restart.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from simulator.events import ALL_CHANGE_EVENTS, EventBus, stream_of
from simulator.http.common import sim
from simulator.schema import OBJECTS

MAX_EVENTS_PER_RESPONSE = 250
_HANDSHAKE_ADVICE = {"reconnect": "handshake", "interval": 0}


@dataclass
class Client:
    """A handshaken Bayeux client."""

    id: str
    user_id: str
    positions: dict[str, int] = field(default_factory=dict)
    connected_once: bool = False
    last_seen: float = field(default_factory=time.monotonic)
    waiting: web.Request | None = None


class Streaming:
    """Bayeux clients of one simulator and the faults that disturb them."""

    def __init__(self, bus: EventBus, long_poll_seconds: float) -> None:
        self.bus = bus
        self.long_poll_seconds = long_poll_seconds
        self.clients: dict[str, Client] = {}

    def advice(self) -> dict[str, Any]:
        """The reconnect advice of successful connects."""
        return {"reconnect": "retry", "interval": 0, "timeout": int(self.long_poll_seconds * 1000)}

    def drop_connections(self) -> int:
        """Close every pending long-poll connection; returns how many."""
        dropped = 0
        for client in self.clients.values():
            if client.waiting is not None and client.waiting.transport is not None:
                client.waiting.transport.close()
                dropped += 1
        self.bus.wake()
        return dropped

    def forget_clients(self) -> int:
        """Forget every client so its next message gets ``403::Unknown client``."""
        count = len(self.clients)
        self.clients.clear()
        self.bus.wake()
        return count

    def reap_idle(self) -> None:
        """Forget clients that neither connected nor waited for longer than a long-poll and a minute."""
        horizon = time.monotonic() - (self.long_poll_seconds + 60)
        for client_id in [
            c.id for c in self.clients.values() if c.last_seen < horizon and c.waiting is None
        ]:
            del self.clients[client_id]


def _base(message: dict[str, Any]) -> dict[str, Any]:
    reply = {"channel": message.get("channel"), "successful": True}
    for key in ("id", "clientId"):
        if key in message:
            reply[key] = message[key]
    return reply


def _failure(
    message: dict[str, Any], error: str, advice: dict[str, Any] | None = None
) -> dict[str, Any]:
    reply = _base(message)
    reply.update(successful=False, error=error)
    if "subscription" in message:
        reply["subscription"] = message["subscription"]
    if advice:
        reply["advice"] = advice
    return reply


def _subscribe(streaming: Streaming, client: Client, message: dict[str, Any]) -> dict[str, Any]:
    channel = str(message.get("subscription", ""))
    entity = channel.removeprefix("/data/").removesuffix("ChangeEvent")
    unknown_entity = (
        channel.startswith("/data/") and channel != ALL_CHANGE_EVENTS and entity not in OBJECTS
    )
    if stream_of(channel) is None or unknown_entity:
        return _failure(
            message, f"400::The channel you requested to subscribe to does not exist {{{channel}}}"
        )
    replay = ((message.get("ext") or {}).get("replay") or {}).get(channel, -1)
    try:
        replay_id = int(replay)
    except (TypeError, ValueError):
        replay_id = -3
    start = streaming.bus.start_position(channel, replay_id)
    if start is None:
        return _failure(
            message,
            f"400::The replayId {{{replay}}} you provided was invalid. Please provide a valid ID, "
            "-2 to replay all events, or -1 to replay only new events.",
        )
    client.positions[channel] = start
    reply = _base(message)
    reply["subscription"] = channel
    return reply


def _collect(streaming: Streaming, client: Client) -> tuple[list[dict[str, Any]], dict[str, int]]:
    before = dict(client.positions)
    delivered: list[dict[str, Any]] = []
    for channel, position in client.positions.items():
        room = MAX_EVENTS_PER_RESPONSE - len(delivered)
        if room <= 0:
            break
        for event in streaming.bus.read(channel, position, room):
            delivered.append(
                {"channel": channel,
                 "data": {"schema": event.schema, "payload": event.payload,
                          "event": {"replayId": event.replay_id, "EventUuid": f"{event.stream}-{event.replay_id}"}}}
            )  # fmt: skip
            client.positions[channel] = event.replay_id
    return delivered, before


async def _connect(
    request: web.Request, streaming: Streaming, client: Client, message: dict[str, Any]
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    events, before = _collect(streaming, client)
    if events or not client.connected_once:
        client.connected_once = True
        return events, before
    if client.waiting is not None and client.waiting.transport is not None:
        streaming.bus.wake()
    client.waiting = request
    deadline = time.monotonic() + streaming.long_poll_seconds
    try:
        while time.monotonic() < deadline and streaming.clients.get(client.id) is client:
            await streaming.bus.wait(deadline - time.monotonic())
            if request.transport is None or request.transport.is_closing():
                return [], before
            events, before = _collect(streaming, client)
            if events:
                break
    finally:
        if client.waiting is request:
            client.waiting = None
    return events, before


def _handshake(streaming: Streaming, client: Client, message: dict[str, Any]) -> dict[str, Any]:
    reply = _base(message)
    reply.update(clientId=client.id, version="1.0", minimumVersion="1.0",
                 supportedConnectionTypes=["long-polling"], advice=streaming.advice(),
                 ext={"replay": True, "payload.format": True})  # fmt: skip
    return reply


def _meta(streaming: Streaming, client: Client, message: dict[str, Any]) -> dict[str, Any]:
    """The reply to a subscribe, unsubscribe, disconnect or (refused) publish message."""
    channel = message.get("channel")
    if channel == "/meta/subscribe":
        return _subscribe(streaming, client, message)
    if channel == "/meta/unsubscribe":
        client.positions.pop(str(message.get("subscription")), None)
        return {**_base(message), "subscription": message.get("subscription")}
    if channel == "/meta/disconnect":
        streaming.clients.pop(client.id, None)
        streaming.bus.wake()
        return _base(message)
    return _failure(message, "403::Publish not supported")


async def handle(request: web.Request) -> web.StreamResponse:
    """One Bayeux POST: a list of messages, answered in one JSON array."""
    state = sim(request)
    streaming: Streaming = state.streaming
    try:
        messages = json.loads(await request.text())
    except json.JSONDecodeError:
        return web.Response(status=400, text="invalid JSON")
    if isinstance(messages, dict):
        messages = [messages]
    session = state.authority.session(request.headers.get("Authorization"))
    if session is None:
        body = [_failure(m, "401::Authentication invalid", _HANDSHAKE_ADVICE) for m in messages]
        return web.json_response(body, status=401)
    streaming.reap_idle()
    replies: list[dict[str, Any]] = []
    connect: dict[str, Any] | None = None
    client: Client | None = None
    for message in messages:
        if message.get("channel") == "/meta/handshake":
            client = Client(secrets.token_hex(12), session.user_id)
            streaming.clients[client.id] = client
            replies.append(_handshake(streaming, client, message))
            continue
        client = streaming.clients.get(str(message.get("clientId")))
        if client is None:
            replies.append(_failure(message, "403::Unknown client", _HANDSHAKE_ADVICE))
        elif message.get("channel") == "/meta/connect":
            client.last_seen = time.monotonic()
            connect = message
        else:
            client.last_seen = time.monotonic()
            replies.append(_meta(streaming, client, message))
    if connect is None or client is None:
        return web.json_response(replies)
    events, before = await _connect(request, streaming, client, connect)
    if streaming.clients.get(client.id) is not client:
        replies.append(_failure(connect, "403::Unknown client", _HANDSHAKE_ADVICE))
        return web.json_response(replies)
    response = web.StreamResponse(headers={"Content-Type": "application/json;charset=UTF-8"})
    encoded = json.dumps(
        [*replies, *events, {**_base(connect), "advice": streaming.advice()}]
    ).encode()
    try:
        if request.transport is None or request.transport.is_closing():
            raise ConnectionResetError
        await response.prepare(request)
        await response.write(encoded)
        await response.write_eof()
    except (ConnectionResetError, RuntimeError):
        client.positions.update({k: v for k, v in before.items() if k in client.positions})
    return response


def routes() -> list[web.RouteDef]:
    """The Streaming API routes."""
    return [
        web.post(r"/cometd/{version:\d+\.\d}", handle),
        web.post(r"/cometd/{version:\d+\.\d}/", handle),
    ]
