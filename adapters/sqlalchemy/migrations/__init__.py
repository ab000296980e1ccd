"""Alembic migrations of the SQLAlchemy adapter, run through :mod:`adapters.sqlalchemy.migrate`."""
