"""The store: SQLAlchemy 2 (async) models, the engine, and Alembic migrations.

SQLite in the data dir by default; the same code runs on PostgreSQL (``postgresql+asyncpg://``).
"""
