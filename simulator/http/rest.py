"""REST API resources of the simulated org.

Versions, sObject metadata, records, SOQL queries, limits, Platform Event publishing,
Einstein predictions and the Web-to-Lead form.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from simulator import einstein, query
from simulator.auth import ORG_ID
from simulator.errors import SalesforceError, not_found
from simulator.http.common import CALLER, caller, json_body, reply, sim, version_of
from simulator.schema import OBJECTS, SObject, sobject

_QUERY_BATCH = 2000
_OPEN_CURSORS = 200  # the oldest unfinished query cursor is dropped beyond this
# The HTML field names of a generated Web-to-Lead form and the Lead fields they fill.
_WEB_TO_LEAD = {
    "first_name": "FirstName", "last_name": "LastName", "email": "Email", "company": "Company",
    "title": "Title", "phone": "Phone", "mobile": "MobilePhone", "city": "City", "state": "State",
    "zip": "PostalCode", "country": "Country", "street": "Street", "description": "Description",
    "lead_source": "LeadSource", "industry": "Industry", "revenue": "AnnualRevenue",
    "employees": "NumberOfEmployees", "url": "Website", "salutation": "Salutation", "rating": "Rating",
}  # fmt: skip
_PREFIX = "/services/data/v{version:\\d+\\.\\d}"


def _object(name: str) -> SObject:
    found = sobject(name)
    if found is None:
        raise not_found()
    return found


async def versions(request: web.Request) -> web.Response:
    """The API versions this org serves."""
    numbers = ["58.0", "59.0", "60.0", "61.0", "62.0", "63.0", "64.0"]
    return reply([{"label": f"v{n}", "url": f"/services/data/v{n}", "version": n} for n in numbers])


async def resources(request: web.Request) -> web.Response:
    """The resources of one API version."""
    base = f"/services/data/v{version_of(request)}"
    names = ["sobjects", "query", "queryAll", "composite", "limits", "jobs", "smartdatadiscovery"]
    return reply({name: f"{base}/{name}" for name in names})


async def sobjects(request: web.Request) -> web.Response:
    """``describeGlobal``: every object."""
    version = version_of(request)
    return reply(
        {"encoding": "UTF-8", "maxBatchSize": 200,
         "sobjects": [o.describe_global(version) for o in OBJECTS.values()]}
    )  # fmt: skip


async def sobject_info(request: web.Request) -> web.Response:
    """Basic information of one object, or create a record (or publish a Platform Event)."""
    name = request.match_info["sobject"]
    if request.method == "POST":
        if name.endswith("__e"):
            return reply(publish_event(request, name, await json_body(request)), 201)
        return await create(request)
    obj = _object(name)
    return reply({"objectDescribe": obj.describe_global(version_of(request)), "recentItems": []})


async def describe(request: web.Request) -> web.Response:
    """The full describe of one object."""
    return reply(_object(request.match_info["sobject"]).describe(version_of(request)))


async def create(request: web.Request) -> web.Response:
    """Insert one record."""
    state, who = sim(request), caller(request)
    body = await json_body(request)
    if not isinstance(body, dict):
        raise SalesforceError("JSON_PARSER_ERROR", "Expected a JSON object")
    with state.org.transaction(who.user_id, who.origin) as tx:
        record_id = tx.create(_object(request.match_info["sobject"]).name, body)
    return reply({"id": record_id, "success": True, "errors": []}, 201)


async def record(request: web.Request) -> web.StreamResponse:
    """Read, update or delete one record."""
    state, who = sim(request), caller(request)
    obj = _object(request.match_info["sobject"])
    record_id = request.match_info["id"]
    if request.method == "GET":
        found = state.org.get(obj.name, record_id)
        wanted = request.query.get("fields")
        names = [n.strip() for n in wanted.split(",")] if wanted else list(obj.fields)
        names += [] if "Id" in names else ["Id"]
        for name in names:
            query.check_path(obj, (name,))
        built = query.build_record(
            state.org, obj, found, [(n,) for n in names], version_of(request)
        )
        return reply(built)
    with state.org.transaction(who.user_id, who.origin) as tx:
        if request.method == "DELETE":
            tx.delete(obj.name, record_id)
        else:
            body = await json_body(request)
            if not isinstance(body, dict):
                raise SalesforceError("JSON_PARSER_ERROR", "Expected a JSON object")
            tx.update(obj.name, record_id, body)
    return web.Response(status=204)


async def run_query(request: web.Request) -> web.Response:
    """``query`` / ``queryAll`` with ``q=``, or the next page of a cursor."""
    state = sim(request)
    version = version_of(request)
    include_deleted = "/queryAll" in request.path
    locator = request.match_info.get("locator")
    size = _batch_size(request.headers.get("Sforce-Query-Options", ""))
    if locator:
        cursor = state.cursors.get(locator.split("-")[0])
        if cursor is None:
            raise SalesforceError("INVALID_QUERY_LOCATOR", "invalid query locator")
    else:
        text = request.query.get("q")
        if not text:
            raise SalesforceError("MALFORMED_QUERY", "A query string has to be specified")
        cursor = query.run(state.org, text, include_deleted)
    total = cursor.size
    if cursor.query.count_only:
        return reply({"totalSize": total, "done": True, "records": []})
    records, done = query.page(state.org, cursor, size, version)
    body: dict[str, Any] = {"totalSize": total, "done": done, "records": records}
    if done:
        state.cursors.pop(cursor.locator, None)
    else:
        state.cursors[cursor.locator] = cursor
        while len(state.cursors) > _OPEN_CURSORS:
            state.cursors.pop(next(iter(state.cursors)))
        kind = "queryAll" if include_deleted else "query"
        body["nextRecordsUrl"] = (
            f"/services/data/v{version}/{kind}/{cursor.locator}-{cursor.position}"
        )
    return reply(body)


def _batch_size(options: str) -> int:
    for part in options.split(","):
        key, _, value = part.strip().partition("=")
        if key == "batchSize" and value.isdigit():
            return max(200, min(_QUERY_BATCH, int(value)))
    return _QUERY_BATCH


async def limits(request: web.Request) -> web.Response:
    """``/limits`` with the daily API request budget."""
    budget = sim(request).budget
    return reply(
        {
            "DailyApiRequests": {"Max": budget.limit, "Remaining": budget.limit - budget.used},
            "DailyBulkV2QueryJobs": {"Max": 10000, "Remaining": 10000},
            "DailyStreamingApiEvents": {"Max": 1000000, "Remaining": 1000000},
            "MonthlyPlatformEventsUsageEntitlement": {"Max": 1500000, "Remaining": 1500000},
        }
    )


def publish_event(request: web.Request, name: str, body: Any) -> dict[str, Any]:
    """Publish a Platform Event; returns the SaveResult."""
    if not isinstance(body, dict):
        raise SalesforceError("JSON_PARSER_ERROR", "Expected a JSON object")
    who = request.get(CALLER)
    user_id = who.user_id if who else sim(request).user_id()
    for key in body:
        if not (key.endswith("__c") or key in ("CreatedDate", "CreatedById")):
            raise SalesforceError(
                "INVALID_FIELD", f"No such column '{key}' on sobject of type {name}"
            )
    payload = {
        "CreatedDate": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        "CreatedById": user_id,
        **body,
    }
    event = sim(request).bus.publish(
        f"/event/{name}", payload, schema=uuid.uuid5(uuid.NAMESPACE_URL, name).hex[:22]
    )
    enqueued = {"statusCode": "OPERATION_ENQUEUED", "message": str(uuid.uuid4()), "fields": []}
    return {"id": f"e008d{event.replay_id:013d}", "success": True, "errors": [enqueued]}


async def predict(request: web.Request) -> web.Response:
    """Einstein Discovery predictions for raw rows or record ids."""
    state = sim(request)
    body = await json_body(request)
    if not isinstance(body, dict):
        raise SalesforceError("JSON_PARSER_ERROR", "Expected a JSON object")
    rows: list[dict[str, Any]] = []
    if body.get("type", "RawData") == "Records":
        for record_id in body.get("records", []):
            rows.append(state.org.get(state.org.object_of(str(record_id)).name, str(record_id)))
    else:
        columns = body.get("columnNames") or []
        rows = [dict(zip(columns, row, strict=False)) for row in body.get("rows", [])]
    if not rows:
        raise SalesforceError("INVALID_INPUT", "Provide rows with columnNames, or records")
    return reply(einstein.predict(body, rows))


async def web_to_lead(request: web.Request) -> web.Response:
    """Web-to-Lead: create a Lead from a form post and publish ``New_Lead__e``."""
    state = sim(request)
    form = {key: str(value) for key, value in (await request.post()).items()}
    if form.pop("oid", ORG_ID)[:15] != ORG_ID[:15]:
        return web.Response(status=400, text="invalid organization id")
    target = form.pop("retURL", "")
    lead = sobject("Lead")
    assert lead is not None
    fields: dict[str, str] = {}
    for key, value in form.items():
        name = _WEB_TO_LEAD.get(key, key)
        if lead.field(name) and value:
            fields[name] = value
    origin = "com/salesforce/web/web-to-lead"
    try:
        with state.org.transaction(state.user_id(), origin) as tx:
            lead_id = tx.create("Lead", fields)
    except SalesforceError as error:
        return web.Response(status=400, text=str(error))
    created = state.org.records["Lead"][lead_id]
    event = {"Lead_Id__c": lead_id, "Email__c": created["Email"], "Company__c": created["Company"],
             "Source__c": created["LeadSource"] or "Web"}  # fmt: skip
    publish_event(request, "New_Lead__e", event)
    if target:
        raise web.HTTPFound(target)
    return web.Response(status=200, text=f"Lead {lead_id} created", headers={"X-Lead-Id": lead_id})


def routes() -> list[web.RouteDef]:
    """The REST routes."""
    return [
        web.get("/services/data", versions),
        web.get("/services/data/", versions),
        web.get(_PREFIX, resources),
        web.get(_PREFIX + "/", resources),
        web.get(_PREFIX + "/sobjects", sobjects),
        web.get(_PREFIX + "/sobjects/", sobjects),
        web.route("*", _PREFIX + "/sobjects/{sobject:[^/]+}{slash:/?}", sobject_info),
        web.get(_PREFIX + "/sobjects/{sobject}/describe{slash:/?}", describe),
        web.route("*", _PREFIX + "/sobjects/{sobject}/{id:[^/]+}{slash:/?}", record),
        web.get(_PREFIX + "/query", run_query),
        web.get(_PREFIX + "/query/", run_query),
        web.get(_PREFIX + "/query/{locator}", run_query),
        web.get(_PREFIX + "/queryAll", run_query),
        web.get(_PREFIX + "/queryAll/", run_query),
        web.get(_PREFIX + "/queryAll/{locator}", run_query),
        web.get(_PREFIX + "/limits", limits),
        web.get(_PREFIX + "/limits/", limits),
        web.post(_PREFIX + "/smartdatadiscovery/predict", predict),
        web.post("/servlet/servlet.WebToLead", web_to_lead),
    ]
