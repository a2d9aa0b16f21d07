"""`conveyor migrate`: create or upgrade the schema."""

from __future__ import annotations

from conveyor.cli.common import AppOption, DbOption, handle_errors, load_app, out


@handle_errors
def migrate(db: DbOption = None, app: AppOption = None) -> None:
    """Create or upgrade the database schema (also done automatically at start)."""
    conveyor = load_app(db, app)
    conveyor.backend.migrate()
    out.print(f"schema up to date ({conveyor.backend.dialect})")
