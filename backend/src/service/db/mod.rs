//! The service's state in SQL: SQLite by default, PostgreSQL when
//! `database_url` says `postgres://`. One pool type serves both (sqlx's
//! `Any` driver), so every statement is written once, in the subset both
//! understand: `$N` placeholders, `ON CONFLICT`, `RETURNING`, BIGINT times.
//! Where they must differ (the queue claim), `Backend` picks the text.
//! Also the small helpers every module shares (ids, clocks, the audit log).

use std::borrow::Cow;

use sqlx::any::AnyPoolOptions;
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::{AnyPool, Executor};

pub type Db = AnyPool;
pub type Row = sqlx::any::AnyRow;

/// Which database a `database_url` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of(url: &str) -> Result<Backend, String> {
        let scheme = url.split_once(':').map_or("", |(s, _)| s);
        match scheme {
            "sqlite" => Ok(Backend::Sqlite),
            "postgres" | "postgresql" => Ok(Backend::Postgres),
            _ => Err(format!(
                "database_url `{}`: kiln speaks sqlite:// and postgres://",
                redact(url)
            )),
        }
    }

    fn migrations(self) -> &'static [(i64, &'static str, &'static str)] {
        match self {
            Backend::Sqlite => SQLITE_MIGRATIONS,
            Backend::Postgres => POSTGRES_MIGRATIONS,
        }
    }
}

/// The migrations in `backend/migrations/<backend>/`, compiled into the
/// binary (`include_str!` and sqlx's runtime migrator, no proc macro). The
/// two directories hold the same schema, version for version.
const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "service",
        include_str!("../../../migrations/sqlite/0001_service.sql"),
    ),
    (
        2,
        "content_trust",
        include_str!("../../../migrations/sqlite/0002_content_trust.sql"),
    ),
    (
        3,
        "releases",
        include_str!("../../../migrations/sqlite/0003_releases.sql"),
    ),
    (
        4,
        "flights",
        include_str!("../../../migrations/sqlite/0004_flights.sql"),
    ),
];

const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "service",
        include_str!("../../../migrations/postgres/0001_service.sql"),
    ),
    (
        2,
        "content_trust",
        include_str!("../../../migrations/postgres/0002_content_trust.sql"),
    ),
    (
        3,
        "releases",
        include_str!("../../../migrations/postgres/0003_releases.sql"),
    ),
    (
        4,
        "flights",
        include_str!("../../../migrations/postgres/0004_flights.sql"),
    ),
];

#[derive(Debug)]
struct Embedded(Backend);

impl<'s> MigrationSource<'s> for Embedded {
    fn resolve(self) -> futures_util::future::BoxFuture<'s, Result<Vec<Migration>, BoxDynError>> {
        Box::pin(async move {
            Ok(self
                .0
                .migrations()
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

/// `url` with any password replaced, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// SQLite's settings for a service: WAL so readers never wait for the
/// writer, foreign keys on, and a wait instead of `SQLITE_BUSY`.
const SQLITE_PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
     PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;";

/// Opens the database at `url` (creating a SQLite file if needed) and
/// migrates it. Several processes may do this at once: the migrator locks.
pub async fn open(url: &str) -> Result<(Db, Backend), String> {
    sqlx::any::install_default_drivers();
    let backend = Backend::of(url)?;
    let connect_url = match backend {
        Backend::Sqlite if !url.contains('?') => format!("{url}?mode=rwc"),
        _ => url.to_owned(),
    };
    let mut options = AnyPoolOptions::new().max_connections(8);
    if backend == Backend::Sqlite {
        options = options.after_connect(|conn, _| {
            Box::pin(async move {
                conn.execute(SQLITE_PRAGMAS).await?;
                Ok(())
            })
        });
    }
    let pool = options
        .connect(&connect_url)
        .await
        .map_err(|e| format!("cannot open the database {}: {e}", redact(url)))?;
    let migrator = Migrator::new(Embedded(backend))
        .await
        .map_err(|e| format!("migrations: {e}"))?;
    migrator
        .run(&pool)
        .await
        .map_err(|e| format!("migrating the database: {e}"))?;
    Ok((pool, backend))
}

/// `n` numbered placeholders from `$first`: `$1, $2, $3`.
pub fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
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
        "INSERT INTO audit_log (at, actor, team, action, target, detail) VALUES ($1, $2, $3, $4, $5, $6)",
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
    fn backends_by_scheme_and_passwords_redacted() {
        assert_eq!(Backend::of("sqlite:///k/kiln.db"), Ok(Backend::Sqlite));
        assert_eq!(
            Backend::of("postgres://kiln@127.0.0.1/kiln"),
            Ok(Backend::Postgres)
        );
        let e = Backend::of("mysql://u:secret@h/db").unwrap_err();
        assert!(e.contains("u:***@h") && !e.contains("secret"), "{e}");
    }

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
        let (db, _) = open(&url).await.unwrap();
        // Opening again runs no migration twice.
        let (db2, _) = open(&url).await.unwrap();
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
