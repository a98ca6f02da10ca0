//! The appliance database: opening it (SQLite under the data directory by default), the
//! embedded migrations, and a liveness probe for `/readyz`. SQL that only SQLite understands
//! stays in this module so PostgreSQL can follow.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use firmware_config::{Config, DatabaseUrl};
use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

/// Why the database could not be opened or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// The data directory could not be created.
    #[error("cannot create the data directory {}: {source}", path.display())]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The configured database kind is not available in this build.
    #[error("database.url: {0}")]
    Unsupported(String),
    /// Opening or querying failed.
    #[error("database {}: {source}", path.display())]
    Sqlx {
        /// The database file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: sqlx::Error,
    },
    /// A migration failed.
    #[error("database {} migration: {source}", path.display())]
    Migrate {
        /// The database file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// The data-encryption key could not be had.
    #[error(transparent)]
    Key(#[from] crate::gm::GmError),
}

/// The migrations, embedded in the binary, in order.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "meta", include_str!("../migrations/0001_meta.sql")),
    (2, "audit", include_str!("../migrations/0002_audit.sql")),
    (
        3,
        "accounts",
        include_str!("../migrations/0003_accounts.sql"),
    ),
    (4, "totp", include_str!("../migrations/0004_totp.sql")),
    (
        5,
        "consultations",
        include_str!("../migrations/0005_consultations.sql"),
    ),
    (6, "reports", include_str!("../migrations/0006_reports.sql")),
    (
        7,
        "registry",
        include_str!("../migrations/0007_registry.sql"),
    ),
    (
        8,
        "report_templates",
        include_str!("../migrations/0008_report_templates.sql"),
    ),
    (
        9,
        "service_accounts",
        include_str!("../migrations/0009_service_accounts.sql"),
    ),
    (
        10,
        "sealed_columns",
        include_str!("../migrations/0010_sealed_columns.sql"),
    ),
    (
        11,
        "audit_hash",
        include_str!("../migrations/0011_audit_hash.sql"),
    ),
    (
        12,
        "report_sm2",
        include_str!("../migrations/0012_report_sm2.sql"),
    ),
    (
        13,
        "service_scope",
        include_str!("../migrations/0013_service_scope.sql"),
    ),
    (
        14,
        "clinical_record",
        include_str!("../migrations/0014_clinical_record.sql"),
    ),
    (
        15,
        "fhir_sources",
        include_str!("../migrations/0015_fhir_sources.sql"),
    ),
    (
        16,
        "study_links",
        include_str!("../migrations/0016_study_links.sql"),
    ),
    (
        17,
        "patients_by_record",
        include_str!("../migrations/0017_patients_by_record.sql"),
    ),
];

/// An open database.
#[derive(Debug, Clone)]
pub struct Database {
    pool: SqlitePool,
    options: SqliteConnectOptions,
    path: PathBuf,
    sealer: crate::gm::Sealer,
}

impl Database {
    /// Creates the data directory (private to this user) and opens the database, applying
    /// pending migrations.
    pub async fn open(config: &Config) -> Result<Self, DbError> {
        let path = match (&config.database.url, config.sqlite_path()) {
            (DatabaseUrl::Sqlite(_), Some(path)) => path,
            _ => {
                return Err(DbError::Unsupported(
                    "PostgreSQL URLs are accepted by the configuration, but this build opens SQLite only; \
                     PostgreSQL support arrives with the accounts and workflow work"
                        .into(),
                ));
            }
        };
        create_private_dir(&config.storage.data_dir)?;
        if let Some(parent) = path.parent() {
            create_private_dir(parent)?;
        }
        let sqlx_err = |source| DbError::Sqlx {
            path: path.clone(),
            source,
        };
        let options = SqliteConnectOptions::from_str("sqlite:")
            .map_err(sqlx_err)?
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            // Deleted and overwritten content is zeroed, so a value sealed in place leaves no
            // clear copy in free pages.
            .pragma("secure_delete", "ON")
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(config.database.max_connections)
            .connect_with(options.clone())
            .await
            .map_err(sqlx_err)?;
        let migrations = MIGRATIONS
            .iter()
            .map(|(version, name, sql)| {
                Migration::new(
                    *version,
                    Cow::Borrowed(*name),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect();
        Migrator::with_migrations(migrations)
            .run(&pool)
            .await
            .map_err(|source| DbError::Migrate {
                path: path.clone(),
                source,
            })?;
        // New audit records are chained with the configured hash.
        sqlx::query("INSERT OR REPLACE INTO meta (key, value) VALUES ('audit_hash', ?)")
            .bind(config.security.audit_hash.as_str())
            .execute(&pool)
            .await
            .map_err(sqlx_err)?;
        let sealer = crate::gm::Sealer::load(config)?;
        seal_plain_rows(&pool, &sealer).await.map_err(sqlx_err)?;
        Ok(Self {
            pool,
            options,
            path,
            sealer,
        })
    }

    /// What seals the sensitive columns.
    pub fn sealer(&self) -> &crate::gm::Sealer {
        &self.sealer
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The connection pool.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// How the pool's connections are opened, for a connection of a writer's own.
    pub fn connect_options(&self) -> SqliteConnectOptions {
        self.options.clone()
    }

    /// When this database was first created (UTC, `YYYY-MM-DD HH:MM:SS`).
    pub async fn created_at(&self) -> Result<String, DbError> {
        sqlx::query_scalar("SELECT value FROM meta WHERE key = 'created_at'")
            .fetch_one(&self.pool)
            .await
            .map_err(|source| DbError::Sqlx {
                path: self.path.clone(),
                source,
            })
    }

    /// Closes the pool, waiting for connections in use.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Seals the sensitive values still stored in clear (rows written before sealing existed, or
/// restored from such a backup), in one transaction; a sealed value is left alone.
async fn seal_plain_rows(pool: &SqlitePool, sealer: &crate::gm::Sealer) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let like = format!("{}%", crate::gm::SEALED);
    let ids: Vec<(i64, String)> = sqlx::query_as(
        "SELECT id, id_number FROM master_patients WHERE id_number IS NOT NULL AND id_number NOT LIKE ?",
    )
    .bind(&like)
    .fetch_all(&mut *tx)
    .await?;
    for (id, number) in &ids {
        sqlx::query("UPDATE master_patients SET id_number = ?, id_number_index = ? WHERE id = ?")
            .bind(sealer.seal("id_number", number))
            .bind(sealer.index("id_number", number))
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    let mut sealed = ids.len();
    for (table, column) in [
        ("users", "phone"),
        ("patients", "phone"),
        ("outbox", "recipient"),
    ] {
        let rows: Vec<(i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT id, {column} FROM {table} WHERE {column} <> '' AND {column} NOT LIKE ?"
        )))
        .bind(&like)
        .fetch_all(&mut *tx)
        .await?;
        for (id, phone) in &rows {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE {table} SET {column} = ? WHERE id = ?"
            )))
            .bind(sealer.seal("phone", phone))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        sealed += rows.len();
    }
    tx.commit().await?;
    if sealed > 0 {
        tracing::info!(values = sealed, "sensitive values sealed (SM4-GCM)");
    }
    Ok(())
}

fn create_private_dir(dir: &Path) -> Result<(), DbError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| DbError::DataDir {
            path: dir.to_owned(),
            source,
        })
}
