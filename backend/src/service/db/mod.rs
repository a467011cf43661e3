//! The service's state in SQLite: opening, the embedded migrations, and the
//! small helpers every module shares (ids, clocks, the audit log).

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

pub type Db = SqlitePool;

/// The migrations in `backend/migrations/`, compiled into the binary (no
/// proc macro needed: `include_str!` and sqlx's runtime migrator).
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "service",
        include_str!("../../../migrations/0001_service.sql"),
    ),
    (
        2,
        "content_trust",
        include_str!("../../../migrations/0002_content_trust.sql"),
    ),
    (
        3,
        "releases",
        include_str!("../../../migrations/0003_releases.sql"),
    ),
];

#[derive(Debug)]
struct Embedded;

impl<'s> MigrationSource<'s> for Embedded {
    fn resolve(self) -> futures_util::future::BoxFuture<'s, Result<Vec<Migration>, BoxDynError>> {
        Box::pin(async {
            Ok(MIGRATIONS
                .iter()
                .map(|(version, name, sql)| {
                    Migration::new(
                        *version,
                        Cow::Borrowed(*name),
                        MigrationType::Simple,
                        Cow::Borrowed(*sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

/// Opens (creating if needed) the database at `url` and migrates it.
pub async fn open(url: &str) -> Result<Db, String> {
    let opts = SqliteConnectOptions::from_str(url)
        .map_err(|e| format!("database_url `{url}`: {e}"))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10));
    let pool = SqlitePoolOptions::new()
        .max_connections(8)
        .connect_with(opts)
        .await
        .map_err(|e| format!("cannot open the database {url}: {e}"))?;
    let migrator = Migrator::new(Embedded)
        .await
        .map_err(|e| format!("migrations: {e}"))?;
    migrator
        .run(&pool)
        .await
        .map_err(|e| format!("migrating the database: {e}"))?;
    Ok(pool)
}

/// Unix seconds now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `n` random bytes as lower-case hex.
pub fn random_hex(n: usize) -> String {
    use argon2::password_hash::rand_core::{OsRng, RngCore};
    let mut bytes = vec![0u8; n];
    OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// A new opaque id (128 random bits).
pub fn new_id() -> String {
    random_hex(16)
}

/// Unix seconds as RFC 3339 UTC (`2024-05-01T12:00:00Z`).
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Appends one record to the audit log (which triggers keep append-only).
pub async fn audit(
    db: &Db,
    actor: Option<&str>,
    team: Option<&str>,
    action: &str,
    target: Option<&str>,
    detail: serde_json::Value,
) {
    let r = sqlx::query(
        "INSERT INTO audit_log (at, actor, team, action, target, detail) VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(now())
    .bind(actor)
    .bind(team)
    .bind(action)
    .bind(target)
    .bind(detail.to_string())
    .execute(db)
    .await;
    if let Err(e) = r {
        eprintln!("kiln serve: cannot write the audit log: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_714_564_800), "2024-05-01T12:00:00Z");
    }

    #[tokio::test]
    async fn migrates_and_keeps_the_audit_log_append_only() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let db = open(&url).await.unwrap();
        // Opening again runs no migration twice.
        let db2 = open(&url).await.unwrap();
        audit(&db, Some("u"), None, "test", None, serde_json::json!({})).await;
        assert!(sqlx::query("UPDATE audit_log SET action = 'x'")
            .execute(&db2)
            .await
            .is_err());
        assert!(sqlx::query("DELETE FROM audit_log")
            .execute(&db)
            .await
            .is_err());
    }
}
