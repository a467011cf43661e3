//! `kiln cache rm`, `clean` and `verify`.

use std::collections::BTreeSet;

use kiln_backend::engine::reference::Reference;
use kiln_backend::engine::store::{Descriptor, ManifestKind, RootIndex, Store};

use super::{human_size, parse_references, plural, Context, Failure};
use crate::cli::exit;

/// Remove images and the blobs only they use.
///
/// Removes the images' names (with the `<REF>-<arch>`
/// names of an index) and the blobs no other image uses. Exits 1 if a
/// reference is not in the store (the others are still removed).
#[derive(Debug, clap::Args)]
pub struct RmArgs {
    /// Images, as stored (`kiln cache ls`); `:latest` is tried for names
    /// without tag or digest.
    #[arg(required = true, value_name = "REF")]
    references: Vec<String>,
}

/// Delete blobs no image uses.
///
/// Deletes every blob that no image in `index.json` reaches, and leftovers
/// of interrupted writes. Waits for pulls and imports in progress.
#[derive(Debug, clap::Args)]
pub struct CleanArgs {}

/// Re-hash every blob and report corruption.
///
/// Also checks that every image has all its blobs. Exits 1 when a blob is corrupt or missing, naming it and the images
/// that use it.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Delete corrupt blobs, so the next pull fetches them again.
    #[arg(long)]
    remove_corrupt: bool,
}

pub fn rm(ctx: &Context, args: RmArgs) -> Result<u8, Failure> {
    let references = parse_references(&args.references)?;
    let store = ctx.open_store()?;
    let index = store.index().map_err(Failure::failed)?;
    let mut names: Vec<String> = Vec::new();
    let mut missing = Vec::new();
    for r in &references {
        match lookup(&index, r) {
            Some((name, root)) => {
                for n in
                    std::iter::once(name.clone()).chain(arch_names(&store, &index, &name, &root))
                {
                    if !names.contains(&n) {
                        names.push(n);
                    }
                }
            }
            None => missing.push(r.to_string()),
        }
    }
    if !names.is_empty() {
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let report = store
            .remove(&refs)
            .map_err(|e| Failure::failed(format!("removing {}: {e}", names.join(", "))))?;
        for n in &report.names_removed {
            println!("removed {n}");
        }
        eprintln!(
            "deleted {} ({})",
            plural(report.blobs_deleted.len(), "blob", "blobs"),
            human_size(report.bytes_freed)
        );
    }
    if missing.is_empty() {
        Ok(exit::OK)
    } else {
        Err(Failure::failed(
            missing
                .iter()
                .map(|m| format!("image {m} is not in the store"))
                .collect::<Vec<_>>()
                .join("\nkiln: "),
        ))
    }
}

/// The stored name for `r` (trying `:latest` for a bare name) and its root.
fn lookup(index: &RootIndex, r: &Reference) -> Option<(String, Descriptor)> {
    let mut candidates = vec![r.to_string()];
    if r.tag().is_none() && r.digest().is_none() {
        candidates.push(r.with_default_tag().to_string());
    }
    candidates.into_iter().find_map(|n| {
        let found = index.named(&n).next().cloned();
        found.map(|d| (n, d))
    })
}

/// The `<name>-<arch>` entries pointing into the index `root`.
fn arch_names(store: &Store, index: &RootIndex, name: &str, root: &Descriptor) -> Vec<String> {
    let Ok(doc) = store.read_manifest(root) else {
        return Vec::new();
    };
    if doc.kind(&root.media_type) != Some(ManifestKind::Index) {
        return Vec::new();
    }
    let children: BTreeSet<_> = doc.manifests.iter().map(|m| &m.digest).collect();
    let prefix = format!("{name}-");
    index
        .manifests
        .iter()
        .filter(|d| children.contains(&d.digest))
        .filter_map(|d| d.ref_name())
        .filter(|n| n.starts_with(&prefix))
        .map(str::to_owned)
        .collect()
}

pub fn clean(ctx: &Context, _args: CleanArgs) -> Result<u8, Failure> {
    let store = ctx.open_store()?;
    let report = store.clean().map_err(Failure::failed)?;
    println!(
        "deleted {} ({}) and {}",
        plural(report.blobs_deleted.len(), "unused blob", "unused blobs"),
        human_size(report.bytes_freed),
        plural(
            report.temp_files_deleted,
            "temporary file",
            "temporary files"
        )
    );
    Ok(exit::OK)
}

pub fn verify(ctx: &Context, args: VerifyArgs) -> Result<u8, Failure> {
    let store = ctx.open_store()?;
    let report = store.verify(args.remove_corrupt).map_err(Failure::failed)?;
    for c in &report.corrupt {
        let users = if c.used_by.is_empty() {
            "no image".to_owned()
        } else {
            c.used_by.join(", ")
        };
        let deleted = if c.deleted { "; deleted" } else { "" };
        println!(
            "corrupt blob {} (content hashes to {}), used by {users}{deleted}",
            c.digest, c.actual
        );
    }
    for m in &report.missing {
        match &m.problem {
            Some(problem) => println!(
                "unreadable {} blob {} of {}: {problem}",
                m.role, m.digest, m.image
            ),
            None => println!("missing {} blob {} of {}", m.role, m.digest, m.image),
        }
    }
    let summary = format!(
        "checked {} ({})",
        plural(report.blobs_checked, "blob", "blobs"),
        human_size(report.bytes_checked)
    );
    if report.is_ok() {
        println!("{summary}: no problems");
        Ok(exit::OK)
    } else {
        let mut problems = Vec::new();
        if !report.corrupt.is_empty() {
            problems.push(plural(
                report.corrupt.len(),
                "corrupt blob",
                "corrupt blobs",
            ));
        }
        if !report.missing.is_empty() {
            problems.push(plural(
                report.missing.len(),
                "missing or unreadable blob",
                "missing or unreadable blobs",
            ));
        }
        println!("{summary}: {}", problems.join(", "));
        if !args.remove_corrupt && !report.corrupt.is_empty() {
            eprintln!("kiln: run `kiln cache verify --remove-corrupt` and pull the images again");
        }
        Ok(exit::INVALID)
    }
}
