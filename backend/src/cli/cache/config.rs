//! Registry settings for `kiln cache pull`: kiln's config file, Docker's
//! credentials, the environment and the command line, merged into one
//! [`RegistryConfig`].
//!
//! `$KILN_HOME/config.toml` (all keys optional):
//!
//! ```toml
//! [registries."registry.lan:5000"]
//! insecure = true                       # plain HTTP allowed
//! username = "ci"                       # with password: Basic, or a bearer token
//! password = "secret"
//! mirror = "http://mirror.lan:5001"     # as `--mirror registry.lan:5000=URL`
//!
//! [build]
//! efi_stub = "registry.lan:5000/boot/systemd-stub:252"   # default --efi-stub
//! bios_loader = "registry.lan:5000/boot/syslinux:6.04"   # default --bios-loader
//! ```
//!
//! Precedence: credentials from kiln's file win over `~/.docker/config.json`
//! (`$DOCKER_CONFIG/config.json`); mirrors from `--mirror` win over
//! `KILN_MIRROR` (space- or comma-separated), which wins over the file;
//! insecure registries are the union of the file and `--insecure-registry`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use kiln_backend::engine::registry::{
    docker_config_path, Credential, Credentials, Mirrors, RegistryConfig,
};

/// The environment variable with extra mirrors, like `LINUXKIT_MIRROR`.
pub const MIRROR_ENV: &str = "KILN_MIRROR";

/// `<kiln home>/config.toml`.
pub fn default_path(kiln_home: &Path) -> PathBuf {
    kiln_home.join("config.toml")
}

/// The parsed config file.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Settings by registry host (`host` or `host:port`).
    #[serde(default)]
    pub registries: BTreeMap<String, RegistrySettings>,
    /// Defaults of `kiln build`.
    #[serde(default)]
    pub build: BuildSettings,
}

/// `[build]`: the boot loader images the bootable formats use when the
/// command line names none.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BuildSettings {
    /// An image holding the systemd EFI stub (`linuxx64.efi.stub`).
    pub efi_stub: Option<String>,
    /// An image holding ISOLINUX (`isolinux.bin`, `ldlinux.c32`, `isohdpfx.bin`).
    pub bios_loader: Option<String>,
}

/// `[registries."host"]`.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RegistrySettings {
    /// Allow plain HTTP (and so no TLS) for this registry.
    #[serde(default)]
    pub insecure: bool,
    /// User name; needs `password`.
    pub username: Option<String>,
    /// Password or access token; needs `username`.
    pub password: Option<String>,
    /// Mirror URL for this registry (`http://` or `https://`).
    pub mirror: Option<String>,
}

impl FileConfig {
    /// Reads `path`; a missing file is an empty config.
    pub fn load(path: &Path) -> Result<Self, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    /// Parses and checks the file's text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let config: FileConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        for (host, r) in &config.registries {
            match (&r.username, &r.password) {
                (Some(_), None) => {
                    return Err(format!("registries.\"{host}\": username without password"))
                }
                (None, Some(_)) => {
                    return Err(format!("registries.\"{host}\": password without username"))
                }
                _ => {}
            }
        }
        Ok(config)
    }
}

/// Command-line registry options.
#[derive(Debug, Default)]
pub struct Flags {
    /// `--mirror` values.
    pub mirrors: Vec<String>,
    /// `--insecure-registry` values.
    pub insecure_registries: Vec<String>,
    /// `--jobs`.
    pub jobs: Option<usize>,
}

/// Builds the registry settings from the config file (if any), Docker's
/// config, `KILN_MIRROR` and the flags. Errors name the file or flag.
pub fn registry_config(
    config_file: Option<&Path>,
    flags: &Flags,
) -> Result<RegistryConfig, String> {
    let file = match config_file {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from);
    let docker = match docker_config_path(std::env::var_os("DOCKER_CONFIG"), home.as_deref()) {
        Some(path) => Credentials::load_docker_config(&path).map_err(|e| e.to_string())?,
        None => Credentials::new(),
    };
    let env_mirrors = std::env::var(MIRROR_ENV).unwrap_or_default();
    merge(file, docker, &env_mirrors, flags)
}

/// [`registry_config`] with every input passed in.
pub fn merge(
    file: FileConfig,
    docker: Credentials,
    env_mirrors: &str,
    flags: &Flags,
) -> Result<RegistryConfig, String> {
    let mut config = RegistryConfig::default();
    let mut credentials = docker;
    let mut kiln = Credentials::new();
    let mut mirror_specs = Vec::new();
    for (host, r) in file.registries {
        if r.insecure {
            config.insecure_registries.push(host.clone());
        }
        if let (Some(username), Some(password)) = (r.username, r.password) {
            kiln.insert(&host, Credential::Basic { username, password });
        }
        if let Some(mirror) = r.mirror {
            mirror_specs.push(format!("{host}={mirror}"));
        }
    }
    credentials.merge(kiln);
    config.credentials = credentials;
    mirror_specs.extend(Mirrors::split_list(env_mirrors));
    mirror_specs.extend(flags.mirrors.iter().cloned());
    config.mirrors = Mirrors::parse(&mirror_specs).map_err(|e| e.to_string())?;
    config
        .insecure_registries
        .extend(flags.insecure_registries.iter().cloned());
    if let Some(jobs) = flags.jobs {
        if jobs == 0 {
            return Err("--jobs must be at least 1".to_owned());
        }
        config.max_concurrent_downloads = jobs;
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_keys() {
        let c = FileConfig::parse(
            r#"
            [registries."registry.lan:5000"]
            insecure = true
            username = "ci"
            password = "secret"
            mirror = "http://mirror.lan:5001"

            [registries."ghcr.io"]
            "#,
        )
        .unwrap();
        let lan = &c.registries["registry.lan:5000"];
        assert!(lan.insecure);
        assert_eq!(lan.username.as_deref(), Some("ci"));
        assert_eq!(c.registries["ghcr.io"], RegistrySettings::default());
        assert_eq!(FileConfig::parse("").unwrap(), FileConfig::default());
    }

    #[test]
    fn rejects_unknown_keys_and_half_credentials() {
        let err = FileConfig::parse("[registries.\"a\"]\ninsecur = true\n").unwrap_err();
        assert!(err.contains("insecur"), "{err}");
        let err = FileConfig::parse("[registries.\"a\"]\nusername = \"u\"\n").unwrap_err();
        assert!(err.contains("without password"), "{err}");
        assert!(FileConfig::parse("registries = 3").is_err());
    }

    #[test]
    fn missing_file_is_empty() {
        assert_eq!(
            FileConfig::load(Path::new("/nonexistent/kiln/config.toml")).unwrap(),
            FileConfig::default()
        );
    }

    #[test]
    fn merges_file_environment_and_flags() {
        let file = FileConfig::parse(
            r#"
            [registries."reg.lan"]
            insecure = true
            username = "kiln"
            password = "pw"
            mirror = "http://file-mirror"
            "#,
        )
        .unwrap();
        let mut docker = Credentials::new();
        docker.insert("reg.lan", Credential::RegistryToken("docker".into()));
        docker.insert("ghcr.io", Credential::RegistryToken("gh".into()));
        let flags = Flags {
            mirrors: vec!["reg.lan=https://flag-mirror".into()],
            insecure_registries: vec!["other.lan".into()],
            jobs: Some(8),
        };
        let c = merge(file, docker, "https://env-all", &flags).unwrap();
        assert_eq!(
            c.credentials.get("reg.lan"),
            Some(Credential::Basic {
                username: "kiln".into(),
                password: "pw".into()
            })
        );
        assert_eq!(
            c.credentials.get("ghcr.io"),
            Some(Credential::RegistryToken("gh".into()))
        );
        assert!(c.allows_plain_http("reg.lan"));
        assert!(c.allows_plain_http("other.lan:5000"));
        assert!(!c.allows_plain_http("ghcr.io"));
        assert_eq!(
            c.mirrors.for_registry("reg.lan").unwrap().host,
            "flag-mirror"
        );
        assert_eq!(c.mirrors.for_registry("quay.io").unwrap().host, "env-all");
        assert_eq!(c.max_concurrent_downloads, 8);

        let bad = Flags {
            mirrors: vec!["ftp://x".into()],
            ..Flags::default()
        };
        let err = merge(FileConfig::default(), Credentials::new(), "", &bad).unwrap_err();
        assert!(err.contains("ftp://x"), "{err}");
    }
}
