-- One row per key: the key's sibling set, bincode-encoded (quorumlog_core::Siblings).
CREATE TABLE IF NOT EXISTS siblings (
    key  TEXT PRIMARY KEY,
    data BYTEA NOT NULL
);
