//! The build plan: every section of the root filesystem with what it needs,
//! worked out before any layer is read.
//!
//! Containers are planned up front because one container's layout can depend
//! on another's: the first container to use an image extracts it, and later
//! ones point their `runtime.json` at that copy.

use std::collections::HashMap;

use kiln_shared::ids::IdTable;
use kiln_shared::reference::expand;
use kiln_shared::{ImageEntry, Spec};

use crate::engine::bundle::{self, Bundle, ImageConfig};
use crate::engine::store::{BlobRole, ResolvedImage, Store, StoreError};

/// One part of the root filesystem, in stream order.
#[derive(Debug, Clone)]
pub enum Section {
    Kernel,
    Init(usize),
    Volume(usize),
    Container(Box<ContainerPlan>),
    Files,
    /// `sbom.spdx.json`, the document already made; always last.
    Sbom(std::sync::Arc<Vec<u8>>),
}

impl Section {
    /// linuxkit's `LINUXKIT.location` label for the section.
    pub fn location(&self) -> String {
        match self {
            Section::Kernel => "kernel".into(),
            Section::Init(i) => format!("init[{i}]"),
            Section::Volume(i) => format!("volume[{i}]"),
            Section::Container(c) => c.location.clone(),
            Section::Files => "files".into(),
            Section::Sbom(_) => "sbom".into(),
        }
    }
}

/// A container, with its generated configuration and where it goes.
#[derive(Debug, Clone)]
pub struct ContainerPlan {
    /// `onboot`, `onshutdown` or `services`.
    pub section: &'static str,
    pub index: usize,
    /// `onboot[0]`, the provenance location.
    pub location: String,
    /// `containers/onboot/000-name`.
    pub dir: String,
    /// The image string as written in the spec.
    pub image: String,
    /// The expanded reference, the provenance source.
    pub source: String,
    pub bundle: Bundle,
    /// The image root this container uses: its own, or the first copy.
    pub root: String,
    /// Whether this container extracts the image (it is the first to use it).
    pub extracts: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{container}: no resolved image for `{image}`")]
    Unresolved { container: String, image: String },
    #[error("{container}: reading the config of {image}: {error}")]
    Config {
        container: String,
        image: String,
        error: String,
    },
    #[error("{0}")]
    Bundle(#[from] bundle::BundleError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Every image the spec names, resolved for the target platform, keyed by
/// the string as written in the spec.
pub type Images = HashMap<String, ResolvedImage>;

/// Plans the sections of `spec`, in linuxkit's stream order.
pub fn plan(spec: &Spec, images: &Images, store: &Store) -> Result<Vec<Section>, PlanError> {
    let ids = IdTable::for_specs([spec]);
    let volumes: HashMap<String, bool> = spec
        .volumes
        .iter()
        .filter_map(|v| Some((v.name.clone()?, v.readonly.unwrap_or(false))))
        .collect();
    let ctx = bundle::Context {
        ids: &ids,
        volumes: &volumes,
    };

    let mut sections = Vec::new();
    if spec
        .kernel
        .as_ref()
        .and_then(|k| k.image.as_deref())
        .is_some_and(|i| !i.is_empty())
    {
        sections.push(Section::Kernel);
    }
    sections.extend((0..spec.init.len()).map(Section::Init));
    sections.extend((0..spec.volumes.len()).map(Section::Volume));

    let mut first_root: HashMap<String, String> = HashMap::new();
    for (section, entries) in [
        ("onboot", &spec.onboot),
        ("onshutdown", &spec.onshutdown),
        ("services", &spec.services),
    ] {
        for (index, entry) in entries.iter().enumerate() {
            let plan = container(section, index, entry, images, store, &ctx, &mut first_root)?;
            sections.push(Section::Container(Box::new(plan)));
        }
    }
    sections.push(Section::Files);
    Ok(sections)
}

fn container(
    section: &'static str,
    index: usize,
    entry: &ImageEntry,
    images: &Images,
    store: &Store,
    ctx: &bundle::Context<'_>,
    first_root: &mut HashMap<String, String>,
) -> Result<ContainerPlan, PlanError> {
    let resolved = images
        .get(&entry.image)
        .ok_or_else(|| PlanError::Unresolved {
            container: entry.name.clone(),
            image: entry.image.clone(),
        })?;
    let blob = store.read_json_blob(&resolved.config.digest, BlobRole::Config)?;
    let config = ImageConfig::from_blob(&blob).map_err(|e| PlanError::Config {
        container: entry.name.clone(),
        image: entry.image.clone(),
        error: e.to_string(),
    })?;
    let bundle = bundle::generate(entry, &config, ctx)?;
    let dir = match section {
        "services" => format!("containers/services/{}", entry.name),
        _ => format!("containers/{section}/{index:03}-{}", entry.name),
    };
    let source = expand(&entry.image);
    // linuxkit shares by the reference string, not the digest, and ignores
    // differences in `readonly`.
    let (root, extracts) = match first_root.get(&source) {
        Some(root) => (root.clone(), false),
        None => {
            let root = bundle.root_dir(&dir);
            first_root.insert(source.clone(), root.clone());
            (root, true)
        }
    };
    Ok(ContainerPlan {
        section,
        index,
        location: format!("{section}[{index}]"),
        dir,
        image: entry.image.clone(),
        source,
        bundle,
        root,
        extracts,
    })
}
