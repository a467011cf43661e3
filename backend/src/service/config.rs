//! Service configuration: a TOML file, then `KILN_*` environment variables
//! over it, then command-line flags over both.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What a `kiln serve` process does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The API and the web UI, and builds.
    All,
    /// The API and the web UI; builds are left to `worker` processes.
    Api,
    /// Builds from the shared queue; serves only health and metrics.
    Worker,
}

/// Every setting of `kiln serve`, with its embedded default.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// What this process does: `all`, `api` or `worker`.
    pub role: Role,
    /// State directory: database, image store, artifacts, work space.
    pub home: PathBuf,
    /// `sqlite://PATH` or `postgres://USER@HOST/DB` [default:
    /// `sqlite://$home/kiln.db`]. Worker processes sharing a queue need
    /// PostgreSQL (or one host and one SQLite file) and one `home`.
    pub database_url: Option<String>,
    /// Builds run at once by this process.
    pub workers: usize,
    /// A build running longer than this fails.
    pub build_timeout_secs: u64,
    /// Attempts a build gets when the server stops during it.
    pub max_attempts: i64,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Largest spec accepted by validate and builds.
    pub max_spec_bytes: usize,
    /// Largest total size of one build's artifacts.
    pub max_output_bytes: u64,
    /// Queued plus running builds a team may have.
    pub max_active_builds_per_team: i64,
    /// Failed logins per user name and address per minute.
    pub login_attempts_per_minute: u32,
    /// How long a browser session lasts.
    pub session_ttl_secs: i64,
    /// Registries that may be used over plain HTTP besides loopback ones.
    pub insecure_registries: Vec<String>,
    /// A build that has not reported for this long is considered dead and is
    /// retried or failed (only matters with several worker processes).
    pub heartbeat_timeout_secs: i64,
    /// PEM certificate chain and key; serve HTTPS when both are set.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// The server's trust policy (TOML), applied to every team's builds
    /// together with the team's own policy.
    pub trust_policy: Option<PathBuf>,
    /// Sign every team's releases through the signer daemon on this socket
    /// instead of with the per-team keys under `home/keys`.
    pub signer_socket: Option<PathBuf>,
    /// Image holding the systemd EFI stub the UKI formats (uki, raw-efi,
    /// qcow2-efi, iso-efi, vhd, vmdk...) are built on; named as `kiln
    /// build`'s `[build] efi_stub`.
    pub efi_stub: Option<String>,
    /// Image holding ISOLINUX for iso-bios and raw-bios; as `[build]
    /// bios_loader`.
    pub bios_loader: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            role: Role::All,
            home: crate::engine::store::kiln_home().unwrap_or_else(|| PathBuf::from(".kiln")),
            database_url: None,
            workers: 2,
            build_timeout_secs: 30 * 60,
            max_attempts: 2,
            max_body_bytes: 2 << 20,
            max_spec_bytes: 1 << 20,
            max_output_bytes: 8 << 30,
            max_active_builds_per_team: 32,
            login_attempts_per_minute: 5,
            session_ttl_secs: 12 * 3600,
            insecure_registries: Vec::new(),
            heartbeat_timeout_secs: 60,
            tls_cert: None,
            tls_key: None,
            trust_policy: None,
            signer_socket: None,
            efi_stub: None,
            bios_loader: None,
        }
    }
}

/// The keys a `KILN_<KEY>` environment variable may set.
const KEYS: &[&str] = &[
    "listen",
    "role",
    "database_url",
    "workers",
    "build_timeout_secs",
    "max_attempts",
    "max_body_bytes",
    "max_spec_bytes",
    "max_output_bytes",
    "max_active_builds_per_team",
    "login_attempts_per_minute",
    "session_ttl_secs",
    "insecure_registries",
    "heartbeat_timeout_secs",
    "tls_cert",
    "tls_key",
    "trust_policy",
    "signer_socket",
    "efi_stub",
    "bios_loader",
];

impl Config {
    /// Loads `file` (if given, else `$KILN_HOME/serve.toml` when it exists),
    /// then applies `env` (`KILN_*` variables; `KILN_HOME` sets `home`).
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, String> {
        let env: BTreeMap<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("KILN_"))
            .collect();
        let mut table = toml::Table::new();
        let default_file = env
            .get("KILN_HOME")
            .map(PathBuf::from)
            .or_else(crate::engine::store::kiln_home)
            .map(|h| h.join("serve.toml"));
        let file = match file {
            Some(f) => Some(f.to_owned()),
            None => default_file.filter(|f| f.is_file()),
        };
        if let Some(file) = &file {
            let text = std::fs::read_to_string(file)
                .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            table = text
                .parse::<toml::Table>()
                .map_err(|e| format!("{}: {e}", file.display()))?;
        }
        if let Some(home) = env.get("KILN_HOME").filter(|h| !h.is_empty()) {
            table
                .entry("home")
                .or_insert_with(|| toml::Value::String(home.clone()));
        }
        for key in KEYS {
            let Some(value) = env.get(&format!("KILN_{}", key.to_uppercase())) else {
                continue;
            };
            table.insert((*key).to_owned(), env_value(key, value));
        }
        Config::deserialize(toml::Value::Table(table)).map_err(|e| format!("configuration: {e}"))
    }

    /// `sqlite://$home/kiln.db` unless set.
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.home.join("kiln.db").display()))
    }
}

/// An environment value as TOML: numbers and booleans as such, a
/// comma-separated list for list keys, anything else as a string.
fn env_value(key: &str, value: &str) -> toml::Value {
    if key == "insecure_registries" {
        return toml::Value::Array(
            value
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_owned()))
                .collect(),
        );
    }
    if let Ok(n) = value.parse::<i64>() {
        return toml::Value::Integer(n);
    }
    match value {
        "true" => toml::Value::Boolean(true),
        "false" => toml::Value::Boolean(false),
        _ => toml::Value::String(value.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_listen_on_loopback_8080() {
        let c = Config::load(None, env(&[("KILN_HOME", "/nonexistent-kiln")])).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.home, PathBuf::from("/nonexistent-kiln"));
        assert_eq!(c.database_url(), "sqlite:///nonexistent-kiln/kiln.db");
    }

    #[test]
    fn env_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("serve.toml");
        std::fs::write(&file, "workers = 7\nlisten = \"127.0.0.1:9000\"\n").unwrap();
        let c = Config::load(
            Some(&file),
            env(&[
                ("KILN_WORKERS", "3"),
                ("KILN_INSECURE_REGISTRIES", "a:5000, b"),
                ("KILN_BIN", "ignored"),
            ]),
        )
        .unwrap();
        assert_eq!(c.workers, 3);
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.insecure_registries, ["a:5000", "b"]);
        assert_eq!(c.efi_stub, None);
    }

    #[test]
    fn boot_loader_images_come_from_the_file_or_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("serve.toml");
        std::fs::write(
            &file,
            "efi_stub = \"reg:5000/boot/stub:1\"\nbios_loader = \"reg:5000/boot/syslinux:6\"\n",
        )
        .unwrap();
        let c = Config::load(Some(&file), env(&[])).unwrap();
        assert_eq!(c.efi_stub.as_deref(), Some("reg:5000/boot/stub:1"));
        assert_eq!(c.bios_loader.as_deref(), Some("reg:5000/boot/syslinux:6"));
        let c = Config::load(Some(&file), env(&[("KILN_EFI_STUB", "other/stub:2")])).unwrap();
        assert_eq!(c.efi_stub.as_deref(), Some("other/stub:2"));
        assert_eq!(c.bios_loader.as_deref(), Some("reg:5000/boot/syslinux:6"));
    }

    #[test]
    fn unknown_keys_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("serve.toml");
        std::fs::write(&file, "wrokers = 7\n").unwrap();
        let e = Config::load(Some(&file), env(&[])).unwrap_err();
        assert!(e.contains("wrokers"), "{e}");
    }
}
