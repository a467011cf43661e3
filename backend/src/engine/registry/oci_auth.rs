//! The credential for one registry in the form oci-client takes, for the
//! code that talks to registries through oci-client alone: signature
//! fetches, `kiln sign` and publishing.

use oci_client::secrets::RegistryAuth;
use reqwest::header::WWW_AUTHENTICATE;

use super::auth::{exchange_identity_token, Challenge};
use super::credentials::run_helper;
use super::session::{chain, http_client};
use super::{Credential, RegistryConfig};

/// What the credential is for, which scopes an exchanged token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Pull,
    Push,
}

impl Access {
    fn actions(self) -> &'static str {
        match self {
            Access::Pull => "pull",
            Access::Push => "pull,push",
        }
    }
}

/// The configured credential for `registry`: a credential helper is run,
/// and an identity token is traded for an access token to `repository`.
/// No credential means anonymous access.
pub async fn oci_auth(
    config: &RegistryConfig,
    registry: &str,
    repository: &str,
    plain_http: bool,
    access: Access,
) -> Result<RegistryAuth, String> {
    let credential = match config.credentials.get(registry) {
        Some(Credential::Helper { program }) => {
            let host = registry.to_owned();
            tokio::task::spawn_blocking(move || run_helper(&program, &host))
                .await
                .map_err(|e| format!("credential helper task: {e}"))??
        }
        other => other,
    };
    match credential {
        None => Ok(RegistryAuth::Anonymous),
        Some(Credential::Basic { username, password }) => {
            Ok(RegistryAuth::Basic(username, password))
        }
        Some(Credential::RegistryToken(token)) => Ok(RegistryAuth::Bearer(token)),
        Some(Credential::IdentityToken(refresh)) => {
            exchanged(config, registry, repository, plain_http, access, &refresh).await
        }
        Some(Credential::Helper { program }) => Err(format!(
            "credential helper {} named another helper",
            program.display()
        )),
    }
}

async fn exchanged(
    config: &RegistryConfig,
    registry: &str,
    repository: &str,
    plain_http: bool,
    access: Access,
    refresh: &str,
) -> Result<RegistryAuth, String> {
    let http = http_client(config)?;
    let host = oci_client::Reference::with_tag(
        registry.to_owned(),
        repository.to_owned(),
        "latest".to_owned(),
    )
    .resolve_registry()
    .to_owned();
    let scheme = if plain_http { "http" } else { "https" };
    let ping = http
        .get(format!("{scheme}://{host}/v2/"))
        .send()
        .await
        .map_err(|e| format!("reaching {host}: {}", chain(&e)))?;
    let challenge = ping
        .headers()
        .get(WWW_AUTHENTICATE)
        .and_then(|h| h.to_str().ok())
        .and_then(Challenge::parse);
    match challenge {
        Some(c) if c.scheme == "bearer" => {
            let token =
                exchange_identity_token(&http, &c, repository, access.actions(), refresh).await?;
            Ok(RegistryAuth::Bearer(token))
        }
        Some(c) => Err(format!(
            "{host} asks for {} authentication, which an identity token cannot answer",
            c.scheme
        )),
        None => Ok(RegistryAuth::Anonymous),
    }
}
