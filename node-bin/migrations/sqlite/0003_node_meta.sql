-- Facts about the node that owns this file, one row per name. `incarnation`:
-- which life of the node minted its dots. Recorded the first time the node
-- opens the file, in the file itself, so a lost or replaced file (no row)
-- makes the node start a new incarnation and never re-mint a dot.
CREATE TABLE IF NOT EXISTS node_meta (
    name  TEXT PRIMARY KEY NOT NULL,
    value INTEGER NOT NULL
) WITHOUT ROWID;
