"""Alembic environment: migrations run against the URL the caller configured."""

from __future__ import annotations

from alembic import context

from app.capabilities import installed
from app.db import make_engine
from app.models import Base

# Importing each capability registers its tables on Base.metadata.
installed()
config = context.config
# Importing the capabilities imports their models: Alembic sees their tables too.
installed()
target_metadata = Base.metadata


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url, "sqlalchemy.url is not set"
    engine = make_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
