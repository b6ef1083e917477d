"""Scratch databases on the local PostgreSQL cluster, for tests that must not touch ``sfe``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql
from pydantic import SecretStr

from sfe import db
from sfe.settings import Settings
from sfe.stack import PostgresCluster


@contextmanager
def scratch_database(stack: Settings, suffix: str | None = None) -> Iterator[str]:
    """A fresh, migrated database ``sfe_scratch_<suffix>``; yields its SQLAlchemy URL.

    The database is owned by the cluster's application role, migrated to the head
    revision, and dropped (open connections and all) when the block ends. ``suffix``
    defaults to 8 random hex digits.
    """
    cluster = PostgresCluster(stack)
    database = f"sfe_scratch_{suffix or uuid.uuid4().hex[:8]}"
    with psycopg.connect(cluster.superuser_conninfo(), autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(database), sql.Identifier(cluster.role)
            )
        )
    try:
        url = stack.sqlalchemy_url().rsplit("/", 1)[0] + "/" + database
        db.upgrade(stack.model_copy(update={"database_url": SecretStr(url)}))
        yield url
    finally:
        with psycopg.connect(cluster.superuser_conninfo(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(database)))
