//! Where each image lands in the root filesystem, and its SPDX package.

use std::collections::BTreeMap;

use kiln_shared::reference::{expand, org_of, Reference as SharedReference};
use kiln_shared::Spec;
use serde_json::{json, Value};

use super::purl::Purl;
use crate::engine::build::plan::Section;
use crate::engine::store::ResolvedImage;

/// The directories each image string is extracted into, in stream order
/// (`""` for the root, else a path ending in `/`). Containers that reuse
/// another's copy of the image add nothing.
pub fn placements(spec: &Spec, sections: &[Section]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut add = |image: Option<&str>, prefix: String| {
        if let Some(image) = image.filter(|i| !i.is_empty()) {
            let list = out.entry(image.to_owned()).or_default();
            if !list.contains(&prefix) {
                list.push(prefix);
            }
        }
    };
    for section in sections {
        match section {
            Section::Kernel => add(
                spec.kernel.as_ref().and_then(|k| k.image.as_deref()),
                String::new(),
            ),
            Section::Init(i) => add(spec.init.get(*i).map(String::as_str), String::new()),
            Section::Volume(i) => {
                let v = &spec.volumes[*i];
                let name = v.name.clone().unwrap_or_default();
                add(
                    v.image.as_deref(),
                    format!("containers/volumes/{name}/lower/"),
                );
            }
            Section::Container(plan) if plan.extracts => {
                add(Some(&plan.image), format!("{}/", plan.root));
            }
            _ => {}
        }
    }
    out
}

/// The org content trust uses for `written` (the spec's image string).
pub fn org(written: &str) -> Option<String> {
    SharedReference::parse(written).ok().map(|r| org_of(&r))
}

/// The `pkg:oci` URL of the image's root digest.
pub fn purl(image: &ResolvedImage) -> String {
    let reference = &image.reference;
    let repository = reference.repository();
    let last = repository.rsplit('/').next().unwrap_or(repository);
    Purl::new("oci", &last.to_ascii_lowercase())
        .version(&image.root.digest.to_string())
        .qualifier(
            "arch",
            image
                .platform
                .as_ref()
                .map_or("", |p| p.architecture.as_str()),
        )
        .qualifier("repository_url", &reference.name())
        .qualifier("tag", reference.tag().unwrap_or(""))
        .to_string()
}

/// The SPDX package of one source image.
pub fn package(id: &str, written: &str, image: &ResolvedImage, placed: &[String]) -> Value {
    let platform = image
        .platform
        .as_ref()
        .map_or_else(|| "unknown".to_owned(), ToString::to_string);
    let where_ = if placed.is_empty() {
        "not extracted".to_owned()
    } else {
        placed
            .iter()
            .map(|p| if p.is_empty() { "/" } else { p.as_str() })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let supplier = org(written).map_or_else(
        || "NOASSERTION".to_owned(),
        |o| format!("Organization: {o}"),
    );
    json!({
        "SPDXID": id,
        "name": written,
        "versionInfo": image.root.digest.to_string(),
        "supplier": supplier,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "primaryPackagePurpose": "CONTAINER",
        "checksums": [{
            "algorithm": "SHA256",
            "checksumValue": image.manifest.digest.hex(),
        }],
        "sourceInfo": format!("OCI image {}", expand(written)),
        "comment": format!(
            "image {} (root {}); platform {platform} manifest {} (the SHA256 checksum); placed at {where_}",
            image.reference,
            image.root.digest,
            image.manifest.digest,
        ),
        "externalRefs": [{
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceType": "purl",
            "referenceLocator": purl(image),
        }],
    })
}
