//! The SBOM of a build: one SPDX 2.3 JSON document listing every source
//! image (digests, org, purl), the SPDX documents BuildKit attached to them
//! merged in as linuxkit merges them, and optionally the packages found in
//! each image's dpkg and apk databases.
//!
//! The document is a function of its inputs: the namespace is derived
//! from a digest of the spec, the image digests and the options (linuxkit
//! uses a random UUID), `created` is fixed, and every list is sorted.

mod attest;
mod image;
mod purl;
mod scan;

use std::collections::{BTreeMap, BTreeSet};

use kiln_shared::Spec;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use crate::engine::build::metadata;
use crate::engine::build::plan::{self, Images, PlanError};
use crate::engine::flatten::FlattenError;
use crate::engine::fs::LINUXKIT_EPOCH;
use crate::engine::store::{Store, StoreError};

pub use attest::{
    ANNOTATION_PREDICATE_TYPE, ANNOTATION_REFERENCE_TYPE, ATTESTATION_MANIFEST, INTOTO_MEDIA_TYPE,
    SPDX_PREDICATE,
};
pub use scan::{parse_apk, parse_dpkg, Db, Installed, APK_INSTALLED, DPKG_STATUS, DPKG_STATUS_DIR};

/// The SBOM's file name in the root filesystem, as in linuxkit.
pub const SBOM_FILE: &str = "sbom.spdx.json";
/// The prefix of every document namespace kiln writes.
pub const NAMESPACE_BASE: &str = "https://kiln.dev/spdx/";

/// What goes into the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SbomOptions {
    /// The document name, and the name of the package for the whole image
    /// (the build's output name).
    pub name: String,
    /// Read every image's layers for installed dpkg and apk packages.
    pub scan_packages: bool,
    /// `creationInfo.created`, seconds since the epoch.
    pub created: u64,
}

impl SbomOptions {
    /// `created` from `SOURCE_DATE_EPOCH` when set, else linuxkit's fixed
    /// 2017-04-18T16:30:00Z; no package scan.
    pub fn new(name: &str) -> Result<SbomOptions, SbomError> {
        Ok(SbomOptions {
            name: name.to_owned(),
            scan_packages: false,
            created: created_from(std::env::var("SOURCE_DATE_EPOCH").ok().as_deref())?,
        })
    }
}

/// The `created` time for a `SOURCE_DATE_EPOCH` value.
pub fn created_from(source_date_epoch: Option<&str>) -> Result<u64, SbomError> {
    match source_date_epoch.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(LINUXKIT_EPOCH),
        Some(v) => v.parse().map_err(|_| SbomError::SourceDateEpoch {
            value: v.to_owned(),
        }),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SbomError {
    #[error("SBOM: no resolved image for `{image}`")]
    Unresolved { image: String },
    #[error("SBOM: {0}")]
    Plan(#[from] PlanError),
    #[error("SBOM of image `{image}`: {error}")]
    Store { image: String, error: StoreError },
    #[error("SBOM of image `{image}`: attestation {digest}: {message}")]
    Attestation {
        image: String,
        digest: String,
        message: String,
    },
    #[error("SBOM of image `{image}`: scanning for packages: {error}")]
    Scan {
        image: String,
        error: Box<FlattenError>,
    },
    #[error("SBOM of image `{image}`: {path}: package databases larger than {max} bytes")]
    DatabaseTooLarge {
        image: String,
        path: String,
        max: u64,
    },
    #[error("SBOM of image `{image}`: {path}: {message}")]
    Database {
        image: String,
        path: String,
        message: String,
    },
    #[error("SOURCE_DATE_EPOCH=`{value}` is not a number of seconds")]
    SourceDateEpoch { value: String },
    #[error("SBOM: serialising: {0}")]
    Json(#[from] serde_json::Error),
}

const OS_ID: &str = "SPDXRef-OperatingSystem";

/// The SPDX 2.3 JSON document of building `spec` from `images`; the same
/// inputs give the same bytes.
pub fn document(
    spec: &Spec,
    images: &Images,
    store: &Store,
    options: &SbomOptions,
) -> Result<Vec<u8>, SbomError> {
    let sections = plan::plan(spec, images, store)?;
    let placed = image::placements(spec, &sections);
    let mut written: Vec<&String> = images.keys().collect();
    written.sort();

    let mut parts = attest::Parts::default();
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": OS_ID,
    })];
    let mut image_packages = Vec::new();
    for (n, name) in written.iter().enumerate() {
        let resolved = images.get(*name).ok_or_else(|| SbomError::Unresolved {
            image: (*name).clone(),
        })?;
        let id = format!("SPDXRef-Image-{}", n + 1);
        let prefixes = placed.get(*name).cloned().unwrap_or_default();
        let mut package = image::package(&id, name, resolved, &prefixes);
        relationships.push(contains(OS_ID, &id));

        let docs = attest::spdx_documents(store, name, resolved)?;
        parts.image_annotations.clear();
        for (k, prefix) in prefixes.iter().enumerate() {
            for (d, doc) in docs.iter().enumerate() {
                let tag = format!("Image-{}-sbom{}", n + 1, suffix(k, d));
                let at = attest::Placement {
                    image_id: &id,
                    tag: &tag,
                    prefix,
                };
                attest::merge(doc.clone(), &at, &mut parts);
            }
        }
        if !parts.image_annotations.is_empty() {
            package["annotations"] = Value::Array(std::mem::take(&mut parts.image_annotations));
        }
        image_packages.push(package);

        if options.scan_packages {
            let found = scan::scan(store, name, resolved)?;
            let mut used = BTreeSet::new();
            for p in &found.packages {
                let pid = unique(
                    &mut used,
                    format!(
                        "SPDXRef-Image-{}-pkg-{}-{}",
                        n + 1,
                        id_safe(&p.name),
                        id_safe(&p.arch)
                    ),
                );
                parts
                    .packages
                    .push(installed_package(&pid, p, found.distro.as_deref()));
                relationships.push(contains(&id, &pid));
            }
        }
    }

    relationships.append(&mut parts.relationships);
    let describes = relationships.remove(0);
    sort_by_keys(
        &mut relationships,
        &["spdxElementId", "relationshipType", "relatedSpdxElement"],
    );
    relationships.dedup();
    relationships.insert(0, describes);

    let mut packages = vec![os_package(spec, options)];
    image_packages.append(&mut parts.packages);
    sort_by_keys(&mut image_packages, &["SPDXID"]);
    packages.append(&mut image_packages);
    sort_by_keys(&mut parts.files, &["SPDXID"]);
    sort_by_keys(&mut parts.snippets, &["SPDXID"]);
    sort_by_keys(&mut parts.licenses, &["licenseId"]);
    sort_by_keys(&mut parts.external_refs, &["externalDocumentId"]);

    let mut doc = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": options.name,
        "documentNamespace": namespace(spec, images, options),
        "creationInfo": {
            "created": rfc3339(options.created),
            "creators": [
                format!("Tool: kiln-{}", env!("CARGO_PKG_VERSION")),
                "Organization: kiln",
            ],
        },
        "packages": packages,
        "relationships": relationships,
    });
    for (key, list) in [
        ("files", parts.files),
        ("snippets", parts.snippets),
        ("hasExtractedLicensingInfos", parts.licenses),
        ("externalDocumentRefs", parts.external_refs),
    ] {
        if !list.is_empty() {
            doc[key] = Value::Array(list);
        }
    }
    let mut bytes = serde_json::to_vec_pretty(&doc)?;
    bytes.push(b'\n');
    Ok(bytes)
}

fn suffix(placement: usize, doc: usize) -> String {
    match (placement, doc) {
        (0, 0) => String::new(),
        (p, d) => format!("{}-{}", p + 1, d + 1),
    }
}

fn contains(from: &str, to: &str) -> Value {
    json!({
        "spdxElementId": from,
        "relationshipType": "CONTAINS",
        "relatedSpdxElement": to,
    })
}

/// The package standing for the whole OS image.
fn os_package(spec: &Spec, options: &SbomOptions) -> Value {
    json!({
        "SPDXID": OS_ID,
        "name": options.name,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "primaryPackagePurpose": "OPERATING-SYSTEM",
        "comment": format!(
            "LinuxKit image built by kiln from a spec with sha256 {}",
            hex::encode(Sha256::digest(metadata::to_yaml(spec)))
        ),
    })
}

fn installed_package(id: &str, p: &Installed, distro: Option<&str>) -> Value {
    let mut v = json!({
        "SPDXID": id,
        "name": p.name,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "sourceInfo": format!("listed in {}", p.path),
        "externalRefs": [{
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceType": "purl",
            "referenceLocator": p.purl(distro),
        }],
    });
    if !p.version.is_empty() {
        v["versionInfo"] = Value::String(p.version.clone());
    }
    v
}

/// `SPDXRef-` ids allow letters, digits, `.` and `-`.
fn id_safe(s: &str) -> String {
    let out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if out.is_empty() {
        "none".into()
    } else {
        out
    }
}

fn unique(used: &mut BTreeSet<String>, id: String) -> String {
    let mut candidate = id.clone();
    let mut n = 2;
    while !used.insert(candidate.clone()) {
        candidate = format!("{id}-{n}");
        n += 1;
    }
    candidate
}

fn sort_by_keys(items: &mut [Value], keys: &[&str]) {
    let key = |v: &Value| -> Vec<String> {
        keys.iter()
            .map(|k| v.get(*k).and_then(Value::as_str).unwrap_or("").to_owned())
            .collect()
    };
    // Stable, and ties broken by the whole value, so the order never
    // depends on the order the parts were found in.
    items.sort_by_cached_key(|v| (key(v), v.to_string()));
}

/// `https://kiln.dev/spdx/<name>-<sha256 of the inputs>`.
pub fn namespace(spec: &Spec, images: &Images, options: &SbomOptions) -> String {
    let mut h = Sha256::new();
    h.update(concat!("kiln-sbom/", env!("CARGO_PKG_VERSION"), "\n"));
    h.update(format!(
        "name {}\nscan {}\ncreated {}\n",
        options.name, options.scan_packages, options.created
    ));
    h.update(metadata::to_yaml(spec));
    let ordered: BTreeMap<&String, _> = images.iter().collect();
    for (written, r) in ordered {
        h.update(format!(
            "\nimage {written} {} {}",
            r.root.digest, r.manifest.digest
        ));
    }
    let name: String = options
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-._".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("{NAMESPACE_BASE}{name}-{}", hex::encode(h.finalize()))
}

fn rfc3339(secs: u64) -> String {
    let secs = i64::try_from(secs).unwrap_or(i64::MAX);
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_defaults_to_linuxkit_epoch_and_honours_source_date_epoch() {
        assert_eq!(created_from(None).unwrap(), LINUXKIT_EPOCH);
        assert_eq!(created_from(Some("")).unwrap(), LINUXKIT_EPOCH);
        assert_eq!(created_from(Some("86400")).unwrap(), 86400);
        let e = created_from(Some("yesterday")).unwrap_err().to_string();
        assert!(e.contains("yesterday"), "{e}");
        assert_eq!(rfc3339(LINUXKIT_EPOCH), "2017-04-18T16:30:00Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn ids_are_made_valid_and_unique() {
        assert_eq!(id_safe("libstdc++6"), "libstdc--6");
        assert_eq!(id_safe(""), "none");
        let mut used = BTreeSet::new();
        assert_eq!(unique(&mut used, "a".into()), "a");
        assert_eq!(unique(&mut used, "a".into()), "a-2");
        assert_eq!(unique(&mut used, "a".into()), "a-3");
    }

    #[test]
    fn sorting_is_by_key_then_whole_value() {
        let mut v = vec![
            json!({"SPDXID": "b"}),
            json!({"SPDXID": "a", "x": 2}),
            json!({"SPDXID": "a", "x": 1}),
        ];
        sort_by_keys(&mut v, &["SPDXID"]);
        assert_eq!(v[0]["x"], 1);
        assert_eq!(v[2]["SPDXID"], "b");
    }
}
