//! `kiln build`: build images from spec files, flag-compatible with
//! `linuxkit build` where the flags apply.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use kiln_backend::engine::build::files::{missing_sources, SourceRoots};
use kiln_backend::engine::build::output::{self, InitrdOptions};
use kiln_backend::engine::build::plan::{self, Images};
use kiln_backend::engine::build::rootfs::Inputs;
use kiln_backend::engine::flatten::FlattenOptions;
use kiln_backend::engine::formats::format::Format;
use kiln_backend::engine::formats::tar::TarSink;
use kiln_backend::engine::fs::{Entry, Kind, Sink, LINUXKIT_EPOCH};
use kiln_backend::engine::reference::Reference;
use kiln_backend::engine::registry;
use kiln_backend::engine::store::{self, Platform, Store};
use kiln_shared::{Source, Spec};
use sha2::{Digest as _, Sha256};

use super::cache::config::{registry_config, Flags};
use super::exit;

/// Build an image from one or more spec files, merged as linuxkit merges
/// them. Outputs are bit-reproducible: the same spec and image digests give
/// the same bytes.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output format; repeatable or comma-separated [default: kernel+initrd,
    /// or tar with -o].
    #[arg(long = "format", short = 'f', value_name = "FORMAT")]
    formats: Vec<String>,
    /// Directory for the outputs.
    #[arg(long, default_value = ".", value_name = "DIR")]
    dir: PathBuf,
    /// Base name of the outputs [default: the last spec's file name without
    /// its extension, or `moby` for standard input].
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Write a streamable format (tar, docker) to this file, or `-` for
    /// standard output.
    #[arg(short = 'o', value_name = "FILE")]
    output: Option<PathBuf>,
    /// Disk size for VM-built formats (accepted for compatibility; the
    /// formats kiln writes do not use it).
    #[arg(long, value_name = "SIZE")]
    size: Option<String>,
    /// Pull every image even when the store has it.
    #[arg(long)]
    pull: bool,
    /// Never contact a registry; build from the store only.
    #[arg(long)]
    offline: bool,
    /// Target architecture: amd64 or arm64 [default: this machine's].
    #[arg(long, value_name = "ARCH")]
    arch: Option<String>,
    /// Image store [default: $KILN_HOME/cache].
    #[arg(long, value_name = "DIR")]
    cache: Option<PathBuf>,
    /// Do not write an SBOM (kiln writes none yet, so this changes nothing).
    #[arg(long)]
    no_sbom: bool,
    /// linuxkit's flag to read images from a Docker daemon; kiln needs no
    /// Docker and refuses it.
    #[arg(long)]
    docker: bool,
    /// A registry mirror, `URL` or `REGISTRY=URL`; repeatable.
    #[arg(long = "mirror", value_name = "[REGISTRY=]URL")]
    mirrors: Vec<String>,
    /// A registry that may be used over plain HTTP; repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    insecure_registries: Vec<String>,
    /// Spec files; `-` reads standard input.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
}

struct Failure {
    code: u8,
    message: String,
}

fn usage(message: impl std::fmt::Display) -> Failure {
    Failure {
        code: exit::USAGE,
        message: message.to_string(),
    }
}

fn failed(message: impl std::fmt::Display) -> Failure {
    Failure {
        code: exit::INVALID,
        message: message.to_string(),
    }
}

pub fn run(args: Args) -> u8 {
    match build(args) {
        Ok(()) => exit::OK,
        Err(f) => {
            if !f.message.is_empty() {
                eprintln!("kiln: {}", f.message);
            }
            f.code
        }
    }
}

fn build(args: Args) -> Result<(), Failure> {
    let started = Instant::now();
    if args.docker {
        return Err(usage(
            "--docker is not supported: kiln reads images from registries and its own store, never from a Docker daemon",
        ));
    }
    let to_stream = args.output.is_some();
    let formats = Format::parse_list(&args.formats, to_stream).map_err(usage)?;
    let platform = match args.arch.as_deref() {
        None => Platform::host(),
        Some(arch @ ("amd64" | "arm64")) => Platform::linux(arch),
        Some(other) => {
            return Err(usage(format!(
                "unsupported --arch `{other}`; use amd64 or arm64"
            )))
        }
    };
    let spec = read_specs(&args.files)?;
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| default_name(&args.files));

    let store = open_store(args.cache.as_deref())?;
    let images = resolve(&args, &spec, &platform, &store)?;

    let cwd = std::env::current_dir().map_err(|e| usage(format!("no working directory: {e}")))?;
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let roots = SourceRoots {
        cwd: &cwd,
        home: home.as_deref(),
    };
    let missing = missing_sources(&spec, &roots);
    if let Some((i, path)) = missing.first() {
        return Err(failed(format!(
            "files[{i}]: source {} does not exist (mark the entry `optional: true` to skip it)",
            path.display()
        )));
    }
    let sections = plan::plan(&spec, &images, &store).map_err(failed)?;
    let inputs = Inputs {
        spec: &spec,
        images: &images,
        store: &store,
        roots,
        flatten: FlattenOptions::default(),
    };

    if let Some(out) = &args.output {
        let dockerfile = formats[0] == Format::Docker;
        if out.as_os_str() == "-" {
            let stdout = io::stdout().lock();
            output::write_tar(&inputs, &sections, dockerfile, BufWriter::new(stdout))
                .and_then(|mut w| w.flush().map_err(|error| write_err(out, error)))
                .map_err(failed)?;
            eprintln!(
                "kiln: wrote {} to standard output in {:.2} s",
                formats[0],
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        write_tar_file(&inputs, &sections, dockerfile, out)?;
        return summary(std::slice::from_ref(out), started);
    }

    fs::create_dir_all(&args.dir)
        .map_err(|e| usage(format!("cannot create {}: {e}", args.dir.display())))?;
    let mut written = Vec::new();
    let initrd_opts = InitrdOptions {
        member_cache: store::kiln_home().map(|h| h.join("initrd-members")),
        ..InitrdOptions::default()
    };
    for format in &formats {
        match format {
            Format::Tar | Format::Docker => {
                let path = format.outputs(&args.dir, &name).remove(0);
                write_tar_file(&inputs, &sections, *format == Format::Docker, &path)?;
                written.push(path);
            }
            Format::KernelInitrd => {
                let out =
                    output::write_kernel_initrd(&inputs, &sections, &initrd_opts, &args.dir, &name)
                        .map_err(failed)?;
                written.extend(out.kernel);
                written.push(out.initrd);
                written.extend(out.cmdline);
            }
            Format::TarKernelInitrd => {
                let path = format.outputs(&args.dir, &name).remove(0);
                tar_kernel_initrd(&inputs, &sections, &initrd_opts, &args.dir, &name, &path)?;
                written.push(path);
            }
            Format::Oci => {
                let path = format.outputs(&args.dir, &name).remove(0);
                oci_layout(&inputs, &sections, &platform, &path)?;
                written.push(path);
            }
        }
    }
    summary(&written, started)
}

fn write_err(path: &Path, error: io::Error) -> kiln_backend::engine::build::rootfs::RootfsError {
    kiln_backend::engine::build::rootfs::RootfsError::Write {
        location: path.display().to_string(),
        error,
    }
}

/// Reads and validates the spec files, merged in order.
fn read_specs(files: &[PathBuf]) -> Result<Spec, Failure> {
    let mut texts = Vec::new();
    for path in files {
        let (name, text) = if path.as_os_str() == "-" {
            let mut text = String::new();
            io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| usage(format!("cannot read standard input: {e}")))?;
            ("<stdin>".to_owned(), text)
        } else {
            let text = fs::read_to_string(path)
                .map_err(|e| usage(format!("cannot read {}: {e}", path.display())))?;
            (path.display().to_string(), text)
        };
        texts.push((name, text));
    }
    let sources: Vec<Source<'_>> = texts
        .iter()
        .map(|(name, text)| Source { name, text })
        .collect();
    let validation = kiln_shared::validate_merged(&sources);
    for d in &validation.diagnostics {
        eprintln!("{d}");
    }
    validation
        .spec
        .ok_or_else(|| failed("the spec has errors; nothing was built"))
}

/// linuxkit's default output name: the last spec's base name without its
/// extension, or `moby` for standard input.
fn default_name(files: &[PathBuf]) -> String {
    match files.last() {
        Some(p) if p.as_os_str() != "-" => p
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "moby".into()),
        _ => "moby".into(),
    }
}

fn open_store(cache: Option<&Path>) -> Result<Store, Failure> {
    let dir = match cache {
        Some(dir) => dir.to_owned(),
        None => store::kiln_home()
            .map(|h| store::default_store_dir(&h))
            .ok_or_else(|| usage("neither --cache, KILN_HOME nor HOME is set"))?,
    };
    Store::open(&dir).map_err(|e| usage(format!("cannot open the store {}: {e}", dir.display())))
}

/// Every image string in the spec, in order, without repeats.
fn image_strings(spec: &Spec) -> Vec<String> {
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

fn resolve(
    args: &Args,
    spec: &Spec,
    platform: &Platform,
    store: &Store,
) -> Result<Images, Failure> {
    let strings = image_strings(spec);
    let mut references = Vec::new();
    for s in &strings {
        let r = Reference::parse(s).map_err(|e| failed(format!("image `{s}`: {e}")))?;
        references.push(r.with_default_tag());
    }
    let resolved = if args.offline {
        store.resolve(&references, platform).map_err(failed)?
    } else {
        let flags = Flags {
            mirrors: args.mirrors.clone(),
            insecure_registries: args.insecure_registries.clone(),
            jobs: None,
        };
        let home = store::kiln_home();
        let config_file = home.as_ref().map(|h| super::cache::config::default_path(h));
        let config = registry_config(config_file.as_deref(), &flags).map_err(usage)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| failed(format!("cannot start the async runtime: {e}")))?;
        if args.pull {
            runtime
                .block_on(registry::pull(
                    &references,
                    &platform.clone().into(),
                    store,
                    &config,
                ))
                .map_err(failed)?;
            store.resolve(&references, platform).map_err(failed)?
        } else {
            runtime
                .block_on(registry::pull_missing(
                    &references,
                    platform,
                    store,
                    &config,
                ))
                .map_err(failed)?
        }
    };
    Ok(strings.into_iter().zip(resolved).collect::<HashMap<_, _>>())
}

fn write_tar_file(
    inputs: &Inputs<'_>,
    sections: &[plan::Section],
    dockerfile: bool,
    path: &Path,
) -> Result<(), Failure> {
    let tmp = path.with_extension("kiln-tmp");
    let file =
        File::create(&tmp).map_err(|e| usage(format!("cannot create {}: {e}", tmp.display())))?;
    let mut w =
        output::write_tar(inputs, sections, dockerfile, BufWriter::new(file)).map_err(failed)?;
    w.flush()
        .map_err(|e| failed(format!("{}: {e}", tmp.display())))?;
    drop(w);
    fs::rename(&tmp, path).map_err(|e| failed(format!("{}: {e}", path.display())))
}

/// `tar-kernel-initrd`: a tar of `kernel`, `initrd.img`, `cmdline` and
/// `ucode.cpio`, each only when non-empty; the microcode is not prepended.
fn tar_kernel_initrd(
    inputs: &Inputs<'_>,
    sections: &[plan::Section],
    opts: &InitrdOptions,
    dir: &Path,
    name: &str,
    path: &Path,
) -> Result<(), Failure> {
    let scratch = dir.join(format!(".{name}-tki-{}", std::process::id()));
    fs::create_dir_all(&scratch).map_err(|e| failed(format!("{}: {e}", scratch.display())))?;
    let result = (|| {
        let out =
            output::write_kernel_initrd(inputs, sections, opts, &scratch, "x").map_err(failed)?;
        let file = File::create(path)
            .map_err(|e| usage(format!("cannot create {}: {e}", path.display())))?;
        let mut sink = TarSink::new(BufWriter::new(file));
        let mut add = |entry_name: &str, file: &Path| -> io::Result<()> {
            let len = fs::metadata(file)?.len();
            if len == 0 {
                return Ok(());
            }
            let mut e = Entry::new(entry_name, Kind::File, 0o644, LINUXKIT_EPOCH);
            e.size = len;
            sink.add(&e, &mut File::open(file)?)
        };
        let io = |e: io::Error| failed(format!("{}: {e}", path.display()));
        if let Some(k) = &out.kernel {
            add("kernel", k).map_err(io)?;
        }
        add("initrd.img", &out.initrd).map_err(io)?;
        if let Some(c) = &out.cmdline {
            add("cmdline", c).map_err(io)?;
        }
        let mut w = sink.finish().map_err(io)?;
        w.flush().map_err(io)
    })();
    let _ = fs::remove_dir_all(&scratch);
    result
}

/// `oci`: an OCI image layout, as a tar, holding the root filesystem as one
/// uncompressed layer.
fn oci_layout(
    inputs: &Inputs<'_>,
    sections: &[plan::Section],
    platform: &Platform,
    path: &Path,
) -> Result<(), Failure> {
    let io = |e: io::Error| failed(format!("{}: {e}", path.display()));
    let layer_tmp = path.with_extension("layer-tmp");
    let hashing = HashingWriter {
        inner: BufWriter::new(File::create(&layer_tmp).map_err(io)?),
        hasher: Sha256::new(),
        len: 0,
    };
    let mut hashing = output::write_tar(inputs, sections, false, hashing).map_err(failed)?;
    hashing.inner.flush().map_err(io)?;
    let layer_digest = format!("sha256:{}", hex::encode(hashing.hasher.finalize_reset()));
    let layer_len = hashing.len;
    drop(hashing);

    let config = serde_json::json!({
        "architecture": platform.architecture,
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    });
    let config = serde_json::to_vec(&config).map_err(|e| failed(e.to_string()))?;
    let config_digest = format!("sha256:{}", hex::encode(Sha256::digest(&config)));
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer_len}],
    });
    let manifest = serde_json::to_vec(&manifest).map_err(|e| failed(e.to_string()))?;
    let manifest_digest = format!("sha256:{}", hex::encode(Sha256::digest(&manifest)));
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest.len(),
            "platform": {"architecture": platform.architecture, "os": "linux"},
        }],
    });
    let index = serde_json::to_vec(&index).map_err(|e| failed(e.to_string()))?;

    let file = File::create(path).map_err(io)?;
    let mut sink = TarSink::new(BufWriter::new(file));
    let bytes = |sink: &mut TarSink<_>, name: &str, data: &[u8]| -> io::Result<()> {
        let mut e = Entry::new(name, Kind::File, 0o644, LINUXKIT_EPOCH);
        e.size = data.len() as u64;
        sink.add(&e, &mut &data[..])
    };
    let blob = |d: &str| format!("blobs/sha256/{}", d.trim_start_matches("sha256:"));
    let result = (|| -> io::Result<()> {
        bytes(
            &mut sink,
            "oci-layout",
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )?;
        bytes(&mut sink, "index.json", &index)?;
        for dir in ["blobs", "blobs/sha256"] {
            sink.add(
                &Entry::new(dir, Kind::Dir, 0o755, LINUXKIT_EPOCH),
                &mut io::empty(),
            )?;
        }
        bytes(&mut sink, &blob(&config_digest), &config)?;
        bytes(&mut sink, &blob(&manifest_digest), &manifest)?;
        let mut e = Entry::new(blob(&layer_digest), Kind::File, 0o644, LINUXKIT_EPOCH);
        e.size = layer_len;
        sink.add(&e, &mut File::open(&layer_tmp)?)?;
        sink.finish()?.flush()
    })();
    let _ = fs::remove_file(&layer_tmp);
    result.map_err(io)
}

struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    len: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// One line: each output with its size and sha256, and the time taken.
fn summary(outputs: &[PathBuf], started: Instant) -> Result<(), Failure> {
    let mut parts = Vec::new();
    for path in outputs {
        let mut f = File::open(path).map_err(|e| failed(format!("{}: {e}", path.display())))?;
        let mut hashing = HashingWriter {
            inner: io::sink(),
            hasher: Sha256::new(),
            len: 0,
        };
        io::copy(&mut f, &mut hashing).map_err(|e| failed(format!("{}: {e}", path.display())))?;
        parts.push(format!(
            "{} ({} bytes, sha256:{})",
            path.display(),
            hashing.len,
            hex::encode(hashing.hasher.finalize())
        ));
    }
    eprintln!(
        "kiln: built {} in {:.2} s",
        parts.join(", "),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
