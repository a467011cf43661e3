//! `kiln serve`: run the HTTP service on embedded defaults.

use std::net::SocketAddr;
use std::path::PathBuf;

use kiln_backend::service::{self, Config, Role};

use super::exit;

/// Run the kiln service: the REST API under /api/v1 with SQLite, the image
/// store and artifacts in $KILN_HOME. Settings come from a TOML file
/// ($KILN_HOME/serve.toml by default), then KILN_* environment variables
/// (KILN_LISTEN, KILN_WORKERS, KILN_DATABASE_URL, ...), then these flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Configuration file [default: $KILN_HOME/serve.toml when present].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// What this process does: `all` (API, web UI and builds), `api`, or
    /// `worker` (builds from the shared queue, with health and metrics on
    /// --listen) [default: all].
    #[arg(long, value_enum, value_name = "ROLE")]
    role: Option<Role>,
    /// Builds run at once [default: 2].
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// PEM certificate chain: serve HTTPS (needs --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of the certificate.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// The server's trust policy (TOML), enforced on every team's builds
    /// together with the team's own.
    #[arg(long, value_name = "FILE")]
    trust_policy: Option<PathBuf>,
}

pub fn run(args: Args) -> u8 {
    let mut cfg = match Config::load(args.config.as_deref(), std::env::vars()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kiln: {e}");
            return exit::USAGE;
        }
    };
    if let Some(l) = args.listen {
        cfg.listen = l;
    }
    if let Some(r) = args.role {
        cfg.role = r;
    }
    if let Some(w) = args.workers {
        cfg.workers = w;
    }
    if args.tls_cert.is_some() {
        cfg.tls_cert = args.tls_cert;
        cfg.tls_key = args.tls_key;
    }
    if args.trust_policy.is_some() {
        cfg.trust_policy = args.trust_policy;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kiln: cannot start the async runtime: {e}");
            return exit::INVALID;
        }
    };
    runtime.block_on(async move {
        let server = match service::start(cfg).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("kiln: {e}");
                return exit::INVALID;
            }
        };
        if let Some(password) = &server.admin_password {
            eprintln!(
                "kiln serve: created the account `admin`; its password is shown only this once:\n\
                 kiln serve: admin password: {password}"
            );
        }
        let serves = match server.app.cfg.role {
            Role::Worker => "health and metrics of a worker",
            Role::Api => "the API, without builds",
            Role::All => "the API and builds",
        };
        eprintln!(
            "kiln serve: listening on {}://{} ({serves}; state in {}, database {})",
            if server.app.tls { "https" } else { "http" },
            server.addr,
            server.app.cfg.home.display(),
            service::db::redact(&server.app.cfg.database_url()),
        );
        let shutdown = async {
            let ctrl_c = tokio::signal::ctrl_c();
            #[cfg(unix)]
            {
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                        .expect("SIGTERM handler");
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            #[cfg(not(unix))]
            let _ = ctrl_c.await;
            eprintln!("kiln serve: shutting down");
        };
        match server.serve(shutdown).await {
            Ok(()) => exit::OK,
            Err(e) => {
                eprintln!("kiln: {e}");
                exit::INVALID
            }
        }
    })
}
