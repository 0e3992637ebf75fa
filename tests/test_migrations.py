"""The schema comes only from Alembic: migrating an empty database must give
exactly what the models describe."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from app.models import Base


def test_migrations_produce_the_models_schema(migrated_template, database_url):
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            diff = compare_metadata(context, Base.metadata)
            tables = set(inspect(connection).get_table_names())
    finally:
        engine.dispose()
    assert diff == [], f"migrations and models differ: {diff}"
    assert {t.name for t in Base.metadata.sorted_tables} <= tables
