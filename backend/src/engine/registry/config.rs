//! Registry client settings, passed in by the caller (kiln's config and
//! command-line flags); nothing here reads the environment.

use std::net::IpAddr;
use std::time::Duration;

use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};

use super::credentials::Credentials;
use super::mirror::Mirrors;
use crate::engine::store::MAX_MANIFEST_BYTES;

/// How to reach registries.
#[derive(Clone, Debug)]
pub struct RegistryConfig {
    /// Credentials by registry host (kiln's merged over Docker's).
    pub credentials: Credentials,
    /// Hosts (`host` or `host:port`) that may be used over plain HTTP besides
    /// loopback ones.
    pub insecure_registries: Vec<String>,
    /// Mirrors, as `linuxkit --mirror`.
    pub mirrors: Mirrors,
    /// Extra CA certificates (PEM) trusted for registries (`--cert-file`).
    pub extra_root_certificates: Vec<Vec<u8>>,
    /// Blobs and manifests transferred at once.
    pub max_concurrent_downloads: usize,
    /// Largest manifest or index accepted.
    pub max_manifest_bytes: u64,
    /// Timeout for establishing a connection.
    pub connect_timeout: Duration,
    /// Longest pause between reads before a transfer is abandoned.
    pub read_timeout: Duration,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            credentials: Credentials::default(),
            insecure_registries: Vec::new(),
            mirrors: Mirrors::default(),
            extra_root_certificates: Vec::new(),
            max_concurrent_downloads: 4,
            max_manifest_bytes: MAX_MANIFEST_BYTES,
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(120),
        }
    }
}

/// What kiln tells registries it is.
pub const USER_AGENT: &str = concat!("kiln/", env!("CARGO_PKG_VERSION"));

impl RegistryConfig {
    /// The oci-client settings every kiln registry session shares:
    /// protocol, extra root certificates, timeouts and user agent.
    pub fn client_config(&self, plain_http: bool) -> ClientConfig {
        ClientConfig {
            protocol: if plain_http {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            extra_root_certificates: self
                .extra_root_certificates
                .iter()
                .map(|pem| Certificate {
                    encoding: CertificateEncoding::Pem,
                    data: pem.clone(),
                })
                .collect(),
            connect_timeout: Some(self.connect_timeout),
            read_timeout: Some(self.read_timeout),
            user_agent: USER_AGENT,
            ..ClientConfig::default()
        }
    }

    /// Whether `host` (`host[:port]`) may be spoken to over plain HTTP: only
    /// loopback hosts and those listed in `insecure_registries`.
    pub fn allows_plain_http(&self, host: &str) -> bool {
        if is_loopback(host) {
            return true;
        }
        let bare = strip_port(host);
        self.insecure_registries
            .iter()
            .any(|h| h.eq_ignore_ascii_case(host) || h.eq_ignore_ascii_case(bare))
    }
}

/// `localhost`, `127.0.0.0/8` and `::1`, with or without a port.
pub fn is_loopback(host: &str) -> bool {
    let bare = strip_port(host);
    if bare.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let bare = bare.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((v6, _)) => v6,
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((h, port)) if !h.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_for_loopback_and_listed() {
        let mut c = RegistryConfig::default();
        for h in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:5000",
            "::1",
        ] {
            assert!(c.allows_plain_http(h), "{h}");
        }
        for h in [
            "docker.io",
            "10.0.0.1:5000",
            "localhost.evil.com",
            "127.0.0.1.nip.io",
        ] {
            assert!(!c.allows_plain_http(h), "{h}");
        }
        c.insecure_registries.push("registry.lan".into());
        c.insecure_registries.push("10.0.0.1:5000".into());
        assert!(c.allows_plain_http("registry.lan:5000"));
        assert!(c.allows_plain_http("10.0.0.1:5000"));
        assert!(!c.allows_plain_http("10.0.0.1:6000"));
    }
}
