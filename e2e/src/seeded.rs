//! A registry holding every fixture with a known signature state, for trust
//! tests:
//!
//! | repository | signature |
//! |---|---|
//! | every fixture, under `kiln-test/` | trusted key (an index: the index and each platform manifest) |
//! | [`BADSIG_REPO`] (busybox-plain's content) | rogue key |
//! | [`UNSIGNED_REPO`] (busybox-plain's content) | none |
//! | [`UNTRUSTED_REPO`] (busybox-plain's content) | none, in another org |

use crate::fixtures::{Fixture, FixtureSet};
use crate::registry::Registry;
use crate::sign::{self, KeyPair, Signature};

/// The org whose images the trusted key signs.
pub const TRUSTED_ORG: &str = "kiln-test";
/// In the trusted org, signed by the rogue key.
pub const BADSIG_REPO: &str = "kiln-test/busybox-badsig";
/// In the trusted org, not signed.
pub const UNSIGNED_REPO: &str = "kiln-test/busybox-unsigned";
/// Outside the trusted org, not signed.
pub const UNTRUSTED_REPO: &str = "untrusted/busybox-plain";

/// Who signed a pushed image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signer {
    Trusted,
    Rogue,
    Nobody,
}

/// One pushed image or index.
#[derive(Debug, Clone)]
pub struct Pushed {
    pub repo: String,
    pub tag: String,
    /// The root manifest (or index) digest.
    pub digest: String,
    pub signer: Signer,
    /// The signatures pushed for it (root first, then platform manifests).
    pub signatures: Vec<Signature>,
}

/// A running registry with every fixture pushed and signed.
#[derive(Debug)]
pub struct Seeded {
    pub registry: Registry,
    /// Signs everything in [`TRUSTED_ORG`] except [`BADSIG_REPO`].
    pub trusted_key: KeyPair,
    /// Signs [`BADSIG_REPO`].
    pub rogue_key: KeyPair,
    pub images: Vec<Pushed>,
}

impl Seeded {
    /// Starts a registry and pushes and signs `fixtures` as the module doc says.
    pub fn start(fixtures: &FixtureSet) -> anyhow::Result<Seeded> {
        let registry = Registry::start()?;
        let trusted_key = KeyPair::generate()?;
        let rogue_key = KeyPair::generate()?;
        let mut plan: Vec<(&Fixture, &str, Signer)> = fixtures
            .all()
            .into_iter()
            .map(|f| (f, f.name.as_str(), Signer::Trusted))
            .collect();
        plan.push((&fixtures.plain, BADSIG_REPO, Signer::Rogue));
        plan.push((&fixtures.plain, UNSIGNED_REPO, Signer::Nobody));
        plan.push((&fixtures.plain, UNTRUSTED_REPO, Signer::Nobody));
        let mut images = Vec::new();
        for (fixture, repo, signer) in plan {
            let key = match signer {
                Signer::Trusted => Some(&trusted_key),
                Signer::Rogue => Some(&rogue_key),
                Signer::Nobody => None,
            };
            images.push(push(&registry, fixture, repo, signer, key)?);
        }
        Ok(Seeded {
            registry,
            trusted_key,
            rogue_key,
            images,
        })
    }

    /// Pushes `fixture` as `repo` too (an image outside the fixture set,
    /// such as a boot loader), signed as `signer` says.
    pub fn push(&mut self, fixture: &Fixture, repo: &str, signer: Signer) -> anyhow::Result<()> {
        let key = match signer {
            Signer::Trusted => Some(&self.trusted_key),
            Signer::Rogue => Some(&self.rogue_key),
            Signer::Nobody => None,
        };
        let pushed = push(&self.registry, fixture, repo, signer, key)?;
        self.images.push(pushed);
        Ok(())
    }

    /// The pushed image in `repo`.
    pub fn image(&self, repo: &str) -> Option<&Pushed> {
        self.images.iter().find(|i| i.repo == repo)
    }

    /// `127.0.0.1:<port>/<repo>:<tag>` of the image in `repo`.
    pub fn reference(&self, repo: &str) -> Option<String> {
        self.image(repo)
            .map(|i| self.registry.reference(&i.repo, &i.tag))
    }

    /// The trusted org as kiln names orgs outside Docker Hub:
    /// `127.0.0.1:<port>/kiln-test`.
    pub fn trusted_org(&self) -> String {
        format!("{}/{TRUSTED_ORG}", self.registry.host())
    }
}

fn push(
    registry: &Registry,
    fixture: &Fixture,
    repo: &str,
    signer: Signer,
    key: Option<&KeyPair>,
) -> anyhow::Result<Pushed> {
    registry.push_layout(&fixture.layout, &fixture.tag, repo, &fixture.tag)?;
    let mut signatures = Vec::new();
    if let Some(key) = key {
        signatures.push(sign::sign_image(registry, repo, fixture.digest(), key)?);
        if fixture.is_index() {
            for manifest in &fixture.manifests {
                signatures.push(sign::sign_image(registry, repo, &manifest.digest, key)?);
            }
        }
    }
    Ok(Pushed {
        repo: repo.to_owned(),
        tag: fixture.tag.clone(),
        digest: fixture.digest().to_owned(),
        signer,
        signatures,
    })
}
