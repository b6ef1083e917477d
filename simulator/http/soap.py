"""The SOAP ``login`` call of the Partner API, which many clients still use to obtain a session.

Only ``login`` is served; the password may carry a security token appended, as with a
real org. The answer is the Partner API's ``loginResponse`` (or an ``INVALID_LOGIN`` fault).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from aiohttp import web

from simulator.auth import ORG_ID
from simulator.http.common import sim

_ENVELOPE = (
    '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope '
    'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns="urn:partner.soap.sforce.com" '
    'xmlns:sf="urn:fault.partner.soap.sforce.com" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>{}</soapenv:Body>'
    "</soapenv:Envelope>"
)
_INVALID = "Invalid username, password, security token; or user locked out."


def _text(root: ET.Element, name: str) -> str:
    for element in root.iter():
        if element.tag.rsplit("}", 1)[-1] == name:
            return element.text or ""
    return ""


def _fault() -> web.Response:
    body = (
        "<soapenv:Fault><faultcode>sf:INVALID_LOGIN</faultcode>"
        f"<faultstring>INVALID_LOGIN: {_INVALID}</faultstring><detail>"
        '<sf:LoginFault xsi:type="sf:LoginFault"><sf:exceptionCode>INVALID_LOGIN</sf:exceptionCode>'
        f"<sf:exceptionMessage>{_INVALID}</sf:exceptionMessage></sf:LoginFault></detail></soapenv:Fault>"
    )
    return web.Response(status=500, text=_ENVELOPE.format(body), content_type="text/xml")


async def login(request: web.Request) -> web.Response:
    """Answer a Partner API ``login`` with a session id and the server URL."""
    state = sim(request)
    try:
        root = ET.fromstring(await request.text())
    except ET.ParseError:
        return _fault()
    username, password = _text(root, "username"), _text(root, "password")
    user_id = state.authority.users.get(username)
    if user_id is None or not password.startswith(state.config.password):
        return _fault()
    token = state.authority.issue(user_id)["access_token"]
    version = request.match_info["version"]
    base = state.config.base_url
    user = state.org.records["User"][user_id]
    result = (
        f"<loginResponse><result><metadataServerUrl>{base}/services/Soap/m/{version}/{ORG_ID[:15]}"
        "</metadataServerUrl><passwordExpired>false</passwordExpired><sandbox>false</sandbox>"
        f"<serverUrl>{base}/services/Soap/u/{version}/{ORG_ID[:15]}</serverUrl>"
        f"<sessionId>{token}</sessionId><userId>{user_id}</userId><userInfo>"
        f"<organizationId>{ORG_ID}</organizationId><userEmail>{user['Email']}</userEmail>"
        f"<userFullName>{user['Name']}</userFullName><userId>{user_id}</userId>"
        f"<userName>{username}</userName></userInfo></result></loginResponse>"
    )
    return web.Response(text=_ENVELOPE.format(result), content_type="text/xml")


def routes() -> list[web.RouteDef]:
    """The SOAP login routes (also under a ``<name>.salesforce.com`` alias)."""
    return [
        web.post(r"/services/Soap/u/{version:\d+\.\d}", login),
        web.post(r"/{alias:[^/]+\.salesforce\.com}/services/Soap/u/{version:\d+\.\d}", login),
    ]
