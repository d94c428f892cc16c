-- A per-row version for optimistic updates: a store update reads the row,
-- merges in Rust, and writes back only if nobody changed the row meanwhile
-- (one statement, one commit), retrying otherwise.
ALTER TABLE siblings ADD COLUMN IF NOT EXISTS version BIGINT NOT NULL DEFAULT 0;
