-- One row per key: the key's sibling set, bincode-encoded (quorumlog_core::Siblings).
CREATE TABLE IF NOT EXISTS siblings (
    key  TEXT PRIMARY KEY NOT NULL,
    data BLOB NOT NULL
) WITHOUT ROWID;
