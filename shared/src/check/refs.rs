//! Image references and the `trust` section.

use super::Checker;
use crate::reference::{expand, Reference};
use crate::{path, Code, KeyPath};

pub(super) fn check(c: &mut Checker<'_>) {
    for (d, doc) in c.docs.iter().enumerate() {
        let spec = doc.spec;
        let mut refs: Vec<(KeyPath, &str)> = Vec::new();
        if let Some(image) = spec.kernel.as_ref().and_then(|k| k.image.as_deref()) {
            refs.push((path!["kernel", "image"], image));
        }
        for (i, image) in spec.init.iter().enumerate() {
            refs.push((path!["init", i], image));
        }
        for (section, entries) in [
            ("onboot", &spec.onboot),
            ("onshutdown", &spec.onshutdown),
            ("services", &spec.services),
        ] {
            for (i, entry) in entries.iter().enumerate() {
                refs.push((path![section, i, "image"], &entry.image));
            }
        }
        for (i, volume) in spec.volumes.iter().enumerate() {
            if let Some(image) = volume.image.as_deref().filter(|s| !s.is_empty()) {
                refs.push((path!["volumes", i, "image"], image));
            }
        }
        for (p, image) in refs {
            // `@pkg:` templates are replaced by linuxkit before it parses them.
            if image.starts_with("@pkg:") {
                continue;
            }
            // Parsed after linuxkit's expansion, as linuxkit parses it.
            if let Err(e) = Reference::parse(&expand(image)) {
                c.report(
                    d,
                    Code::BadImageRef,
                    p,
                    format!("invalid image reference `{image}`: {e}"),
                );
            }
        }

        let Some(trust) = &spec.trust else { continue };
        c.report(
            d,
            Code::DroppedByLinuxkit,
            path!["trust"],
            "linuxkit accepts `trust` and ignores it; kiln enforces it: the images named here must carry valid signatures from the trust roots configured for them",
        );
        for (i, org) in trust.org.iter().flatten().enumerate() {
            if let Err(why) = check_org(org) {
                c.report(d, Code::BadTrustOrg, path!["trust", "org", i], why);
            }
        }
        for (i, image) in trust.image.iter().flatten().enumerate() {
            if let Err(e) = Reference::parse(&expand(image)) {
                c.report(
                    d,
                    Code::BadTrustImage,
                    path!["trust", "image", i],
                    format!("invalid image name `{image}`: {e}"),
                );
            }
        }
    }
}

/// An org is a Hub namespace (`linuxkit`) or a registry host with one
/// namespace (`ghcr.io/acme`).
fn check_org(org: &str) -> Result<(), String> {
    let parts: Vec<&str> = org.split('/').collect();
    let valid = match parts.as_slice() {
        [_] => Reference::parse(org).is_ok_and(|r| r.domain.is_none()),
        [host, _] => {
            Reference::parse(&format!("{org}/x")).is_ok_and(|r| r.domain.as_deref() == Some(*host))
        }
        _ => false,
    };
    if valid {
        Ok(())
    } else {
        Err(format!(
            "invalid org `{org}`: expected a lower-case namespace such as `linuxkit`, or `host/namespace` such as `ghcr.io/acme`"
        ))
    }
}
