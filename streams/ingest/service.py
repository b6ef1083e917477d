"""`sfe ingest`: subscribe to Salesforce's streaming channels and feed the ingestor, forever.

The loop owns recovery, so that no failure becomes a crash loop:

* a dropped connection or a forgotten client (``403::Unknown client``) is handled by
  the CometD transport, which re-handshakes and resubscribes from the replay ids it
  has seen; when it gives up, we flush, wait with capped backoff, and reconnect;
* an expired session (``401``/``INVALID_SESSION_ID``) makes the authenticator log in again;
* an expired replay id (``400::The replayId {X} you provided was invalid``) follows the
  configured policy: by default resubscribe at -2 (everything retained) and then
  reconcile the missed window by a ``SystemModstamp`` query, both counted;
* when appending to Kafka fails, everything not committed is forgotten and the
  channels resume from their committed replay ids.

Replay ids reach the CometD client only from committed checkpoints, so a restart
never skips an event that is not in Kafka.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from aiocometd_ng.exceptions import AiocometdException, ServerError
from aiosfstream_ng import ReplayMarker, ReplayOption

from sfe import metrics
from streams.ingest.appender import AppenderFenced, AppendFailed
from streams.ingest.changes import CHANGE_EVENT_CHANNEL
from streams.ingest.ingestor import Ingestor
from streams.salesforce.auth import SalesforceAuthConfig, TokenCache
from streams.salesforce.streaming import StreamingClient

log = logging.getLogger(__name__)

DEFAULT_CHANNELS = (
    "/data/LeadChangeEvent",
    "/data/OpportunityChangeEvent",
    "/data/AccountChangeEvent",
    "/event/New_Lead__e",
)


class ExpiredReplayPolicy(StrEnum):
    """What to do when a stored replay id is older than the org's retention."""

    REPLAY_ALL_AND_RECONCILE = "replay-all-and-reconcile"
    REPLAY_ALL = "replay-all"
    NEW_ONLY_AND_RECONCILE = "new-only-and-reconcile"


@dataclass(frozen=True)
class StreamSettings:
    """How the ingest loop subscribes and recovers."""

    channels: Sequence[str] = DEFAULT_CHANNELS
    start_at: ReplayOption = ReplayOption.NEW_EVENTS
    expired_policy: ExpiredReplayPolicy = ExpiredReplayPolicy.REPLAY_ALL_AND_RECONCILE
    flush_interval_s: float = 0.2
    max_backoff_s: float = 30.0
    connection_timeout_s: float = 30.0


def is_expired_replay_error(error: BaseException) -> bool:
    """True for Salesforce's ``400::The replayId {X} you provided was invalid...``."""
    return "The replayId" in str(error) and "was invalid" in str(error)


class IngestService:
    """Keeps the channels subscribed and the ingestor fed until ``stop`` is set."""

    def __init__(
        self,
        ingestor: Ingestor,
        auth: SalesforceAuthConfig,
        config: StreamSettings,
        tokens: TokenCache | None = None,
    ) -> None:
        """Wire the service; :meth:`run` starts it. ``tokens``: the REST client's token cache."""
        self.ingestor = ingestor
        self.auth = auth
        self.config = config
        self.tokens = tokens
        self.markers: dict[str, ReplayMarker] = {}
        self._expired: set[str] = set()

    async def run(self, stop: asyncio.Event) -> None:
        """Subscribe, ingest and recover until ``stop`` is set; flush before returning."""
        self.ingestor.start()
        self._markers_from_checkpoints()
        backoff = 1.0
        while not stop.is_set():
            try:
                await self._session(stop)
                backoff = 1.0
            except AppenderFenced:
                log.error("another ingestor took over this transactional id; stopping")
                raise
            except AppendFailed as exc:
                log.warning(
                    "append to Kafka failed; resuming from committed replay ids",
                    extra={"reason": str(exc)},
                )
                metrics.INGEST_RECOVERIES.labels(kind="append_failed").inc()
                self.ingestor.reset_to_committed()
                self._markers_from_checkpoints()
            except ServerError as exc:
                if not is_expired_replay_error(exc):
                    raise
                await self._recover_expired(exc)
                continue
            except (AiocometdException, OSError, TimeoutError) as exc:
                log.warning(
                    "streaming connection lost", extra={"reason": f"{type(exc).__name__}: {exc}"}
                )
                metrics.INGEST_RECOVERIES.labels(kind="connection_lost").inc()
            if not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff)
                backoff = min(backoff * 2, self.config.max_backoff_s)
        await self.ingestor.flush()

    async def _session(self, stop: asyncio.Event) -> None:
        """One connected session: subscribe every channel, handle messages, flush on a timer."""
        default = self.config.start_at
        if self._expired:  # channels whose replay id expired start per policy
            new_only = self.config.expired_policy is ExpiredReplayPolicy.NEW_ONLY_AND_RECONCILE
            default = ReplayOption.NEW_EVENTS if new_only else ReplayOption.ALL_EVENTS
        client = StreamingClient(
            self.auth,
            replay=self.markers,
            default_replay=default,
            connection_timeout=self.config.connection_timeout_s,
            tokens=self.tokens,
        )
        flusher = asyncio.create_task(self._flush_periodically(stop))
        try:
            async with client:
                for channel in self.config.channels:
                    await client.subscribe(channel)
                await self._reconcile_expired()
                receiver = asyncio.ensure_future(self._receive(client))
                stopper = asyncio.ensure_future(stop.wait())
                done, _ = await asyncio.wait(
                    {receiver, stopper}, return_when=asyncio.FIRST_COMPLETED
                )
                for task in (receiver, stopper):
                    if task not in done:
                        task.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await task
                if receiver in done:
                    receiver.result()  # re-raise what ended the session
        finally:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
            await self.ingestor.flush()

    async def _receive(self, client: StreamingClient) -> None:
        async for message in client:
            await self.ingestor.handle(message)

    async def _flush_periodically(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(self.config.flush_interval_s)
            await self.ingestor.flush()

    async def _recover_expired(self, error: ServerError) -> None:
        """Forget the expired replay ids; the next session starts those channels per policy."""
        log.warning("stored replay id expired", extra={"reason": str(error)})
        expired = [channel for channel in self.config.channels if channel in self.markers]
        self._expired.update(expired)
        for channel in expired:
            del self.markers[channel]

    async def _reconcile_expired(self) -> None:
        """After resubscribing expired channels: read back the window the replay could not cover."""
        policy = self.config.expired_policy
        while self._expired:
            channel = self._expired.pop()
            match = CHANGE_EVENT_CHANNEL.match(channel)
            if policy is ExpiredReplayPolicy.REPLAY_ALL or match is None:
                continue
            checkpoint = self.ingestor.checkpoints.get(channel)
            since = (
                datetime.fromisoformat(checkpoint.event_time)
                if checkpoint and checkpoint.event_time
                else datetime.now(UTC) - timedelta(days=3)
            )
            count = await self.ingestor.reconcile_since(channel, match.group("entity"), since)
            log.info(
                "missed window reconciled",
                extra={"channel": channel, "since": since.isoformat(), "records": count},
            )

    def _markers_from_checkpoints(self) -> None:
        self.markers.clear()
        for channel, checkpoint in self.ingestor.checkpoints.items():
            if channel in self.config.channels:
                # CometD replay ids are integers (opaque: never computed, only echoed back).
                self.markers[channel] = ReplayMarker(
                    date=checkpoint.event_time or "", replay_id=int(checkpoint.replay_id)
                )
