"""Alembic revision scripts (a package only so that they are installed with the code)."""
