"""Database migrations (Alembic), applied with ``sfe db upgrade``.

Migrations live inside the package so an installed ``sfe`` can migrate without the
source tree; the database URL comes from settings, never from an ini file.
"""

from __future__ import annotations

import importlib.resources

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine

from sfe.settings import Settings


def alembic_config(settings: Settings) -> Config:
    """An Alembic configuration pointing at the packaged migrations and our database."""
    config = Config()
    config.set_main_option(
        "script_location", str(importlib.resources.files("sfe.db").joinpath("migrations"))
    )
    config.attributes["sqlalchemy_url"] = settings.sqlalchemy_url()
    return config


def upgrade(settings: Settings, revision: str = "head") -> None:
    """Apply migrations up to ``revision``."""
    command.upgrade(alembic_config(settings), revision)


def downgrade(settings: Settings, revision: str) -> None:
    """Revert migrations down to ``revision`` (``base`` removes every table)."""
    command.downgrade(alembic_config(settings), revision)


def current_revision(settings: Settings) -> str | None:
    """The revision the database is at, or None before the first migration."""
    engine = create_engine(settings.sqlalchemy_url())
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
