-- Version 3: the tsvector kept in the row (MAIN: compressed if it must be, out of line only as a last resort) and the
-- float32 vector out of line (EXTERNAL: it does not compress): a keyword search reads the words of the chunks it
-- ranks from the heap pages it visits anyway, not from TOAST (on 100,000 chunks of prose, 92 ms instead of 162 ms for
-- a query selecting 13,600). Rows written from now on are laid out so; `VACUUM FULL ingest_chunks` rewrites the
-- older ones (it takes an exclusive lock for the duration: at a quiet time).
ALTER TABLE ingest_chunks ALTER COLUMN text_tsv SET STORAGE MAIN;
ALTER TABLE ingest_chunks ALTER COLUMN embedding SET STORAGE EXTERNAL;
