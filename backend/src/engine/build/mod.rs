//! Building a spec: resolving its images, planning the root filesystem and
//! writing every requested format. The CLI and the service both call
//! [`resolve_images`] and then [`write_outputs`].

pub mod apkdb;
pub mod cancel;
pub mod disk;
pub mod files;
pub mod kernel;
pub mod metadata;
mod oci;
pub mod ocivolume;
pub mod output;
pub mod plan;
pub mod rootfs;
pub mod trust;

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kiln_shared::Spec;

pub use self::disk::BootOptions;
use self::files::{missing_sources, SourceRoots};
use self::oci::HashingWriter;
use self::output::InitrdOptions;
use self::plan::{Images, Section};
use self::rootfs::Inputs;
use crate::engine::flatten::FlattenOptions;
use crate::engine::formats::format::Format;
use crate::engine::formats::tar::TarSink;
use crate::engine::fs::{Entry, Kind, Sink, LINUXKIT_EPOCH};
use crate::engine::reference::Reference;
use crate::engine::registry::{self, PullError, RegistryConfig};
use crate::engine::sbom::{self, SbomError, SbomOptions};
use crate::engine::store::{Platform, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("image `{image}`: {message}")]
    BadImage { image: String, message: String },
    #[error(transparent)]
    Pull(#[from] PullError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Plan(#[from] plan::PlanError),
    #[error(transparent)]
    Rootfs(#[from] rootfs::RootfsError),
    #[error(transparent)]
    Output(#[from] output::OutputError),
    #[error(transparent)]
    Sbom(#[from] SbomError),
    #[error(transparent)]
    Boot(#[from] crate::engine::boot::BootError),
    #[error("files[{index}]: source {} does not exist (mark the entry `optional: true` to skip it)", path.display())]
    MissingSource { index: usize, path: PathBuf },
    #[error("{}: {error}", path.display())]
    Io { path: PathBuf, error: io::Error },
    #[error("content trust refused the build:\n  {}", .0.join("\n  "))]
    Untrusted(Vec<String>),
    #[error("disabling content trust is not permitted: the trust policy does not set `allow_disable_content_trust = true`")]
    DisableNotPermitted,
}

/// Where images come from.
#[derive(Debug, Clone)]
pub enum ImageSource {
    /// The store only; a missing image is an error naming it.
    Offline,
    /// The store, pulling what is missing (or everything, with `pull_all`).
    Registry {
        config: Box<RegistryConfig>,
        pull_all: bool,
    },
}

/// The build's spec digest, lower-case hex: SHA-256 of the merged,
/// validated spec as the metadata file writes it in YAML (linuxkit's
/// section order, expanded image names, no `trust`). The one definition
/// `kiln build`, `kiln serve`, provenance and measurement manifests use
/// (docs/measurements.md).
pub fn spec_digest(spec: &Spec) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(metadata::to_yaml(spec)))
}

/// Every image string the spec names, in order, without repeats.
pub fn image_strings(spec: &Spec) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |s: &str| {
        if !s.is_empty() && !out.iter().any(|o| o == s) {
            out.push(s.to_owned());
        }
    };
    if let Some(image) = spec.kernel.as_ref().and_then(|k| k.image.as_deref()) {
        add(image);
    }
    spec.init.iter().for_each(|i| add(i));
    for e in spec
        .onboot
        .iter()
        .chain(&spec.onshutdown)
        .chain(&spec.services)
    {
        add(&e.image);
    }
    for v in &spec.volumes {
        if let Some(image) = v.image.as_deref() {
            add(image);
        }
    }
    out
}

/// Resolves every image of `spec` for `platform`, from the store or a
/// registry, keyed by the string as written in the spec.
pub async fn resolve_images(
    spec: &Spec,
    platform: &Platform,
    store: &Store,
    source: &ImageSource,
) -> Result<Images, BuildError> {
    let strings = image_strings(spec);
    let mut references = Vec::new();
    for s in &strings {
        let r = Reference::parse(s).map_err(|e| BuildError::BadImage {
            image: s.clone(),
            message: e.to_string(),
        })?;
        references.push(r.with_default_tag());
    }
    let resolved = match source {
        ImageSource::Offline => store.resolve(&references, platform)?,
        ImageSource::Registry {
            config,
            pull_all: true,
        } => {
            registry::pull(&references, &platform.clone().into(), store, config).await?;
            store.resolve(&references, platform)?
        }
        ImageSource::Registry {
            config,
            pull_all: false,
        } => registry::pull_missing(&references, platform, store, config).await?,
    };
    let images = strings.into_iter().zip(resolved).collect::<HashMap<_, _>>();
    if let ImageSource::Registry { config, .. } = source {
        pull_oci_volumes(spec, &images, store, config).await?;
    }
    Ok(images)
}

/// `format: oci` volumes copy the platforms they list (all, by default),
/// not only the build's: pulls whatever of those the store lacks.
async fn pull_oci_volumes(
    spec: &Spec,
    images: &Images,
    store: &Store,
    config: &RegistryConfig,
) -> Result<(), BuildError> {
    for v in &spec.volumes {
        let Some(image) = v.image.as_deref().filter(|i| !i.is_empty()) else {
            continue;
        };
        let (Some(kiln_shared::model::VolumeFormat::Oci), Some(resolved)) =
            (v.format, images.get(image))
        else {
            continue;
        };
        let wanted =
            ocivolume::platforms(v.platforms.as_deref().unwrap_or_default()).map_err(|e| {
                BuildError::BadImage {
                    image: image.to_owned(),
                    message: e.to_string(),
                }
            })?;
        if ocivolume::complete(store, image, resolved, &wanted) {
            continue;
        }
        let selection = if wanted.is_empty() {
            registry::PlatformSelection::All
        } else {
            registry::PlatformSelection::Only(wanted)
        };
        registry::pull(
            std::slice::from_ref(&resolved.reference),
            &selection,
            store,
            config,
        )
        .await?;
    }
    Ok(())
}

/// What a build writes, and how.
pub struct BuildRequest<'a> {
    pub spec: &'a Spec,
    pub formats: &'a [Format],
    pub dir: &'a Path,
    pub name: &'a str,
    pub platform: &'a Platform,
    /// Relative `files[].source` paths resolve against this directory.
    pub cwd: &'a Path,
    /// `~/` in `files[].source` expands to this directory.
    pub home: Option<&'a Path>,
    pub initrd: InitrdOptions,
    pub flatten: FlattenOptions,
    /// Stops the writers early when it fires.
    pub cancel: cancel::Cancel,
    /// Settings of the bootable formats (disk size, boot loader images).
    pub boot: BootOptions,
    /// Append `sbom.spdx.json` to the root filesystem, as linuxkit does
    /// unless `--no-sbom`.
    pub sbom: bool,
}

/// One written file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    pub path: PathBuf,
    pub size: u64,
    /// Lower-case hex.
    pub sha256: String,
}

fn inputs<'a>(
    req: &'a BuildRequest<'a>,
    store: &'a Store,
    images: &'a Images,
) -> Result<(Inputs<'a>, Vec<Section>), BuildError> {
    let roots = SourceRoots {
        cwd: req.cwd,
        home: req.home,
    };
    if let Some((index, path)) = missing_sources(req.spec, &roots).into_iter().next() {
        return Err(BuildError::MissingSource { index, path });
    }
    let mut sections = plan::plan(req.spec, images, store)?;
    if req.sbom {
        let options = SbomOptions::new(req.name)?;
        let document = sbom::document(req.spec, images, store, &options)?;
        sections.push(Section::Sbom(Arc::new(document)));
    }
    Ok((
        Inputs {
            spec: req.spec,
            images,
            store,
            roots,
            flatten: req.flatten.clone(),
            cancel: req.cancel.clone(),
            apk_dbs: Default::default(),
        },
        sections,
    ))
}

/// Writes every requested format into `req.dir`, returning the files with
/// their sizes and digests.
pub fn write_outputs(
    req: &BuildRequest<'_>,
    store: &Store,
    images: &Images,
) -> Result<Vec<Artifact>, BuildError> {
    let (inputs, sections) = inputs(req, store, images)?;
    let io_at = |path: &Path| {
        let path = path.to_owned();
        move |error| BuildError::Io { path, error }
    };
    fs::create_dir_all(req.dir).map_err(io_at(req.dir))?;
    let mut written = Vec::new();
    // Artifacts whose digest was computed while they were written.
    let mut known: Vec<Artifact> = Vec::new();
    let boot = disk::Context {
        inputs: &inputs,
        sections: &sections,
        initrd: &req.initrd,
        boot: &req.boot,
        arch: &req.platform.architecture,
        dir: req.dir,
        name: req.name,
    };
    let mut shared = disk::Shared::default();
    for format in req.formats {
        match format {
            Format::Uki
            | Format::RawEfi
            | Format::Qcow2Efi
            | Format::Vhd
            | Format::DynamicVhd
            | Format::Vmdk
            | Format::IsoEfi
            | Format::IsoBios
            | Format::RawBios => written.extend(boot.write(*format, &mut shared)?),
            Format::Tar | Format::Docker => {
                let path = format.outputs(req.dir, req.name).remove(0);
                let tmp = path.with_extension("kiln-tmp");
                let file = File::create(&tmp).map_err(io_at(&tmp))?;
                let mut w = output::write_tar(
                    &inputs,
                    &sections,
                    *format == Format::Docker,
                    BufWriter::new(file),
                )?;
                w.flush().map_err(io_at(&tmp))?;
                drop(w);
                fs::rename(&tmp, &path).map_err(io_at(&path))?;
                written.push(path);
            }
            Format::KernelInitrd => {
                let out = output::write_kernel_initrd(
                    &inputs,
                    &sections,
                    &req.initrd,
                    req.dir,
                    req.name,
                )?;
                written.extend(out.kernel);
                known.push(Artifact {
                    path: out.initrd.clone(),
                    size: out.initrd_size,
                    sha256: out.initrd_sha256,
                });
                written.push(out.initrd);
                written.extend(out.cmdline);
            }
            Format::KernelSquashfs | Format::KernelIso => {
                let kind = if *format == Format::KernelIso {
                    output::RootfsImage::Iso
                } else {
                    output::RootfsImage::Squashfs
                };
                let out = output::write_kernel_rootfs(&inputs, &sections, kind, req.dir, req.name)?;
                written.extend(out.kernel);
                written.extend(out.cmdline);
                written.push(out.image);
            }
            Format::TarKernelInitrd => {
                let path = format.outputs(req.dir, req.name).remove(0);
                tar_kernel_initrd(&inputs, &sections, &req.initrd, req.dir, req.name, &path)?;
                written.push(path);
            }
            Format::Oci => {
                let path = format.outputs(req.dir, req.name).remove(0);
                oci::write(&inputs, &sections, req.platform, &path)?;
                written.push(path);
            }
        }
    }
    written
        .iter()
        .map(|p| match known.iter().find(|a| &a.path == p) {
            Some(a) => Ok(a.clone()),
            None => artifact_of(p),
        })
        .collect()
}

/// Writes the `tar` (or, with `dockerfile`, `docker`) stream to `out`.
pub fn write_stream<W: Write>(
    req: &BuildRequest<'_>,
    store: &Store,
    images: &Images,
    dockerfile: bool,
    out: W,
) -> Result<W, BuildError> {
    let (inputs, sections) = inputs(req, store, images)?;
    Ok(output::write_tar(&inputs, &sections, dockerfile, out)?)
}

/// The size and sha256 of a written file.
pub fn artifact_of(path: &Path) -> Result<Artifact, BuildError> {
    let io_err = |error| BuildError::Io {
        path: path.to_owned(),
        error,
    };
    let mut f = File::open(path).map_err(io_err)?;
    let mut hashing = HashingWriter::new(io::sink());
    io::copy(&mut f, &mut hashing).map_err(io_err)?;
    Ok(Artifact {
        path: path.to_owned(),
        size: hashing.len,
        sha256: hex::encode(sha2::Digest::finalize(hashing.hasher)),
    })
}

/// `tar-kernel-initrd`: a tar of `kernel`, `initrd.img` and `cmdline`,
/// each only when non-empty; the microcode is not prepended.
fn tar_kernel_initrd(
    inputs: &Inputs<'_>,
    sections: &[Section],
    opts: &InitrdOptions,
    dir: &Path,
    name: &str,
    path: &Path,
) -> Result<(), BuildError> {
    let scratch = dir.join(format!(".{name}-tki-{}", std::process::id()));
    let io_err = |error| BuildError::Io {
        path: path.to_owned(),
        error,
    };
    fs::create_dir_all(&scratch).map_err(io_err)?;
    let result = (|| {
        let out = output::write_kernel_initrd(inputs, sections, opts, &scratch, "x")?;
        let write = || -> io::Result<()> {
            let mut sink = TarSink::new(BufWriter::new(File::create(path)?));
            let mut add = |entry_name: &str, file: &Path| -> io::Result<()> {
                let len = fs::metadata(file)?.len();
                if len == 0 {
                    return Ok(());
                }
                let mut e = Entry::new(entry_name, Kind::File, 0o644, LINUXKIT_EPOCH);
                e.size = len;
                sink.add(&e, &mut File::open(file)?)
            };
            if let Some(k) = &out.kernel {
                add("kernel", k)?;
            }
            add("initrd.img", &out.initrd)?;
            if let Some(c) = &out.cmdline {
                add("cmdline", c)?;
            }
            sink.finish()?.flush()
        };
        write().map_err(io_err)
    })();
    let _ = fs::remove_dir_all(&scratch);
    result
}
