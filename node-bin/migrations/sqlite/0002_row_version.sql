-- A per-row version for optimistic updates through group commit: an
-- update reads the row, merges in Rust, and the committer writes it back
-- only if nobody changed the row meanwhile, many rows per transaction.
ALTER TABLE siblings ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
