"""The database: schema, session factory, migrations and queries (SQLAlchemy 2.0)."""
