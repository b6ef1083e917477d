"""OAuth endpoints: ``/services/oauth2/token``, ``/services/oauth2/revoke``, identity URLs.

The token endpoint also answers at ``/<name>.salesforce.com/services/oauth2/token`` so
that clients which build their login URL from a domain name (simple-salesforce's
``domain=``) can be pointed at the simulator with ``domain="127.0.0.1:8443/login"``.
"""

from __future__ import annotations

from aiohttp import web

from simulator.auth import ORG_ID, OAuthError
from simulator.http.common import reply, sim


async def token(request: web.Request) -> web.Response:
    """Grant an access token (password, refresh_token, JWT bearer, client_credentials)."""
    form = {key: str(value) for key, value in (await request.post()).items()}
    form.update({k: v for k, v in request.query.items() if k not in form})
    try:
        body = sim(request).authority.grant(form, request.headers.get("Authorization"))
    except OAuthError as error:
        return reply(error.body(), error.status)
    return reply(body)


async def revoke(request: web.Request) -> web.Response:
    """Revoke an access or refresh token."""
    form = await request.post()
    value = str(form.get("token") or request.query.get("token") or "")
    if not sim(request).authority.revoke(value):
        return reply(
            {
                "error": "unsupported_token_type",
                "error_description": "this token type is not supported",
            },
            400,
        )
    return web.Response(status=200)


async def identity(request: web.Request) -> web.Response:
    """The identity URL of the user a token belongs to."""
    state = sim(request)
    session = state.authority.session(request.headers.get("Authorization"))
    if session is None:
        return web.Response(status=403, text="Bad_OAuth_Token")
    user = state.org.records["User"][session.user_id]
    base = state.config.base_url
    return reply(
        {
            "id": f"{base}/id/{ORG_ID}/{session.user_id}",
            "user_id": session.user_id,
            "organization_id": ORG_ID,
            "username": user["Username"],
            "display_name": user["Name"],
            "email": user["Email"],
            "active": True,
            "urls": {
                "rest": f"{base}/services/data/v{{version}}/",
                "sobjects": f"{base}/services/data/v{{version}}/sobjects/",
                "query": f"{base}/services/data/v{{version}}/query/",
            },
        }
    )


def routes() -> list[web.RouteDef]:
    """The OAuth routes."""
    return [
        web.post("/services/oauth2/token", token),
        web.post(r"/{alias:[^/]+\.salesforce\.com}/services/oauth2/token", token),
        web.post("/services/oauth2/revoke", revoke),
        web.get("/services/oauth2/revoke", revoke),
        web.get("/id/{org}/{user}", identity),
        web.get("/services/oauth2/userinfo", identity),
    ]
