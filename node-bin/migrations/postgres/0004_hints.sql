-- Hinted handoff: what this node, as coordinator, keeps for a replica that
-- did not acknowledge a write, until the replica answers again. One row per
-- (target replica, key): a later miss of the same key merges into the row.
--   data        the sibling set to replay, encoded as a `siblings` row is
--   generation  changes on every write of the row and is never reused (the
--               counter is node_meta's `hint_generation`), so a replayed
--               hint is deleted only if no newer miss merged into it
--   stored_at   when the oldest miss it holds was hinted, in milliseconds
--               of the coordinator's clock (for expiry and replay order)
--   bytes       what the row counts against the per-target bound of bytes
-- A node id is a u32: BIGINT holds every one. Keys collate bytewise ("C"),
-- so replay order among hints of one time is the same on every store.
CREATE TABLE IF NOT EXISTS hints (
    target     BIGINT NOT NULL CHECK (target >= 0),
    key        TEXT COLLATE "C" NOT NULL,
    data       BYTEA NOT NULL,
    generation BIGINT NOT NULL CHECK (generation > 0),
    stored_at  BIGINT NOT NULL CHECK (stored_at >= 0),
    bytes      BIGINT NOT NULL CHECK (bytes >= 0),
    PRIMARY KEY (target, key)
);

-- A target's hints oldest first (replay order), and its expired ones.
CREATE INDEX IF NOT EXISTS hints_oldest ON hints (target, stored_at, key);
