"""Replication resources: records updated or deleted in a time window.

Replication resources: ``sobjects/<Object>/updated`` and ``sobjects/<Object>/deleted``,
the ids of records changed or deleted between ``start`` and ``end``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aiohttp import web

from simulator import values
from simulator.errors import SalesforceError, not_found
from simulator.http.common import reply, sim
from simulator.schema import sobject


def _window(request: web.Request) -> tuple[datetime, datetime]:
    try:
        start = values.parse_datetime(request.query["start"])
        end = values.parse_datetime(request.query["end"])
    except (KeyError, ValueError):
        raise SalesforceError(
            "INVALID_REPLICATION_DATE", "start and end must be ISO-8601 date-times"
        ) from None
    if end <= start:
        raise SalesforceError("INVALID_REPLICATION_DATE", "end must be after start")
    return start, min(end, datetime.now(UTC))


async def changed(request: web.Request) -> web.Response:
    """Ids of records updated, or deleted, within the window."""
    state = sim(request)
    obj = sobject(request.match_info["sobject"])
    if obj is None:
        raise not_found()
    start, end = _window(request)
    covered = values.format_datetime(end.replace(second=0, microsecond=0))
    deleted = request.match_info["kind"] == "deleted"
    hits = []
    for record in state.org.records[obj.name].values():
        moment = values.parse_datetime(record["SystemModstamp"])
        if start <= moment < end and bool(record["IsDeleted"]) == deleted:
            hits.append((record["Id"], record["SystemModstamp"]))
    if deleted:
        earliest = values.format_datetime(datetime.now(UTC) - timedelta(days=15))
        return reply({
            "deletedRecords": [{"id": i, "deletedDate": when} for i, when in hits],
            "earliestDateAvailable": earliest, "latestDateCovered": covered,
        })  # fmt: skip
    return reply({"ids": [i for i, _ in hits], "latestDateCovered": covered})


def routes() -> list[web.RouteDef]:
    """The replication routes."""
    path = r"/services/data/v{version:\d+\.\d}/sobjects/{sobject}/{kind:updated|deleted}"
    return [web.get(path, changed), web.get(path + "/", changed)]
