"""Alembic environment: online migrations against the URL given by ``sfe.db``."""

from alembic import context
from sqlalchemy import create_engine, pool

from projections.tables import metadata

config = context.config
url = config.attributes["sqlalchemy_url"]


def run_migrations_online() -> None:
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=metadata, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    context.configure(url=url, target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
