"""SQLite: the embedded default, one file, zero setup."""

from conveyor.backends.sqlite.backend import SCHEMA_VERSION, SQLiteBackend
from conveyor.backends.sqlite.driver import sqlite_path

__all__ = ["SCHEMA_VERSION", "SQLiteBackend", "sqlite_path"]
