//! Pulling images from OCI registries into the [store](crate::engine::store).
//!
//! [`pull`] resolves each reference (tag → digest, index → platform
//! manifests), then downloads the missing blobs of all images together with
//! bounded concurrency, streaming each into a verified temp file, and finally
//! records the manifests and names. Registries are reached with oci-client
//! (authentication, blob streams) and reqwest (size-limited manifest reads);
//! plain HTTP is used only for loopback hosts, configured insecure
//! registries and `http://` mirrors.

mod auth;
mod config;
mod credentials;
mod error;
mod mirror;
mod oci_auth;
mod plan;
mod pull;
mod remote;
mod select;
mod session;

pub use config::{is_loopback, RegistryConfig};
pub use credentials::{docker_config_path, Credential, Credentials, CredentialsError};
pub use error::PullError;
pub use mirror::{Mirror, MirrorError, Mirrors};
pub use oci_auth::{oci_auth, Access};
pub use pull::{pull, pull_missing, PulledImage};
pub use remote::{resolve_remote, RemoteImage};
pub use select::PlatformSelection;
