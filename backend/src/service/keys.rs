//! Each team's release signing key: ECDSA P-256, made on first need and
//! kept as PKCS#8 PEM in `home/keys/TEAM.key` (mode 0600), never handed
//! out. With `signer_socket` configured, the signer daemon signs instead
//! and the service never sees a private key.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kiln_signer::daemon::SocketSigner;
use kiln_signer::keys::{check_private_file_mode, write_private_file};
use kiln_signer::{InProcessSigner, PrivateKey, Signer};

use super::config::Config;

/// Where a team's key comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    /// A key the service generated for the team.
    Team,
    /// The configured signer daemon.
    Daemon,
}

impl KeySource {
    pub fn as_str(self) -> &'static str {
        match self {
            KeySource::Team => "team",
            KeySource::Daemon => "signer-daemon",
        }
    }
}

/// A team's signer, and whether it was just created.
pub struct TeamSigner {
    pub signer: Arc<dyn Signer>,
    pub source: KeySource,
    pub created: bool,
}

fn key_path(home: &Path, team: &str) -> Result<PathBuf, String> {
    let safe = !team.is_empty()
        && team
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !safe {
        return Err(format!("team name `{team}` cannot name a key file"));
    }
    Ok(home.join("keys").join(format!("{team}.key")))
}

/// The signer of `team`'s releases, generating its key when it has none.
/// Blocking (file and socket I/O): call from a blocking thread.
pub fn team_signer(cfg: &Config, team: &str) -> Result<TeamSigner, String> {
    if let Some(socket) = &cfg.signer_socket {
        let signer = SocketSigner::connect(socket)
            .map_err(|e| format!("signer daemon {}: {e}", socket.display()))?;
        return Ok(TeamSigner {
            signer: Arc::new(signer),
            source: KeySource::Daemon,
            created: false,
        });
    }
    let path = key_path(&cfg.home, team)?;
    let mut created = false;
    if !path.exists() {
        created = generate(&path)?;
    }
    check_private_file_mode(&path).map_err(|e| e.to_string())?;
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let key = PrivateKey::from_pem(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(TeamSigner {
        signer: Arc::new(InProcessSigner::new(key)),
        source: KeySource::Team,
        created,
    })
}

/// Writes a new key to `path` unless another request got there first:
/// the key is written under a private name and hard-linked into place,
/// which fails rather than replaces. True when this call made it.
fn generate(path: &Path) -> Result<bool, String> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let key = PrivateKey::generate().map_err(|e| e.to_string())?;
    let pem = key.to_pkcs8_pem().map_err(|e| e.to_string())?;
    let tmp = dir.join(format!(
        ".new-{}-{}",
        std::process::id(),
        super::db::random_hex(6)
    ));
    write_private_file(&tmp, pem.as_bytes(), false).map_err(|e| e.to_string())?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_team_key_is_made_once_private_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config {
            home: dir.path().to_owned(),
            ..Config::default()
        };
        let first = team_signer(&cfg, "alpha").unwrap();
        assert!(first.created);
        assert_eq!(first.source, KeySource::Team);
        let path = dir.path().join("keys/alpha.key");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = team_signer(&cfg, "alpha").unwrap();
        assert!(!again.created);
        assert_eq!(
            first.signer.public_key().fingerprint(),
            again.signer.public_key().fingerprint()
        );
        let other = team_signer(&cfg, "beta").unwrap();
        assert_ne!(
            first.signer.public_key().fingerprint(),
            other.signer.public_key().fingerprint()
        );
        assert!(team_signer(&cfg, "../x").is_err());
        assert!(team_signer(&cfg, "..").unwrap().created);
        let signature = first.signer.sign(b"payload").unwrap();
        again
            .signer
            .public_key()
            .verify(b"payload", &signature)
            .unwrap();
    }

    #[test]
    fn a_readable_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config {
            home: dir.path().to_owned(),
            ..Config::default()
        };
        team_signer(&cfg, "alpha").unwrap();
        let path = dir.path().join("keys/alpha.key");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = team_signer(&cfg, "alpha").err().unwrap();
        assert!(e.contains("chmod 600"), "{e}");
    }
}
