//! The SPDX documents BuildKit attached to an image, and folding them into
//! kiln's document the way linuxkit merges them: file names prefixed with
//! where the image is placed, everything concatenated, and (unlike
//! linuxkit) every SPDX id renamed so ids stay unique across images.

use std::io::Read;

use serde_json::{json, Map, Value};

use super::SbomError;
use crate::engine::store::{
    Digest, ManifestKind, ResolvedImage, Store, StoreError, ANNOTATION_REFERENCE_DIGEST,
};

pub const ANNOTATION_REFERENCE_TYPE: &str = "vnd.docker.reference.type";
pub const ATTESTATION_MANIFEST: &str = "attestation-manifest";
pub const INTOTO_MEDIA_TYPE: &str = "application/vnd.in-toto+json";
pub const ANNOTATION_PREDICATE_TYPE: &str = "in-toto.io/predicate-type";
pub const SPDX_PREDICATE: &str = "https://spdx.dev/Document";

/// Largest attestation layer read (64 MiB).
const MAX_ATTESTATION_BYTES: u64 = 64 << 20;

/// The SPDX predicates attached to `image`'s platform manifest, in layer
/// order. Attestations absent from the store are skipped; present but
/// unreadable ones are errors.
pub fn spdx_documents(
    store: &Store,
    written: &str,
    image: &ResolvedImage,
) -> Result<Vec<Value>, SbomError> {
    let store_error = |error| SbomError::Store {
        image: written.to_owned(),
        error,
    };
    if image.root.digest == image.manifest.digest {
        return Ok(Vec::new());
    }
    let index = store.read_manifest(&image.root).map_err(store_error)?;
    if index.kind(&image.root.media_type) != Some(ManifestKind::Index) {
        return Ok(Vec::new());
    }
    let platform = image.manifest.digest.to_string();
    let mut out = Vec::new();
    for entry in index.manifests.iter().filter(|m| {
        m.annotations
            .get(ANNOTATION_REFERENCE_TYPE)
            .map(String::as_str)
            == Some(ATTESTATION_MANIFEST)
            && m.annotations.get(ANNOTATION_REFERENCE_DIGEST) == Some(&platform)
    }) {
        let manifest = match store.read_manifest(entry) {
            Ok(m) => m,
            Err(StoreError::BlobMissing { .. }) => continue,
            Err(e) => return Err(store_error(e)),
        };
        for layer in manifest.layers.iter().filter(|l| {
            l.media_type == INTOTO_MEDIA_TYPE
                && l.annotations
                    .get(ANNOTATION_PREDICATE_TYPE)
                    .map(String::as_str)
                    == Some(SPDX_PREDICATE)
        }) {
            let Some(bytes) = read_blob(store, written, &layer.digest)? else {
                continue;
            };
            let bad = |message: String| SbomError::Attestation {
                image: written.to_owned(),
                digest: layer.digest.to_string(),
                message,
            };
            let statement: Value = serde_json::from_slice(&bytes)
                .map_err(|e| bad(format!("not an in-toto statement: {e}")))?;
            match statement.get("predicate") {
                Some(Value::Object(doc)) => out.push(Value::Object(doc.clone())),
                _ => return Err(bad("the statement has no SPDX document predicate".into())),
            }
        }
    }
    Ok(out)
}

/// A blob read whole up to [`MAX_ATTESTATION_BYTES`] and checked against its
/// digest; `None` when the store does not have it.
fn read_blob(store: &Store, written: &str, digest: &Digest) -> Result<Option<Vec<u8>>, SbomError> {
    let bad = |message: String| SbomError::Attestation {
        image: written.to_owned(),
        digest: digest.to_string(),
        message,
    };
    let file = match store.open_blob(digest) {
        Ok(f) => f,
        Err(StoreError::BlobMissing { .. }) => return Ok(None),
        Err(error) => {
            return Err(SbomError::Store {
                image: written.to_owned(),
                error,
            })
        }
    };
    let mut bytes = Vec::new();
    file.take(MAX_ATTESTATION_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| bad(format!("reading: {e}")))?;
    if bytes.len() as u64 > MAX_ATTESTATION_BYTES {
        return Err(bad(format!("larger than {MAX_ATTESTATION_BYTES} bytes")));
    }
    if Digest::of(&bytes) != *digest {
        return Err(bad("content does not match its digest".into()));
    }
    Ok(Some(bytes))
}

/// The parts of the merged document, appended to by [`merge`].
#[derive(Debug, Default)]
pub struct Parts {
    pub packages: Vec<Value>,
    pub files: Vec<Value>,
    pub snippets: Vec<Value>,
    pub relationships: Vec<Value>,
    pub licenses: Vec<Value>,
    pub external_refs: Vec<Value>,
    /// Document-level annotations of the merged documents, which now
    /// describe the image package.
    pub image_annotations: Vec<Value>,
}

/// How one attached document is folded in.
pub struct Placement<'a> {
    /// The SPDX id of the image package the document describes.
    pub image_id: &'a str,
    /// Inserted after `SPDXRef-` / `DocumentRef-` / `LicenseRef-` in every
    /// id of the document.
    pub tag: &'a str,
    /// Where the image's root is in the filesystem (`""`, or a path ending
    /// in `/`).
    pub prefix: &'a str,
}

impl Placement<'_> {
    fn id(&self, id: &str) -> String {
        match id {
            "SPDXRef-DOCUMENT" => self.image_id.to_owned(),
            "NONE" | "NOASSERTION" => id.to_owned(),
            _ => {
                if let Some((doc, rest)) = id.split_once(':') {
                    if let Some(name) = doc.strip_prefix("DocumentRef-") {
                        return format!("DocumentRef-{}-{name}:{rest}", self.tag);
                    }
                }
                match id.strip_prefix("SPDXRef-") {
                    Some(name) => format!("SPDXRef-{}-{name}", self.tag),
                    None => id.to_owned(),
                }
            }
        }
    }

    /// Renames the `LicenseRef-` and `DocumentRef-` tokens of a license
    /// expression; operators and list ids are kept.
    fn license(&self, expr: &str) -> String {
        let mut out = String::with_capacity(expr.len());
        let mut token = String::new();
        let flush = |token: &mut String, out: &mut String| {
            if token.starts_with("LicenseRef-") || token.starts_with("DocumentRef-") {
                let renamed = if let Some(name) = token.strip_prefix("LicenseRef-") {
                    format!("LicenseRef-{}-{name}", self.tag)
                } else {
                    let (doc, rest) = token.split_once(':').unwrap_or((token.as_str(), ""));
                    let name = doc.trim_start_matches("DocumentRef-");
                    let sep = if token.contains(':') { ":" } else { "" };
                    format!("DocumentRef-{}-{name}{sep}{rest}", self.tag)
                };
                out.push_str(&renamed);
            } else {
                out.push_str(token);
            }
            token.clear();
        };
        for c in expr.chars() {
            if c.is_whitespace() || c == '(' || c == ')' {
                flush(&mut token, &mut out);
                out.push(c);
            } else {
                token.push(c);
            }
        }
        flush(&mut token, &mut out);
        out
    }

    /// A path inside the image, moved to where the image is placed.
    fn path(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            return name.to_owned();
        }
        let (lead, rest) = if let Some(r) = name.strip_prefix("./") {
            ("./", r)
        } else if let Some(r) = name.strip_prefix('/') {
            ("/", r)
        } else {
            ("", name)
        };
        format!("{lead}{}{}", self.prefix, rest.trim_start_matches('/'))
    }

    /// A file name: placed, and in SPDX's relative `./` form (scanners
    /// often write absolute names, which SPDX 2.3 does not allow).
    fn file_name(&self, name: &str) -> String {
        let placed = self.path(name);
        let rest = placed.trim_start_matches("./").trim_start_matches('/');
        format!("./{rest}")
    }
}

fn rename_str(obj: &mut Map<String, Value>, key: &str, f: impl Fn(&str) -> String) {
    if let Some(Value::String(s)) = obj.get_mut(key) {
        *s = f(s);
    }
}

fn rename_list(obj: &mut Map<String, Value>, key: &str, f: impl Fn(&str) -> String) {
    if let Some(Value::Array(items)) = obj.get_mut(key) {
        for item in items {
            if let Value::String(s) = item {
                *s = f(s);
            }
        }
    }
}

fn objects(doc: &mut Map<String, Value>, key: &str) -> Vec<Map<String, Value>> {
    match doc.remove(key) {
        Some(Value::Array(items)) => items
            .into_iter()
            .filter_map(|v| match v {
                Value::Object(o) => Some(o),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Folds one attached SPDX document into `parts`.
pub fn merge(doc: Value, at: &Placement<'_>, parts: &mut Parts) {
    let Value::Object(mut doc) = doc else {
        return;
    };
    let id = |s: &str| at.id(s);
    let license = |s: &str| at.license(s);

    for mut p in objects(&mut doc, "packages") {
        rename_str(&mut p, "SPDXID", id);
        rename_list(&mut p, "hasFiles", id);
        rename_str(&mut p, "packageFileName", |s| at.path(s));
        for key in ["licenseConcluded", "licenseDeclared"] {
            rename_str(&mut p, key, license);
        }
        rename_list(&mut p, "licenseInfoFromFiles", license);
        parts.packages.push(Value::Object(p));
    }
    for mut f in objects(&mut doc, "files") {
        rename_str(&mut f, "SPDXID", id);
        rename_str(&mut f, "fileName", |s| at.file_name(s));
        rename_str(&mut f, "licenseConcluded", license);
        rename_list(&mut f, "licenseInfoInFiles", license);
        parts.files.push(Value::Object(f));
    }
    for mut s in objects(&mut doc, "snippets") {
        rename_str(&mut s, "SPDXID", id);
        rename_str(&mut s, "snippetFromFile", id);
        rename_str(&mut s, "licenseConcluded", license);
        rename_list(&mut s, "licenseInfoInSnippets", license);
        if let Some(Value::Array(ranges)) = s.get_mut("ranges") {
            for range in ranges {
                for end in ["startPointer", "endPointer"] {
                    if let Some(Value::Object(p)) = range.get_mut(end) {
                        rename_str(p, "reference", id);
                    }
                }
            }
        }
        parts.snippets.push(Value::Object(s));
    }
    for mut l in objects(&mut doc, "hasExtractedLicensingInfos") {
        rename_str(&mut l, "licenseId", license);
        parts.licenses.push(Value::Object(l));
    }
    for mut r in objects(&mut doc, "externalDocumentRefs") {
        rename_str(&mut r, "externalDocumentId", |s| {
            at.id(&format!("{s}:x")).trim_end_matches(":x").to_owned()
        });
        parts.external_refs.push(Value::Object(r));
    }
    for mut r in objects(&mut doc, "relationships") {
        let from_doc = r.get("spdxElementId").and_then(Value::as_str) == Some("SPDXRef-DOCUMENT");
        let to_doc =
            r.get("relatedSpdxElement").and_then(Value::as_str) == Some("SPDXRef-DOCUMENT");
        let kind = r.get("relationshipType").and_then(Value::as_str);
        // The document became the image package: it contains what the
        // document described.
        let kind = match kind {
            Some("DESCRIBES") if from_doc => Some("CONTAINS"),
            Some("DESCRIBED_BY") if to_doc => Some("CONTAINED_BY"),
            other => other,
        }
        .map(str::to_owned);
        if let Some(kind) = kind {
            r.insert("relationshipType".into(), Value::String(kind));
        }
        rename_str(&mut r, "spdxElementId", id);
        rename_str(&mut r, "relatedSpdxElement", id);
        parts.relationships.push(Value::Object(r));
    }
    if let Some(Value::Array(described)) = doc.remove("documentDescribes") {
        for d in described.iter().filter_map(Value::as_str) {
            parts.relationships.push(json!({
                "spdxElementId": at.image_id,
                "relationshipType": "CONTAINS",
                "relatedSpdxElement": at.id(d),
            }));
        }
    }
    parts.image_annotations.extend(
        objects(&mut doc, "annotations")
            .into_iter()
            .map(Value::Object),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at<'a>(prefix: &'a str) -> Placement<'a> {
        Placement {
            image_id: "SPDXRef-Image-2",
            tag: "Image-2-sbom",
            prefix,
        }
    }

    #[test]
    fn ids_are_renamed_and_document_becomes_the_image() {
        let a = at("");
        assert_eq!(a.id("SPDXRef-DOCUMENT"), "SPDXRef-Image-2");
        assert_eq!(a.id("SPDXRef-Package-x"), "SPDXRef-Image-2-sbom-Package-x");
        assert_eq!(a.id("NOASSERTION"), "NOASSERTION");
        assert_eq!(
            a.id("DocumentRef-base:SPDXRef-y"),
            "DocumentRef-Image-2-sbom-base:SPDXRef-y"
        );
    }

    #[test]
    fn license_expressions_keep_list_ids() {
        assert_eq!(
            at("").license("(MIT OR LicenseRef-a) AND DocumentRef-d:LicenseRef-b"),
            "(MIT OR LicenseRef-Image-2-sbom-a) AND DocumentRef-Image-2-sbom-d:LicenseRef-b"
        );
    }

    #[test]
    fn paths_get_the_placement_prefix() {
        let a = at("containers/services/getty/lower/");
        assert_eq!(
            a.path("/usr/bin/x"),
            "/containers/services/getty/lower/usr/bin/x"
        );
        assert_eq!(a.path("./etc/x"), "./containers/services/getty/lower/etc/x");
        assert_eq!(a.path("lib/y"), "containers/services/getty/lower/lib/y");
        assert_eq!(at("").path("/usr/bin/x"), "/usr/bin/x");
        assert_eq!(
            a.file_name("/usr/bin/x"),
            "./containers/services/getty/lower/usr/bin/x"
        );
        assert_eq!(at("").file_name("/usr/bin/x"), "./usr/bin/x");
        assert_eq!(at("").file_name("./etc/x"), "./etc/x");
    }

    #[test]
    fn merge_rewrites_every_reference() {
        let doc = json!({
            "SPDXID": "SPDXRef-DOCUMENT",
            "documentDescribes": ["SPDXRef-Root"],
            "packages": [{"SPDXID": "SPDXRef-Root", "name": "getty", "hasFiles": ["SPDXRef-F1"],
                          "packageFileName": "/pkg", "licenseDeclared": "LicenseRef-x"}],
            "files": [{"SPDXID": "SPDXRef-F1", "fileName": "/usr/bin/getty",
                       "licenseInfoInFiles": ["NOASSERTION"]}],
            "hasExtractedLicensingInfos": [{"licenseId": "LicenseRef-x", "extractedText": "t"}],
            "relationships": [
                {"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES", "relatedSpdxElement": "SPDXRef-Root"},
                {"spdxElementId": "SPDXRef-Root", "relationshipType": "CONTAINS", "relatedSpdxElement": "SPDXRef-F1"}
            ],
            "annotations": [{"annotator": "Tool: x", "annotationType": "OTHER", "annotationDate": "2020-01-01T00:00:00Z", "comment": "c"}]
        });
        let mut parts = Parts::default();
        merge(doc, &at("containers/services/getty/lower/"), &mut parts);
        let p = &parts.packages[0];
        assert_eq!(p["SPDXID"], "SPDXRef-Image-2-sbom-Root");
        assert_eq!(p["hasFiles"][0], "SPDXRef-Image-2-sbom-F1");
        assert_eq!(p["packageFileName"], "/containers/services/getty/lower/pkg");
        assert_eq!(p["licenseDeclared"], "LicenseRef-Image-2-sbom-x");
        assert_eq!(
            parts.files[0]["fileName"],
            "./containers/services/getty/lower/usr/bin/getty"
        );
        assert_eq!(parts.licenses[0]["licenseId"], "LicenseRef-Image-2-sbom-x");
        assert_eq!(
            parts.relationships[0],
            json!({"spdxElementId": "SPDXRef-Image-2", "relationshipType": "CONTAINS", "relatedSpdxElement": "SPDXRef-Image-2-sbom-Root"})
        );
        assert_eq!(
            parts.relationships[1]["relatedSpdxElement"],
            "SPDXRef-Image-2-sbom-F1"
        );
        assert_eq!(parts.relationships[2]["spdxElementId"], "SPDXRef-Image-2");
        assert_eq!(parts.image_annotations.len(), 1);
    }
}
