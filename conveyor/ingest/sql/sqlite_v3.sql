-- Version 3 changes the PostgreSQL store's column storage only (see postgres_v3.sql): nothing to do in SQLite.
SELECT 1;
