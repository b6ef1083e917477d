"""``sfe sim``: serve the org simulator, arm faults on a running one, generate a workload."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
import requests

from sfe.settings import Settings
from simulator.config import ConnectedApp, SimConfig


def _settings(ctx: click.Context) -> Settings:
    from sfe.cli import settings_from

    return settings_from(ctx)


def config_from(settings: Settings) -> SimConfig:
    """The simulator configuration of ``settings`` (``SFE_SIM_*`` and ``SFE_SF_*``)."""
    secret = settings.sf_client_secret.get_secret_value() if settings.sf_client_secret else None
    password = settings.sf_password.get_secret_value() if settings.sf_password else None
    defaults = SimConfig(state_dir=settings.state_dir / "simulator")
    return replace(
        defaults,
        host=settings.sim_host,
        port=settings.sim_port,
        api_version=settings.sf_api_version,
        username=settings.sf_username,
        password=password or defaults.password,
        app=ConnectedApp(settings.sf_client_id, secret or defaults.app.client_secret),
        jwt_cert_file=settings.sim_jwt_cert_file,
        token_ttl_seconds=settings.sim_token_ttl_seconds,
        daily_api_limit=settings.sim_daily_api_limit,
        event_retention_seconds=settings.sim_event_retention_seconds,
        sqlite_file=settings.sim_sqlite_file,
        admin_token=(
            settings.sim_admin_token.get_secret_value() if settings.sim_admin_token else None
        ),
    )


#: ``Sforce-Call-Options`` client name of `sfe sim load` (not the pipeline's).
WORKLOAD_CLIENT = "sfe-sim-load"


@click.group()
def sim() -> None:
    """The local Salesforce org simulator (OAuth, REST, Bulk API 2.0, CometD)."""


@sim.command("serve")
@click.option("--port", type=int, default=None, help="Port (default SFE_SIM_PORT, 8443).")
@click.option("--sqlite", "sqlite_file", type=click.Path(path_type=Path), default=None,
              help="Keep records and events in this SQLite file (default: in memory).")  # fmt: skip
@click.option("--retention", type=float, default=None, help="Event retention in seconds.")
@click.option("--api-limit", type=int, default=None, help="Daily API request limit.")
@click.pass_context
def serve(
    ctx: click.Context,
    port: int | None,
    sqlite_file: Path | None,
    retention: float | None,
    api_limit: int | None,
) -> None:
    """Serve the simulator over HTTPS until interrupted; prints the CA file to trust."""
    from simulator.app import serve_forever

    config = config_from(_settings(ctx))
    if port is not None:
        config = replace(config, port=port)
    if sqlite_file is not None:
        config = replace(config, sqlite_file=sqlite_file)
    if retention is not None:
        config = replace(config, event_retention_seconds=retention)
    if api_limit is not None:
        config = replace(config, daily_api_limit=api_limit)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_forever(config, announce=click.echo))


@sim.command("fault")
@click.argument("action")
@click.option("--count", type=int, default=1, help="fail_next: how many calls fail.")
@click.option(
    "--status", type=int, default=503, help="fail_next: 500, 503, or 403 (REQUEST_LIMIT_EXCEEDED)."
)
@click.option("--ms", type=float, default=0.0, help="latency: milliseconds added to every call.")
@click.option("--entity", default="Lead", help="gap: the object of the gap event.")
@click.option(
    "--change-type", default="GAP_UPDATE", help="gap: GAP_CREATE, GAP_UPDATE, ..., GAP_OVERFLOW."
)
@click.option("--record-id", "record_ids", multiple=True, help="gap: record ids (repeatable).")
@click.option("--used", type=int, default=None, help="request_limit: set the used count.")
@click.pass_context
def fault(
    ctx: click.Context, action: str, count: int, status: int, ms: float, entity: str,
    change_type: str, record_ids: tuple[str, ...], used: int | None,
) -> None:  # fmt: skip
    """Arm a fault on the running simulator.

    ACTION is one of drop_connections, forget_clients, expire_sessions, fail_next,
    request_limit, latency, gap, purge_events, clear.
    """
    settings = _settings(ctx)
    config = config_from(settings)
    body: dict[str, Any] = {"action": action, "count": count, "status": status, "ms": ms,
                               "entity": entity, "change_type": change_type, "record_ids": list(record_ids)}  # fmt: skip
    if used is not None:
        body["used"] = used
    headers = {"Authorization": f"Bearer {config.admin_token}"} if config.admin_token else {}
    response = requests.post(
        f"{config.base_url}/_sim/faults",
        json=body,
        headers=headers,
        verify=str(config.state_dir / "ca.pem"),
        timeout=10,
    )
    click.echo(json.dumps(response.json()))
    if response.status_code != 200:
        ctx.exit(1)


@sim.command("load")
@click.option("--leads", type=int, default=100)
@click.option("--opportunities", type=int, default=20)
@click.option("--accounts", type=int, default=20)
@click.option(
    "--rate", type=float, default=0.0, help="Records per second (0: as fast as possible)."
)
@click.option("--seed", type=int, default=7, help="Same seed, same records.")
@click.pass_context
def load(
    ctx: click.Context, leads: int, opportunities: int, accounts: int, rate: float, seed: int
) -> None:
    """Create realistic accounts, contacts, opportunities and leads through the REST API."""
    from simulator.load import Workload, run_workload
    from streams.salesforce.rest import auth_config, connect

    settings = _settings(ctx)
    config = auth_config(settings)
    if config.password is None and config.private_key_file is None and not config.private_key:
        config = replace(config, password=config_from(settings).password,
                         client_secret=config.client_secret or config_from(settings).app.client_secret)  # fmt: skip
    if config.ca_bundle is None:
        config = replace(config, ca_bundle=config_from(settings).state_dir / "ca.pem")
    # The workload stands for the org's users: under the pipeline's client name its changes
    # would come back flagged as the pipeline's own echoes and start no workflow.
    config = replace(config, call_options_client=WORKLOAD_CLIENT)
    counts = run_workload(connect(config), Workload(leads, opportunities, accounts, rate, seed))
    click.echo(json.dumps(counts))
