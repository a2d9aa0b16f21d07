"""PostgreSQL: many worker processes on many hosts share one queue."""

from conveyor.backends.postgres.backend import SCHEMA_VERSION, PostgresBackend

__all__ = ["SCHEMA_VERSION", "PostgresBackend"]
