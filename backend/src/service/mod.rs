//! `kiln serve`: the HTTP service over the build engine.
//!
//! - `config` — TOML file plus `KILN_*` environment.
//! - `db` — SQLite or PostgreSQL through sqlx, with the embedded migrations.
//! - `auth` — accounts, tokens, sessions, roles, the login rate limit.
//! - `jobs` — the persistent build queue and its worker pool.
//! - `trust` — the server's and a team's trust policies, combined.
//! - `keys` — each team's release signing key; `release` — a succeeded
//!   build as the engine publishes it.
//! - `tls` — HTTPS with rustls when a certificate and key are configured.
//! - `api` — one router per resource under `/api/v1`, and the OpenAPI
//!   document generated from them.
//! - `assets` — the embedded web UI.

pub mod api;
pub mod assets;
pub mod auth;
pub mod config;
pub mod db;
pub mod jobs;
pub mod keys;
pub mod release;
pub mod tls;
pub mod trust;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use kiln_signer::policy::TrustPolicy;

use crate::engine::store::{self, Store};

pub use self::config::{Config, Role};
use self::db::Db;

/// Everything a request handler or worker needs.
pub struct App {
    pub cfg: Config,
    pub db: Db,
    /// Which SQL dialect `db` speaks, where the two differ.
    pub backend: db::Backend,
    pub store: Store,
    pub jobs: jobs::Jobs,
    pub limiter: auth::LoginLimiter,
    /// Whether the service is served over TLS (cookies get `Secure`).
    pub tls: bool,
    /// The server's trust policy, from `trust_policy`.
    pub trust_policy: Option<TrustPolicy>,
}

pub type AppState = Arc<App>;

/// A started service.
pub struct Server {
    pub addr: SocketAddr,
    pub app: AppState,
    /// The first start's admin password, to print once.
    pub admin_password: Option<String>,
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

/// Opens the state, migrates, creates the first admin when there is no
/// account, recovers builds a dead process left running, starts the
/// workers (unless the role is `api`) and binds the listener (a `worker`
/// serves only health and metrics on it).
pub async fn start(cfg: Config) -> Result<Server, String> {
    let tls = match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(cert), Some(key)) => Some(tls::acceptor(cert, key)?),
        (None, None) => None,
        _ => return Err("TLS needs both tls_cert and tls_key".into()),
    };
    for dir in ["work", "artifacts/sha256"] {
        let d = cfg.home.join(dir);
        std::fs::create_dir_all(&d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
    }
    let trust_policy = match &cfg.trust_policy {
        Some(path) => Some(TrustPolicy::load(path).map_err(|e| e.to_string())?),
        None => None,
    };
    let store_dir = store::default_store_dir(&cfg.home);
    let store = Store::open(&store_dir)
        .map_err(|e| format!("cannot open the store {}: {e}", store_dir.display()))?;
    let (db, backend) = db::open(&cfg.database_url()).await?;
    let admin_password = bootstrap(&db)
        .await
        .map_err(|e| format!("first start: {e}"))?;
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", cfg.listen))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("listener: {e}"))?;
    let app = Arc::new(App {
        cfg,
        db,
        backend,
        store,
        jobs: jobs::Jobs::default(),
        limiter: auth::LoginLimiter::default(),
        tls: tls.is_some(),
        trust_policy,
    });
    let recovered = jobs::recover(&app)
        .await
        .map_err(|e| format!("recovering builds: {e}"))?;
    if recovered > 0 {
        eprintln!("kiln serve: {recovered} build(s) were running when their worker stopped; retried or failed");
    }
    jobs::spawn_recovery(&app);
    if app.cfg.role != Role::Api {
        jobs::spawn_workers(&app, app.cfg.workers.max(1));
    }
    Ok(Server {
        addr,
        app,
        admin_password,
        listener,
        tls,
    })
}

impl Server {
    /// Serves until `shutdown` completes.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), String> {
        let router = match self.app.cfg.role {
            Role::Worker => api::health_router(self.app.clone()),
            Role::All | Role::Api => api::router(self.app.clone()),
        };
        let app = self.app.clone();
        let make = router.into_make_service_with_connect_info::<tls::Peer>();
        match self.tls {
            Some(acceptor) => {
                let listener = tls::TlsListener::new(self.listener, acceptor)
                    .map_err(|e| format!("listener: {e}"))?;
                axum::serve(listener, make)
                    .with_graceful_shutdown(shutdown)
                    .await
            }
            None => {
                axum::serve(self.listener, make)
                    .with_graceful_shutdown(shutdown)
                    .await
            }
        }
        .map_err(|e| format!("serving: {e}"))?;
        app.jobs.stop();
        Ok(())
    }

    /// Serves in the background (for tests and embedding).
    pub fn spawn(
        self,
    ) -> (
        SocketAddr,
        AppState,
        tokio::task::JoinHandle<Result<(), String>>,
    ) {
        let addr = self.addr;
        let app = self.app.clone();
        let handle = tokio::spawn(self.serve(std::future::pending()));
        (addr, app, handle)
    }
}

/// On an empty database: the `admin` account (server admin, admin of team
/// `default`) with a random password, returned to be shown once.
async fn bootstrap(db: &Db) -> Result<Option<String>, sqlx::Error> {
    let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(db)
        .await?;
    if users > 0 {
        return Ok(None);
    }
    let password = db::random_hex(16);
    let hash = {
        let p = password.clone();
        tokio::task::spawn_blocking(move || auth::hash_password(&p))
            .await
            .expect("hashing")
    };
    let id = db::new_id();
    let now = db::now();
    let mut tx = db.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO users (id, name, password_hash, server_admin, created_at) \
         VALUES ($1, 'admin', $2, 1, $3) ON CONFLICT (name) DO NOTHING",
    )
    .bind(&id)
    .bind(&hash)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    if inserted.rows_affected() == 0 {
        return Ok(None);
    }
    sqlx::query(
        "INSERT INTO teams (name, created_at) VALUES ('default', $1) ON CONFLICT DO NOTHING",
    )
    .bind(now)
    .execute(&mut *tx)
    .await?;
    sqlx::query("INSERT INTO members (team, user_id, role) VALUES ('default', $1, 'admin')")
        .bind(&id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    db::audit(
        db,
        None,
        Some("default"),
        "bootstrap",
        Some("admin"),
        serde_json::json!({}),
    )
    .await;
    Ok(Some(password))
}
