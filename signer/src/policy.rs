//! The trust policy: which keys (or keyless identities) each org or image
//! prefix is trusted for, and which images must verify whatever the spec
//! says. It comes from server, team or user configuration, never from a
//! spec.
//!
//! ```toml
//! # Orgs or image prefixes whose images must always verify.
//! require = ["linuxkit"]
//! # Whether `--disable-content-trust` may switch verification off.
//! allow_disable_content_trust = false
//!
//! [[org]]
//! name = "linuxkit"                 # an org (`linuxkit`, `library`, `host/ns`)
//! keys = ["keys/linuxkit.pub"]      # PEM files, relative to this file
//!
//! [[org]]
//! name = "ghcr.io/acme/base"        # or an image prefix; the longest match wins
//! public_keys = ["-----BEGIN PUBLIC KEY-----\n…"]
//! trusted_root = "trusted_root.json"
//! identities = [{ issuer = "https://token.actions.githubusercontent.com",
//!                 subject = "^https://github\\.com/acme/.*" }]
//! ```
//!
//! Names are compared after linuxkit's expansion: the org `linuxkit` is the
//! prefix `docker.io/linuxkit`, `nginx` is in `docker.io/library`, and a
//! name with a registry (`127.0.0.1:5000/kiln-test`) is kept as written.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use kiln_shared::model::Trust;
use kiln_shared::reference::{expand, org_of, Reference};
use regex::Regex;
use serde::Deserialize;

use crate::keys::PublicKey;

/// Why a policy cannot be loaded or applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyError {
    /// The file could not be read or parsed.
    File { path: String, message: String },
    /// An entry is invalid (bad key, bad regex, duplicate name…).
    Entry { name: String, message: String },
    /// The spec's `trust.org` names an org no entry configures.
    NoTrustRootForOrg { org: String },
    /// The spec's `trust.image` names an image no entry covers.
    NoTrustRootForImage { image: String },
    /// An image named in the spec is not a valid reference.
    BadReference { image: String, message: String },
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyError::File { path, message } => write!(f, "trust policy {path}: {message}"),
            PolicyError::Entry { name, message } => {
                write!(f, "trust policy entry `{name}`: {message}")
            }
            PolicyError::NoTrustRootForOrg { org } => write!(
                f,
                "the spec's trust.org lists `{org}`, but no trust root (keys or identities) is configured for that org"
            ),
            PolicyError::NoTrustRootForImage { image } => write!(
                f,
                "the spec's trust.image lists `{image}`, but no trust root (keys or identities) is configured for it"
            ),
            PolicyError::BadReference { image, message } => {
                write!(f, "image `{image}`: {message}")
            }
        }
    }
}

impl std::error::Error for PolicyError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    require: Vec<String>,
    #[serde(default)]
    allow_disable_content_trust: bool,
    #[serde(default)]
    org: Vec<EntryFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryFile {
    name: String,
    #[serde(default)]
    keys: Vec<String>,
    #[serde(default)]
    public_keys: Vec<String>,
    #[serde(default)]
    identities: Vec<IdentityFile>,
    trusted_root: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentityFile {
    issuer: String,
    subject: String,
}

/// A keyless identity: certificates from `issuer` whose subject matches.
#[derive(Debug, Clone)]
pub struct KeylessIdentity {
    pub issuer: String,
    pub subject: Regex,
}

/// What one org or image prefix is trusted for.
#[derive(Debug, Clone)]
pub struct TrustRoot {
    /// The name as written in the policy.
    pub name: String,
    /// The expanded prefix images are matched against.
    pub prefix: String,
    pub keys: Vec<PublicKey>,
    pub identities: Vec<KeylessIdentity>,
    /// The sigstore trusted root (Fulcio CAs, Rekor keys) for identities.
    pub trusted_root: Option<PathBuf>,
}

/// The whole policy.
#[derive(Debug, Clone, Default)]
pub struct TrustPolicy {
    /// Expanded prefixes whose images must always verify.
    pub require: Vec<String>,
    /// Whether `--disable-content-trust` is permitted.
    pub allow_disable_content_trust: bool,
    pub roots: Vec<TrustRoot>,
}

/// Why an image must verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    /// Its org is in the spec's `trust.org`.
    SpecOrg(String),
    /// It is in the spec's `trust.image`.
    SpecImage(String),
    /// The policy's `require` covers it.
    Policy(String),
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Why::SpecOrg(o) => write!(f, "its org `{o}` is in the spec's trust.org"),
            Why::SpecImage(i) => write!(f, "the spec's trust.image lists `{i}`"),
            Why::Policy(p) => write!(f, "the trust policy requires `{p}`"),
        }
    }
}

/// One image that must verify, and against what.
#[derive(Debug, Clone)]
pub struct Requirement {
    /// The image as the spec names it.
    pub image: String,
    pub reference: Reference,
    pub why: Vec<Why>,
    /// Index into [`TrustPolicy::roots`].
    pub root: usize,
}

/// The expanded prefix of an org or image name: `linuxkit` →
/// `docker.io/linuxkit`, `linuxkit/init` → `docker.io/linuxkit/init`,
/// `host:5000/ns` → `host:5000/ns`.
pub fn canonical_prefix(name: &str) -> String {
    let name = name.trim().trim_end_matches('/');
    let name = name.split_once('@').map_or(name, |(n, _)| n);
    if name.contains('/') {
        expand(name)
    } else if name.contains(['.', ':']) || name == "localhost" {
        name.to_owned()
    } else {
        format!("docker.io/{name}")
    }
}

/// The expanded repository name of a reference (no tag or digest).
pub fn canonical_name(reference: &Reference) -> String {
    expand(&reference.name())
}

fn covers(prefix: &str, name: &str) -> bool {
    name == prefix
        || (name.len() > prefix.len()
            && name.starts_with(prefix)
            && name.as_bytes()[prefix.len()] == b'/')
}

impl TrustPolicy {
    /// A policy with no roots that requires nothing.
    pub fn empty() -> Self {
        TrustPolicy::default()
    }

    /// Reads a policy file; key and trusted-root paths are relative to it.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let text = fs::read_to_string(path).map_err(|e| PolicyError::File {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_toml(&text, base).map_err(|e| match e {
            PolicyError::File { message, .. } => PolicyError::File {
                path: path.display().to_string(),
                message,
            },
            other => other,
        })
    }

    /// Parses a policy; relative paths are taken from `base`.
    pub fn from_toml(text: &str, base: &Path) -> Result<Self, PolicyError> {
        let file: PolicyFile = toml::from_str(text).map_err(|e| PolicyError::File {
            path: "<policy>".to_owned(),
            message: e.to_string(),
        })?;
        let mut roots: Vec<TrustRoot> = Vec::new();
        for entry in file.org {
            let bad = |message: String| PolicyError::Entry {
                name: entry.name.clone(),
                message,
            };
            if entry.name.trim().is_empty() {
                return Err(bad("empty name".to_owned()));
            }
            let prefix = canonical_prefix(&entry.name);
            if let Some(other) = roots.iter().find(|r| r.prefix == prefix) {
                return Err(bad(format!("the same org or prefix as `{}`", other.name)));
            }
            let mut keys = Vec::new();
            for k in &entry.keys {
                let path = base.join(k);
                keys.push(PublicKey::load(&path).map_err(|e| bad(e.to_string()))?);
            }
            for pem in &entry.public_keys {
                keys.push(PublicKey::from_pem(pem).map_err(|e| bad(e.to_string()))?);
            }
            let mut identities = Vec::new();
            for id in &entry.identities {
                let subject = Regex::new(&id.subject)
                    .map_err(|e| bad(format!("subject regex `{}`: {e}", id.subject)))?;
                if id.issuer.is_empty() {
                    return Err(bad("an identity has an empty issuer".to_owned()));
                }
                identities.push(KeylessIdentity {
                    issuer: id.issuer.clone(),
                    subject,
                });
            }
            let trusted_root = entry.trusted_root.as_ref().map(|p| base.join(p));
            if !identities.is_empty() {
                let Some(root) = &trusted_root else {
                    return Err(bad(
                        "keyless identities need a `trusted_root` file".to_owned()
                    ));
                };
                check_trusted_root(root).map_err(bad)?;
            }
            if keys.is_empty() && identities.is_empty() {
                return Err(bad(
                    "no keys and no identities: it would trust nothing".to_owned()
                ));
            }
            roots.push(TrustRoot {
                name: entry.name.clone(),
                prefix,
                keys,
                identities,
                trusted_root,
            });
        }
        let policy = TrustPolicy {
            require: file.require.iter().map(|r| canonical_prefix(r)).collect(),
            allow_disable_content_trust: file.allow_disable_content_trust,
            roots,
        };
        for (written, prefix) in file.require.iter().zip(&policy.require) {
            if policy.root_for_prefix(prefix).is_none() {
                return Err(PolicyError::Entry {
                    name: written.clone(),
                    message:
                        "`require` names it but no [[org]] entry configures a trust root for it"
                            .to_owned(),
                });
            }
        }
        Ok(policy)
    }

    /// The most specific root covering the expanded name or prefix.
    fn root_index(&self, name: &str) -> Option<usize> {
        self.roots
            .iter()
            .enumerate()
            .filter(|(_, r)| covers(&r.prefix, name))
            .max_by_key(|(_, r)| r.prefix.len())
            .map(|(i, _)| i)
    }

    fn root_for_prefix(&self, prefix: &str) -> Option<&TrustRoot> {
        self.root_index(prefix).map(|i| &self.roots[i])
    }

    /// The trust root for an image: the longest org or prefix entry that
    /// covers it.
    pub fn root_for(&self, image: &Reference) -> Option<&TrustRoot> {
        self.root_index(&canonical_name(image))
            .map(|i| &self.roots[i])
    }

    /// The trust root configured for an org (or a parent prefix).
    pub fn root_for_org(&self, org: &str) -> Option<&TrustRoot> {
        self.root_for_prefix(&canonical_prefix(org))
    }

    /// Which of `images` must verify, given the spec's `trust` section, and
    /// the root each is checked against. Every spec org or image without a
    /// trust root is an error; all of them are reported.
    pub fn plan(
        &self,
        trust: Option<&Trust>,
        images: &[String],
    ) -> Result<Vec<Requirement>, Vec<PolicyError>> {
        let mut errors = Vec::new();
        let spec_orgs: Vec<&String> = trust
            .and_then(|t| t.org.as_ref())
            .into_iter()
            .flatten()
            .collect();
        let spec_images: Vec<&String> = trust
            .and_then(|t| t.image.as_ref())
            .into_iter()
            .flatten()
            .collect();
        for org in &spec_orgs {
            if self.root_for_org(org).is_none() {
                errors.push(PolicyError::NoTrustRootForOrg {
                    org: (*org).clone(),
                });
            }
        }
        let mut spec_image_refs = Vec::new();
        for entry in &spec_images {
            match Reference::parse(entry) {
                Ok(r) => {
                    if self.root_for(&r).is_none() {
                        errors.push(PolicyError::NoTrustRootForImage {
                            image: (*entry).clone(),
                        });
                    }
                    spec_image_refs.push(((*entry).clone(), r));
                }
                Err(e) => errors.push(PolicyError::BadReference {
                    image: (*entry).clone(),
                    message: e.to_string(),
                }),
            }
        }
        let mut out: Vec<Requirement> = Vec::new();
        for image in images {
            let reference = match Reference::parse(image) {
                Ok(r) => r,
                Err(e) => {
                    errors.push(PolicyError::BadReference {
                        image: image.clone(),
                        message: e.to_string(),
                    });
                    continue;
                }
            };
            let name = canonical_name(&reference);
            let org_prefix = canonical_prefix(&org_of(&reference));
            let mut why = Vec::new();
            for org in &spec_orgs {
                if canonical_prefix(org) == org_prefix {
                    why.push(Why::SpecOrg((*org).clone()));
                }
            }
            for (entry, r) in &spec_image_refs {
                let same_name = canonical_name(r) == name;
                let tag_ok = r.tag.is_none() || r.tag == reference.tag;
                let digest_ok = r.digest.is_none() || r.digest == reference.digest;
                if same_name && tag_ok && digest_ok {
                    why.push(Why::SpecImage(entry.clone()));
                }
            }
            for prefix in &self.require {
                if covers(prefix, &name) {
                    why.push(Why::Policy(prefix.clone()));
                }
            }
            if why.is_empty() {
                continue;
            }
            let Some(root) = self.root_index(&name) else {
                // An org whose root covers only some of its images (a
                // prefix entry below the org) lands here; spec orgs and
                // images with no root at all were reported above.
                let reported = why.iter().all(|w| match w {
                    Why::SpecOrg(o) => self.root_for_org(o).is_none(),
                    Why::SpecImage(_) => true,
                    Why::Policy(_) => false,
                });
                if !reported {
                    errors.push(PolicyError::NoTrustRootForImage {
                        image: image.clone(),
                    });
                }
                continue;
            };
            if let Some(existing) = out.iter_mut().find(|r| r.image == *image) {
                existing.why.extend(why);
                continue;
            }
            out.push(Requirement {
                image: image.clone(),
                reference,
                why,
                root,
            });
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors)
        }
    }
}

/// A trusted root must parse: authorities whose certificates read, and
/// log keys that are EC public keys.
fn check_trusted_root(path: &Path) -> Result<(), String> {
    crate::keyless::TrustedRoot::load(path)
        .map(|_| ())
        .map_err(|e| e.to_string())
}
