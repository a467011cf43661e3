//! Writing each planned section of the root filesystem into a sink, laid out
//! exactly as linuxkit lays it out (reference Part B).

use std::collections::BTreeMap;
use std::io;
use std::sync::Mutex;

use kiln_shared::reference::expand;
use kiln_shared::Spec;

use super::apkdb;
use super::cancel::{Cancel, CancelSink};
use super::files::{self, SourceRoots};
use super::kernel::KernelPicker;
use super::metadata;
use super::ocivolume;
use super::plan::{ContainerPlan, Images, Section};
use crate::engine::flatten::{self, FlattenOptions, LayerSource, Role};
use crate::engine::fs::{Entry, Kind, Sink, LINUXKIT_EPOCH};
use crate::engine::sbom;
use crate::engine::store::Store;

/// Everything the sections are written from.
pub struct Inputs<'a> {
    pub spec: &'a Spec,
    pub images: &'a Images,
    pub store: &'a Store,
    pub roots: SourceRoots<'a>,
    pub flatten: FlattenOptions,
    pub cancel: Cancel,
    /// Each init image's apk database, as captured while it was written.
    pub apk_dbs: Mutex<BTreeMap<usize, Option<Vec<u8>>>>,
}

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error(transparent)]
    Flatten(#[from] flatten::FlattenError),
    #[error(transparent)]
    Files(#[from] files::FilesError),
    #[error("kernel image {image}: {message}")]
    Kernel { image: String, message: String },
    #[error("no resolved image for `{0}`")]
    Unresolved(String),
    #[error("volume {name}: {message}")]
    Volume { name: String, message: String },
    #[error("writing {location}: {error}")]
    Write { location: String, error: io::Error },
    #[error("the build was cancelled")]
    Cancelled,
}

/// Writes one section, stopping early when the build is cancelled.
pub fn write_section(
    inputs: &Inputs<'_>,
    section: &Section,
    sink: &mut dyn Sink,
) -> Result<(), RootfsError> {
    write_part(inputs, Part::Whole(section), sink)
}

/// A piece of a section that the initrd caches on its own: a container's
/// image root and its bundle files (`config.json`, `runtime.json`) change
/// for different reasons, so a changed setting recompresses only the
/// bundle. Written one after the other, the parts of a section are the
/// section.
#[derive(Debug, Clone, Copy)]
pub enum Part<'s> {
    Whole(&'s Section),
    ContainerRoot(&'s ContainerPlan),
    ContainerBundle(&'s ContainerPlan),
}

impl<'s> Part<'s> {
    /// The parts of `section`, in stream order.
    pub fn of(section: &'s Section) -> Vec<Part<'s>> {
        match section {
            Section::Container(plan) => {
                vec![Part::ContainerRoot(plan), Part::ContainerBundle(plan)]
            }
            other => vec![Part::Whole(other)],
        }
    }
}

/// Writes one part, stopping early when the build is cancelled.
pub fn write_part(
    inputs: &Inputs<'_>,
    part: Part<'_>,
    sink: &mut dyn Sink,
) -> Result<(), RootfsError> {
    if inputs.cancel.is_cancelled() {
        return Err(RootfsError::Cancelled);
    }
    let mut guarded = CancelSink::new(sink, &inputs.cancel);
    let result = match part {
        Part::Whole(section) => write_section_unguarded(inputs, section, &mut guarded),
        Part::ContainerRoot(plan) => container_root(inputs, plan, &mut guarded),
        Part::ContainerBundle(plan) => container_bundle(plan, &mut guarded),
    };
    if result.is_err() && inputs.cancel.is_cancelled() {
        return Err(RootfsError::Cancelled);
    }
    result
}

fn write_section_unguarded(
    inputs: &Inputs<'_>,
    section: &Section,
    sink: &mut dyn Sink,
) -> Result<(), RootfsError> {
    match section {
        Section::Kernel => kernel(inputs, sink),
        Section::Init(i) => init(inputs, *i, sink),
        Section::Volume(i) => volume(inputs, *i, sink),
        Section::Container(plan) => {
            container_root(inputs, plan, sink)?;
            container_bundle(plan, sink)
        }
        Section::Files => {
            let render = |format: &str| match format {
                "json" => metadata::to_json(inputs.spec),
                _ => metadata::to_yaml(inputs.spec),
            };
            let ids = kiln_shared::ids::IdTable::for_specs([inputs.spec]);
            files::emit(inputs.spec, &ids, &inputs.roots, &render, sink)?;
            Ok(())
        }
        Section::Sbom(bytes) => {
            // As linuxkit writes it: root, 0644, the fixed mtime and no
            // provenance records.
            let mut e = Entry::new(sbom::SBOM_FILE, Kind::File, 0o644, LINUXKIT_EPOCH);
            e.size = bytes.len() as u64;
            sink.add(&e, &mut bytes.as_slice())
                .map_err(|error| RootfsError::Write {
                    location: section.location(),
                    error,
                })
        }
    }
}

fn extract(
    inputs: &Inputs<'_>,
    image: &str,
    role: Role,
    prefix: &str,
    location: &str,
    sink: &mut dyn Sink,
) -> Result<(), RootfsError> {
    let resolved = inputs
        .images
        .get(image)
        .ok_or_else(|| RootfsError::Unresolved(image.to_owned()))?;
    let layers = LayerSource::for_image(inputs.store, resolved);
    let source = expand(image);
    flatten::flatten(
        &layers,
        &inputs.flatten,
        role,
        prefix,
        (&source, location),
        sink,
    )?;
    Ok(())
}

/// An init image; after the last one, the merged apk database (B.4).
fn init(inputs: &Inputs<'_>, index: usize, sink: &mut dyn Sink) -> Result<(), RootfsError> {
    let image = &inputs.spec.init[index];
    let location = format!("init[{index}]");
    let mut capture = apkdb::Capture::new(sink);
    extract(inputs, image, Role::Init, "", &location, &mut capture)?;
    let db = capture.db.take();
    lock(&inputs.apk_dbs).insert(index, db);
    let last = inputs.spec.init.len() - 1;
    if index != last || last == 0 {
        return Ok(());
    }
    let mut dbs = Vec::new();
    for (i, image) in inputs.spec.init.iter().enumerate() {
        let known = lock(&inputs.apk_dbs).get(&i).cloned();
        let db = match known {
            Some(db) => db,
            // Not written in this build (its initrd member was cached):
            // read the image again for its database only.
            None => {
                let mut only = apkdb::Capture::only();
                extract(
                    inputs,
                    image,
                    Role::Init,
                    "",
                    &format!("init[{i}]"),
                    &mut only,
                )?;
                lock(&inputs.apk_dbs).insert(i, only.db.clone());
                only.db
            }
        };
        dbs.extend(db);
    }
    if let Some((entry, data)) = apkdb::merged(&dbs) {
        sink.add(&entry, &mut data.as_slice())
            .map_err(|error| RootfsError::Write {
                location: "init".into(),
                error,
            })?;
    }
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn kernel(inputs: &Inputs<'_>, sink: &mut dyn Sink) -> Result<(), RootfsError> {
    let Some(kernel) = &inputs.spec.kernel else {
        return Ok(());
    };
    let image = kernel.image.clone().unwrap_or_default();
    let source = expand(&image);
    let fail = |message: String| RootfsError::Kernel {
        image: source.clone(),
        message,
    };
    let mut picker = KernelPicker::new(kernel, &source, &inputs.flatten, sink);
    let result = extract(inputs, &image, Role::Kernel, "", "kernel", &mut picker);
    if let Some(e) = picker.tar_error.take() {
        return Err(e.into());
    }
    result?;
    if !picker.found_kernel {
        return Err(fail("did not find kernel in kernel image".into()));
    }
    if let Some(tar) = picker.expected_tar() {
        if !picker.found_tar {
            return Err(fail(format!(
                "did not find kernel tar `{tar}` in kernel image"
            )));
        }
    }
    Ok(())
}

fn dir_entry(path: &str, source: &str, location: &str) -> Entry {
    let mut e = Entry::new(path, Kind::Dir, 0o755, LINUXKIT_EPOCH);
    e.provenance
        .insert(flatten::SOURCE_RECORD.into(), source.into());
    e.provenance
        .insert(flatten::LOCATION_RECORD.into(), location.into());
    e
}

fn file_entry(path: &str, bytes: &[u8], source: &str, location: &str) -> Entry {
    let mut e = dir_entry(path, source, location);
    e.kind = Kind::File;
    e.mode = 0o644;
    e.size = bytes.len() as u64;
    e
}

/// Writes the directory headers of every component of `path`.
fn prefix_dirs(path: &str, source: &str, location: &str, sink: &mut dyn Sink) -> io::Result<()> {
    let mut end = 0;
    for part in path.split('/') {
        end += part.len();
        sink.add(&dir_entry(&path[..end], source, location), &mut io::empty())?;
        end += 1;
    }
    Ok(())
}

fn volume(inputs: &Inputs<'_>, index: usize, sink: &mut dyn Sink) -> Result<(), RootfsError> {
    let volume = &inputs.spec.volumes[index];
    let name = volume.name.clone().unwrap_or_default();
    let location = format!("volume[{index}]");
    let base = format!("containers/volumes/{name}");
    let write = |error| RootfsError::Write {
        location: location.clone(),
        error,
    };
    let image = volume.image.clone().filter(|i| !i.is_empty());
    match (&image, volume.format) {
        (Some(image), Some(kiln_shared::model::VolumeFormat::Oci)) => {
            let oci_err = |e: ocivolume::OciVolumeError| RootfsError::Volume {
                name: name.clone(),
                message: e.to_string(),
            };
            let resolved = inputs
                .images
                .get(image)
                .ok_or_else(|| RootfsError::Unresolved(image.clone()))?;
            let wanted = ocivolume::platforms(volume.platforms.as_deref().unwrap_or_default())
                .map_err(oci_err)?;
            let selection =
                ocivolume::select(inputs.store, image, resolved, &wanted).map_err(oci_err)?;
            let lower = format!("{base}/lower");
            prefix_dirs(&lower, &expand(image), &location, sink).map_err(write)?;
            ocivolume::write(inputs.store, image, &selection, &lower, &location, sink)
                .map_err(oci_err)?;
        }
        (Some(image), _) => {
            let source = image.clone();
            prefix_dirs(&format!("{base}/lower"), &source, &location, sink).map_err(write)?;
            extract(
                inputs,
                image,
                Role::Volume,
                &format!("{base}/lower"),
                &location,
                sink,
            )?;
        }
        (None, _) => {
            prefix_dirs(&format!("{base}/lower"), "empty", &location, sink).map_err(write)?;
        }
    }
    for dir in ["tmp", "merged"] {
        let e = dir_entry(&format!("{base}/{dir}"), "linuxkit.volumes", &location);
        sink.add(&e, &mut io::empty()).map_err(write)?;
    }
    Ok(())
}

/// The container's image root, or for a later user of a shared image,
/// only the bundle directory.
fn container_root(
    inputs: &Inputs<'_>,
    plan: &ContainerPlan,
    sink: &mut dyn Sink,
) -> Result<(), RootfsError> {
    let (source, location) = (plan.source.as_str(), plan.location.as_str());
    let write = |error| RootfsError::Write {
        location: location.to_owned(),
        error,
    };
    if plan.extracts {
        let own_root = plan.bundle.root_dir(&plan.dir);
        prefix_dirs(&own_root, source, location, sink).map_err(write)?;
        extract(
            inputs,
            &plan.image,
            Role::Container,
            &own_root,
            location,
            sink,
        )
    } else {
        prefix_dirs(&plan.dir, source, location, sink).map_err(write)
    }
}

/// `config.json`, the mount-point directories and `runtime.json`.
fn container_bundle(plan: &ContainerPlan, sink: &mut dyn Sink) -> Result<(), RootfsError> {
    let (source, location) = (plan.source.as_str(), plan.location.as_str());
    let write = |error| RootfsError::Write {
        location: location.to_owned(),
        error,
    };
    let readonly = plan.bundle.readonly();
    let config = plan.bundle.config_json();
    let runtime = plan.bundle.runtime_json(&plan.dir, &plan.root);
    let mut add_file = |name: &str, bytes: &[u8]| {
        let e = file_entry(&format!("{}/{name}", plan.dir), bytes, source, location);
        sink.add(&e, &mut &bytes[..])
    };
    add_file("config.json", &config).map_err(write)?;
    if readonly {
        if !plan.extracts {
            let e = dir_entry(&format!("{}/rootfs", plan.dir), source, location);
            sink.add(&e, &mut io::empty()).map_err(write)?;
        }
    } else {
        for dir in ["tmp", "rootfs"] {
            let e = dir_entry(&format!("{}/{dir}", plan.dir), source, location);
            sink.add(&e, &mut io::empty()).map_err(write)?;
        }
    }
    let e = file_entry(
        &format!("{}/runtime.json", plan.dir),
        &runtime,
        source,
        location,
    );
    sink.add(&e, &mut runtime.as_slice()).map_err(write)?;
    Ok(())
}
