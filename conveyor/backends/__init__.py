"""Storage backends, chosen by the database URL's scheme."""

from __future__ import annotations

from conveyor.backends.base import Backend
from conveyor.errors import ConfigError

__all__ = ["Backend", "open_backend"]


def open_backend(url: str) -> Backend:
    """Open (and migrate) the backend a URL names: `sqlite:///path.db` or `postgresql://...`."""
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
        return PostgresBackend(url)  # type: ignore[no-any-return,unused-ignore]
    raise ConfigError(f"unsupported database URL {url!r}: use sqlite:///path/to/file.db or postgresql://...")
