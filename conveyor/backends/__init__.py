"""Storage backends, chosen by the database URL's scheme."""

from __future__ import annotations

from conveyor.backends.base import Backend
from conveyor.errors import ConfigError

__all__ = ["Backend", "open_backend"]


def open_backend(url: str, *, connect_timeout_s: float | None = None) -> Backend:
    """Open (and migrate) the backend a URL names: `sqlite:///path.db` or `postgresql://...`. `connect_timeout_s`:
    how long reaching a database server may take (PostgreSQL) before it is a `ConfigError`."""
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "sqlite":
        from conveyor.backends.sqlite import SQLiteBackend

        return SQLiteBackend(url)
    if scheme in {"postgresql", "postgres"} or scheme.startswith("postgresql+"):
        try:
            from conveyor.backends.postgres import PostgresBackend
        except ImportError as exc:
            raise ConfigError(
                f"the PostgreSQL backend needs psycopg 3 ({exc}): pip install 'conveyor-jobs[postgres]'"
            ) from exc
        return PostgresBackend(url, connect_timeout_s=connect_timeout_s)
    shown = url.split("://", 1)[0] + "://..." if "://" in url else url  # a URL may hold a password
    raise ConfigError(f"unsupported database URL {shown!r}: use sqlite:///path/to/file.db or postgresql://...")
