//! A connection to one repository of one registry (or its mirror): the
//! endpoint, authentication, size-limited manifest fetches and streamed,
//! verified blob downloads into the store.

use std::error::Error as StdError;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use oci_client::client::ClientConfig;

use super::config::USER_AGENT;
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::RegistryOperation;
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use reqwest::StatusCode;
use tokio::sync::mpsc;

use super::auth::{exchange_identity_token, Challenge};
use super::credentials::{run_helper, Credential};
use super::{PullError, RegistryConfig};
use crate::engine::reference::Reference;
use crate::engine::store::{
    BlobWriter, Descriptor, Digest, Expected, Lease, ManifestDoc, StoreError, MANIFEST_MEDIA_TYPES,
};

/// How much of an error body is quoted in messages.
const ERROR_BODY_QUOTE: usize = 300;

/// The HTTP client for registry pings, token exchanges and manifests; one
/// per pull, shared by all sessions (oci-client keeps its own per session).
pub(crate) fn http_client(config: &RegistryConfig) -> Result<reqwest::Client, String> {
    let mut certs = Vec::new();
    for pem in &config.extra_root_certificates {
        certs.extend(
            reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| format!("bad extra CA certificate: {}", chain(&e)))?,
        );
    }
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .connect_timeout(config.connect_timeout)
        .read_timeout(config.read_timeout)
        .tls_certs_merge(certs)
        .build()
        .map_err(|e| format!("building HTTP client: {}", chain(&e)))
}

/// A manifest as fetched: exact bytes, their digest and media type.
#[derive(Clone, Debug)]
pub(crate) struct Fetched {
    pub bytes: Bytes,
    pub digest: Digest,
    pub media_type: String,
}

/// One repository on one registry, authenticated.
pub(crate) struct Session {
    /// The host contacted (the mirror's, if mirrored), for messages.
    pub registry: String,
    scheme: &'static str,
    host: String,
    repository: String,
    oci: oci_client::Client,
    oref: oci_client::Reference,
    http: reqwest::Client,
    authorization: Option<HeaderValue>,
    max_manifest_bytes: u64,
}

impl Session {
    /// Resolves the endpoint (mirror, scheme) for `reference`'s repository,
    /// checks the registry answers, and authenticates.
    pub async fn connect(
        reference: &Reference,
        config: &RegistryConfig,
        http: reqwest::Client,
    ) -> Result<Arc<Self>, PullError> {
        let image = reference.to_string();
        let (registry, repository, plain_http) =
            match config.mirrors.for_registry(reference.registry()) {
                Some(m) => (
                    m.host.clone(),
                    m.repository(reference.repository()),
                    m.plain_http,
                ),
                None => (
                    reference.registry().to_owned(),
                    reference.repository().to_owned(),
                    config.allows_plain_http(reference.registry()),
                ),
            };
        let oref = oci_client::Reference::with_tag(
            registry.clone(),
            repository.clone(),
            "latest".to_owned(),
        );
        let host = oref.resolve_registry().to_owned();
        let scheme = if plain_http { "http" } else { "https" };
        let unreachable = |message: String| PullError::Unreachable {
            reference: image.clone(),
            registry: registry.clone(),
            message,
        };

        let oci = oci_client::Client::try_from(ClientConfig {
            platform_resolver: None,
            ..config.client_config(plain_http)
        })
        .map_err(|e| unreachable(format!("building registry client: {}", chain(&e))))?;

        let ping = http
            .get(format!("{scheme}://{host}/v2/"))
            .send()
            .await
            .map_err(|e| unreachable(chain(&e)))?;
        let challenge = ping
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|h| h.to_str().ok())
            .and_then(Challenge::parse);
        if ping.status().is_server_error() {
            return Err(PullError::Http {
                reference: image,
                what: "registry",
                target: "/v2/".to_owned(),
                registry,
                status: ping.status().as_u16(),
                message: String::new(),
            });
        }

        let credential = match config.credentials.get(&registry) {
            Some(Credential::Helper { program }) => {
                let host_for_helper = registry.clone();
                tokio::task::spawn_blocking(move || run_helper(&program, &host_for_helper))
                    .await
                    .map_err(|e| PullError::Internal {
                        reference: image.clone(),
                        message: e.to_string(),
                    })?
                    .map_err(|message| PullError::Auth {
                        reference: image.clone(),
                        registry: registry.clone(),
                        message,
                    })?
            }
            other => other,
        };
        let auth_failed = |message: String| PullError::Auth {
            reference: image.clone(),
            registry: registry.clone(),
            message,
        };
        let (auth, authorization) = match (&challenge, credential) {
            (None, _) => (RegistryAuth::Anonymous, None),
            (Some(c), Some(Credential::IdentityToken(refresh))) if c.scheme == "bearer" => {
                let token = exchange_identity_token(&http, c, &repository, "pull", &refresh)
                    .await
                    .map_err(auth_failed)?;
                (RegistryAuth::Bearer(token.clone()), bearer(&token))
            }
            (Some(c), Some(Credential::RegistryToken(token))) if c.scheme == "bearer" => {
                (RegistryAuth::Bearer(token.clone()), bearer(&token))
            }
            (Some(c), Some(Credential::Basic { username, password })) if c.scheme == "basic" => {
                let header = basic(&username, &password);
                (RegistryAuth::Basic(username, password), header)
            }
            (Some(c), Some(Credential::Basic { username, password })) if c.scheme == "bearer" => {
                (RegistryAuth::Basic(username, password), None)
            }
            (Some(c), _) if c.scheme == "bearer" => (RegistryAuth::Anonymous, None),
            (Some(c), _) => {
                return Err(auth_failed(format!(
                    "registry asks for {} authentication and no usable credential is configured",
                    c.scheme
                )))
            }
        };
        let authorization = match (&challenge, authorization) {
            (Some(c), None) if c.scheme == "bearer" => {
                let token = oci
                    .auth(&oref, &auth, RegistryOperation::Pull)
                    .await
                    .map_err(|e| match e {
                        OciDistributionError::RequestError(e) => unreachable(chain(&e)),
                        other => auth_failed(chain(&other)),
                    })?;
                token.as_deref().and_then(bearer)
            }
            (_, header) => {
                // Storing Anonymous would make oci-client re-probe /v2/
                // before every blob.
                if !matches!(auth, RegistryAuth::Anonymous) {
                    oci.store_auth_if_needed(oref.resolve_registry(), &auth)
                        .await;
                }
                header
            }
        };
        Ok(Arc::new(Self {
            registry,
            scheme,
            host,
            repository,
            oci,
            oref,
            http,
            authorization,
            max_manifest_bytes: config.max_manifest_bytes,
        }))
    }

    /// Fetches the manifest `target` (tag or digest), refusing more than the
    /// size limit, and checks its digest against `expected` (a descriptor),
    /// a digest `target`, and the registry's `Docker-Content-Digest`.
    pub async fn fetch_manifest(
        &self,
        image: &str,
        target: &str,
        expected: Option<&Descriptor>,
    ) -> Result<Fetched, PullError> {
        let limit = self.max_manifest_bytes;
        let too_large = |size: Option<u64>| PullError::ManifestTooLarge {
            reference: image.to_owned(),
            target: target.to_owned(),
            limit,
            size,
        };
        if let Some(d) = expected {
            if d.size > limit {
                return Err(too_large(Some(d.size)));
            }
        }
        let url = format!(
            "{}://{}/v2/{}/manifests/{target}",
            self.scheme, self.host, self.repository
        );
        let mut request = self
            .http
            .get(&url)
            .header(ACCEPT, MANIFEST_MEDIA_TYPES.join(", "));
        if let Some(a) = &self.authorization {
            request = request.header(AUTHORIZATION, a.clone());
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| self.request_error(image, target, &e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(self.status_error(image, "manifest", target, response).await);
        }
        if let Some(len) = response.content_length() {
            if len > limit {
                return Err(too_large(Some(len)));
            }
        }
        let header_digest = response
            .headers()
            .get("docker-content-digest")
            .and_then(|h| h.to_str().ok())
            .and_then(|h| Digest::parse(h.trim()).ok());
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|h| h.to_str().ok())
            .map(|h| h.split(';').next().unwrap_or(h).trim().to_owned())
            .unwrap_or_default();
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.request_error(image, target, &e))?
        {
            if (body.len() + chunk.len()) as u64 > limit {
                return Err(too_large(None));
            }
            body.extend_from_slice(&chunk);
        }
        let digest = Digest::of(&body);
        let wanted = expected
            .map(|d| d.digest.clone())
            .or_else(|| Digest::parse(target).ok())
            .or(header_digest);
        if let Some(wanted) = wanted {
            if wanted != digest {
                return Err(PullError::DigestMismatch {
                    reference: image.to_owned(),
                    what: "manifest",
                    expected: wanted,
                    actual: digest,
                });
            }
        }
        if let Some(d) = expected {
            if d.size != body.len() as u64 {
                return Err(PullError::InvalidManifest {
                    reference: image.to_owned(),
                    target: target.to_owned(),
                    message: format!(
                        "descriptor says {} bytes, manifest has {}",
                        d.size,
                        body.len()
                    ),
                });
            }
        }
        let stated = ManifestDoc::parse(&body)
            .ok()
            .and_then(|doc| doc.media_type)
            .filter(|m| !m.is_empty());
        let media_type = stated
            .or_else(|| {
                expected
                    .map(|d| d.media_type.clone())
                    .filter(|m| !m.is_empty())
            })
            .unwrap_or(content_type);
        Ok(Fetched {
            bytes: Bytes::from(body),
            digest,
            media_type,
        })
    }

    /// Streams the blob `descriptor` into the store. The data goes to a temp
    /// file as it arrives, is checked against the descriptor's size on the
    /// way and its digest at the end, and becomes visible only then.
    /// Returns the bytes downloaded.
    pub async fn fetch_blob(
        &self,
        image: &str,
        descriptor: &Descriptor,
        lease: &Lease,
    ) -> Result<u64, PullError> {
        let digest = descriptor.digest.clone();
        let expected = descriptor.size;
        let target = digest.to_string();
        let layer = OciDescriptor {
            media_type: descriptor.media_type.clone(),
            digest: target.clone(),
            size: i64::try_from(expected).unwrap_or(i64::MAX),
            ..OciDescriptor::default()
        };
        let mut stream = self
            .oci
            .pull_blob_stream(&self.oref, &layer)
            .await
            .map_err(|e| self.oci_error(image, &digest, e))?;
        if let Some(announced) = stream.content_length {
            if announced > expected {
                return Err(PullError::TooLong {
                    reference: image.to_owned(),
                    digest,
                    expected,
                    announced: Some(announced),
                });
            }
        }

        let (tx, mut rx) = mpsc::channel::<Bytes>(8);
        let writer_lease = lease.clone();
        let writer_expected = Expected::exactly(digest.clone(), expected);
        let writer = tokio::task::spawn_blocking(move || -> Result<BlobWriter, StoreError> {
            let mut w = writer_lease.blob_writer(writer_expected)?;
            while let Some(chunk) = rx.blocking_recv() {
                w.write_chunk(&chunk)?;
            }
            Ok(w)
        });

        let mut received: u64 = 0;
        let mut transfer_error = None;
        while let Some(item) = stream.next().await {
            match item {
                Ok(chunk) => {
                    received += chunk.len() as u64;
                    if received > expected {
                        break;
                    }
                    if tx.send(chunk).await.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    transfer_error = Some(e);
                    break;
                }
            }
        }
        drop(tx);
        let joined = writer.await.map_err(|e| PullError::Internal {
            reference: image.to_owned(),
            message: format!("blob writer for {digest}: {e}"),
        })?;
        let written = match joined {
            Ok(w) => w,
            Err(e) => return Err(self.store_error(image, &digest, e)),
        };
        if received > expected {
            return Err(PullError::TooLong {
                reference: image.to_owned(),
                digest,
                expected,
                announced: None,
            });
        }
        if let Some(e) = transfer_error {
            // oci-client reports a digest mismatch as a stream error at the
            // end; name it precisely when all bytes arrived.
            return Err(if received == expected {
                let actual = written.digest_so_far();
                if actual != digest {
                    PullError::DigestMismatch {
                        reference: image.to_owned(),
                        what: "blob",
                        expected: digest,
                        actual,
                    }
                } else {
                    self.transfer_error(image, &target, &e)
                }
            } else if received < expected {
                PullError::Truncated {
                    reference: image.to_owned(),
                    digest,
                    received,
                    expected,
                }
            } else {
                self.transfer_error(image, &target, &e)
            });
        }
        tokio::task::spawn_blocking(move || written.commit())
            .await
            .map_err(|e| PullError::Internal {
                reference: image.to_owned(),
                message: format!("committing {}: {e}", descriptor.digest),
            })?
            .map_err(|e| self.store_error(image, &descriptor.digest, e))?;
        Ok(received)
    }

    fn store_error(&self, image: &str, digest: &Digest, e: StoreError) -> PullError {
        match e {
            StoreError::DigestMismatch { expected, actual } => PullError::DigestMismatch {
                reference: image.to_owned(),
                what: "blob",
                expected,
                actual,
            },
            StoreError::SizeMismatch {
                expected, actual, ..
            } if actual < expected => PullError::Truncated {
                reference: image.to_owned(),
                digest: digest.clone(),
                received: actual,
                expected,
            },
            StoreError::SizeMismatch { expected, .. } => PullError::TooLong {
                reference: image.to_owned(),
                digest: digest.clone(),
                expected,
                announced: None,
            },
            other => PullError::Store {
                reference: image.to_owned(),
                source: Arc::new(other),
            },
        }
    }

    fn request_error(&self, image: &str, target: &str, e: &reqwest::Error) -> PullError {
        if e.is_connect() || (e.is_timeout() && !e.is_body()) {
            PullError::Unreachable {
                reference: image.to_owned(),
                registry: self.registry.clone(),
                message: chain(e),
            }
        } else {
            self.transfer_error(image, target, e)
        }
    }

    fn transfer_error(&self, image: &str, target: &str, e: &dyn StdError) -> PullError {
        PullError::Transport {
            reference: image.to_owned(),
            target: target.to_owned(),
            message: chain(e),
        }
    }

    async fn status_error(
        &self,
        image: &str,
        what: &'static str,
        target: &str,
        mut response: reqwest::Response,
    ) -> PullError {
        let status = response.status();
        let mut body = Vec::new();
        while let Ok(Some(chunk)) = response.chunk().await {
            body.extend_from_slice(&chunk);
            if body.len() >= ERROR_BODY_QUOTE {
                break;
            }
        }
        match status {
            StatusCode::NOT_FOUND if what == "manifest" => PullError::ManifestNotFound {
                reference: image.to_owned(),
                target: target.to_owned(),
                registry: self.registry.clone(),
            },
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => PullError::Auth {
                reference: image.to_owned(),
                registry: self.registry.clone(),
                message: format!(
                    "access to {what} {target} refused (HTTP {})",
                    status.as_u16()
                ),
            },
            _ => PullError::Http {
                reference: image.to_owned(),
                what,
                target: target.to_owned(),
                registry: self.registry.clone(),
                status: status.as_u16(),
                message: quote(&body),
            },
        }
    }

    fn oci_error(&self, image: &str, digest: &Digest, e: OciDistributionError) -> PullError {
        match e {
            OciDistributionError::ServerError { code: 404, .. } => PullError::BlobNotFound {
                reference: image.to_owned(),
                digest: digest.clone(),
                registry: self.registry.clone(),
            },
            OciDistributionError::RegistryError { ref envelope, .. }
                if envelope
                    .errors
                    .iter()
                    .any(|err| matches!(err.code, OciErrorCode::BlobUnknown)) =>
            {
                PullError::BlobNotFound {
                    reference: image.to_owned(),
                    digest: digest.clone(),
                    registry: self.registry.clone(),
                }
            }
            OciDistributionError::ServerError { code, message, .. } => PullError::Http {
                reference: image.to_owned(),
                what: "blob",
                target: digest.to_string(),
                registry: self.registry.clone(),
                status: code,
                message: quote(message.as_bytes()),
            },
            OciDistributionError::UnauthorizedError { .. }
            | OciDistributionError::AuthenticationFailure(_) => PullError::Auth {
                reference: image.to_owned(),
                registry: self.registry.clone(),
                message: format!("refused blob {digest}: {e}"),
            },
            OciDistributionError::RequestError(ref inner) => {
                self.request_error(image, &digest.to_string(), inner)
            }
            other => self.transfer_error(image, &digest.to_string(), &other),
        }
    }
}

fn bearer(token: &str) -> Option<HeaderValue> {
    let mut v = HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
    v.set_sensitive(true);
    Some(v)
}

fn basic(username: &str, password: &str) -> Option<HeaderValue> {
    use base64::Engine as _;
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    let mut v = HeaderValue::from_str(&format!("Basic {encoded}")).ok()?;
    v.set_sensitive(true);
    Some(v)
}

fn quote(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(ERROR_BODY_QUOTE)]);
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// An error and its sources, joined with `: `.
pub(crate) fn chain(e: &dyn StdError) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
