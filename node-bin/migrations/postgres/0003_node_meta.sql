-- Facts about the node that owns this database, one row per name.
-- `incarnation`: which life of the node minted its dots. Recorded the first
-- time the node opens the database, in the database itself, so a lost or
-- replaced database (no row) makes the node start a new incarnation and
-- never re-mint a dot.
CREATE TABLE IF NOT EXISTS node_meta (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
