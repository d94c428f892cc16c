//! The SQL schema of the SQLite and PostgreSQL stores, compiled into the
//! binary and run with sqlx's migrator, as `sqlx::migrate!` would: the
//! same versions, descriptions and checksums, so a database migrated by
//! either is current for the other. Embedded by hand because the macro
//! needs sqlx's `macros` feature, which compiles a second copy of sqlx's
//! database drivers (and tokio) for the compiler: about 80 CPU-seconds of
//! every clean build and clippy run. A test checks each list against its
//! directory.
use futures::future::BoxFuture;
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType};
use std::borrow::Cow;

/// `(file name, SQL)` of every migration in `migrations/sqlite/`.
pub(crate) const SQLITE: Embedded = Embedded(&[
    (
        "0001_siblings.sql",
        include_str!("../../migrations/sqlite/0001_siblings.sql"),
    ),
    (
        "0002_row_version.sql",
        include_str!("../../migrations/sqlite/0002_row_version.sql"),
    ),
    (
        "0003_node_meta.sql",
        include_str!("../../migrations/sqlite/0003_node_meta.sql"),
    ),
    (
        "0004_hints.sql",
        include_str!("../../migrations/sqlite/0004_hints.sql"),
    ),
]);

/// `(file name, SQL)` of every migration in `migrations/postgres/`.
pub(crate) const POSTGRES: Embedded = Embedded(&[
    (
        "0001_siblings.sql",
        include_str!("../../migrations/postgres/0001_siblings.sql"),
    ),
    (
        "0002_row_version.sql",
        include_str!("../../migrations/postgres/0002_row_version.sql"),
    ),
    (
        "0003_node_meta.sql",
        include_str!("../../migrations/postgres/0003_node_meta.sql"),
    ),
    (
        "0004_hints.sql",
        include_str!("../../migrations/postgres/0004_hints.sql"),
    ),
]);

/// Migrations as `(file name, SQL)`, named as sqlx names files:
/// `VERSION_DESCRIPTION.sql`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Embedded(&'static [(&'static str, &'static str)]);

impl Embedded {
    fn migrations(self) -> Result<Vec<Migration>, BoxDynError> {
        self.0
            .iter()
            .map(|&(file, sql)| {
                // The rules of sqlx's own directory reader.
                let (version, rest) = file
                    .split_once('_')
                    .ok_or_else(|| format!("migration {file:?} is not VERSION_NAME.sql"))?;
                let version: i64 = version
                    .parse()
                    .map_err(|_| format!("migration {file:?} has no integer version"))?;
                let migration_type = MigrationType::from_filename(rest);
                let description = rest
                    .trim_end_matches(migration_type.suffix())
                    .replace('_', " ");
                Ok(Migration::new(
                    version,
                    Cow::Owned(description),
                    migration_type,
                    Cow::Borrowed(sql),
                    sql.starts_with("-- no-transaction"),
                ))
            })
            .collect()
    }
}

impl MigrationSource<'static> for Embedded {
    fn resolve(self) -> BoxFuture<'static, Result<Vec<Migration>, BoxDynError>> {
        Box::pin(async move { self.migrations() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// What sqlx reads from the directory itself (what `migrate!` embeds).
    async fn from_directory(dir: &str) -> Vec<(i64, String, Vec<u8>, bool)> {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(dir);
        let mut migrations = path.resolve().await.expect("the migrations directory");
        migrations.sort_by_key(|m| m.version);
        summary(migrations)
    }

    fn summary(migrations: Vec<Migration>) -> Vec<(i64, String, Vec<u8>, bool)> {
        migrations
            .into_iter()
            .map(|m| {
                (
                    m.version,
                    m.description.into_owned(),
                    m.checksum.into_owned(),
                    m.no_tx,
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn every_migration_file_is_embedded_as_sqlx_reads_it() {
        for (embedded, dir) in [
            (SQLITE, "migrations/sqlite"),
            (POSTGRES, "migrations/postgres"),
        ] {
            let ours = summary(embedded.migrations().expect("well-named files"));
            assert_eq!(ours, from_directory(dir).await, "{dir}");
        }
    }

    #[test]
    fn a_badly_named_migration_is_refused_by_name() {
        let err = Embedded(&[("siblings.sql", "SELECT 1")])
            .migrations()
            .expect_err("no version");
        assert!(err.to_string().contains("\"siblings.sql\""), "{err}");
    }
}
