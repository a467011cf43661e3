//! `kiln build`: build images from spec files, flag-compatible with
//! `linuxkit build` where the flags apply.

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use kiln_backend::engine::boot;
use kiln_backend::engine::build::output::{self, InitrdOptions};
use kiln_backend::engine::build::plan::Images;
use kiln_backend::engine::build::trust::{BootLoader, TrustRecord};
use kiln_backend::engine::build::{
    self, Artifact, BootOptions, BuildError, BuildRequest, ImageSource,
};
use kiln_backend::engine::flatten::FlattenOptions;
use kiln_backend::engine::formats::format::Format;
use kiln_backend::engine::measure;
use kiln_backend::engine::provenance::{self, BuildRecord, ContentTrust, DEFAULT_BUILDER_ID};
use kiln_backend::engine::sbom::{self, SbomOptions};
use kiln_backend::engine::store::{self, Platform, Store};
use kiln_shared::{Source, Spec};
use kiln_signer::bundle::Bundle;
use kiln_signer::dsse::INTOTO_PAYLOAD_TYPE;
use kiln_signer::policy::TrustPolicy;
use kiln_signer::Signer;

use super::cache::config::{registry_config, FileConfig, Flags};
use super::exit;

/// Build an image from one or more spec files, merged as linuxkit merges
/// them. Outputs are bit-reproducible: the same spec and image digests give
/// the same bytes.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output format; repeatable or comma-separated [default: kernel+initrd,
    /// or tar with -o]. `--format help` lists the formats and what each
    /// writes.
    #[arg(long = "format", short = 'f', value_name = "FORMAT", long_help = format_help())]
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
    /// Disk size of the disk formats (raw-efi): `NNNM`, `NNNG`, or a bare
    /// number of GiB [default: just big enough].
    #[arg(long, value_name = "SIZE")]
    size: Option<String>,
    /// Image holding the systemd EFI stub (`linuxx64.efi.stub`, e.g. from
    /// Debian's systemd-boot-efi) the UKI formats are built on [default:
    /// `[build] efi_stub` in $KILN_HOME/config.toml].
    #[arg(long, value_name = "IMAGE")]
    efi_stub: Option<String>,
    /// Image holding ISOLINUX (`isolinux.bin`, `ldlinux.c32`,
    /// `isohdpfx.bin`, e.g. from Debian's isolinux and syslinux-common)
    /// for iso-bios and raw-bios [default: `[build] bios_loader` in
    /// $KILN_HOME/config.toml].
    #[arg(long, value_name = "IMAGE")]
    bios_loader: Option<String>,
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
    /// Write no SBOM: neither `sbom.spdx.json` as the root filesystem's
    /// last entry nor, with --sign-key/--signer-socket, NAME-sbom.spdx.json.
    #[arg(long)]
    no_sbom: bool,
    /// linuxkit's flag to read images from a Docker daemon; kiln needs no
    /// Docker and refuses it.
    #[arg(long)]
    docker: bool,
    /// A registry mirror, `URL` or `REGISTRY=URL`; repeatable.
    #[arg(long = "mirror", value_name = "[REGISTRY=]URL")]
    mirrors: Vec<String>,
    /// Trust policy (TOML) naming the keys each org's images must be signed
    /// with [default: $KILN_HOME/trust.toml when present].
    #[arg(long, value_name = "FILE")]
    trust_policy: Option<PathBuf>,
    /// Skip signature verification; allowed only when the trust policy sets
    /// `allow_disable_content_trust = true`.
    #[arg(long)]
    disable_content_trust: bool,
    /// A registry that may be used over plain HTTP; repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    insecure_registries: Vec<String>,
    /// Sign the build's SLSA provenance (every output's sha256, the spec,
    /// the image digests and the signatures verified) with this private
    /// key, into NAME-provenance.sigstore.json; it also signs the TPM
    /// measurement manifests (STEM-measurements.json.dsse).
    #[arg(long, value_name = "FILE", conflicts_with = "signer_socket")]
    sign_key: Option<PathBuf>,
    /// Sign the provenance through the signer daemon on this socket.
    #[arg(long, value_name = "PATH")]
    signer_socket: Option<PathBuf>,
    /// Also predict this PCR bank (sha1, sha384) in the measurement
    /// manifests of bootable outputs; sha256 always is. Repeatable.
    #[arg(long = "pcr-bank", value_name = "BANK")]
    pcr_banks: Vec<measure::bank::Bank>,
    /// gzip level of the initrd, 0 (stored) to 9: lower is faster, higher
    /// is smaller.
    #[arg(long, value_name = "LEVEL", default_value_t = output::DEFAULT_LEVEL,
          value_parser = clap::value_parser!(u32).range(0..=9))]
    compression_level: u32,
    /// Spec files; `-` reads standard input.
    #[arg(value_name = "FILE")]
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
    match run_build(args) {
        Ok(()) => exit::OK,
        Err(f) => {
            if !f.message.is_empty() {
                eprintln!("kiln: {}", f.message);
            }
            f.code
        }
    }
}

/// The `--format` long help: every format and what it writes.
fn format_help() -> String {
    let mut text = String::from(
        "Output format; repeatable or comma-separated [default: kernel+initrd, or tar with -o]. \
         `--format help` prints this list.\n",
    );
    for f in Format::ALL {
        text.push_str(&format!("\n  {:<18} {}", f.name(), f.description()));
    }
    text.push_str(
        "\n\nuki, raw-efi, qcow2-efi, vhd, dynamic-vhd, vmdk and iso-efi outputs also get their TPM \
         measurement manifest, STEM-measurements.json (and .dsse with a signer), the \
         containers' STEM keeping the extension (boot.vmdk -> boot-vmdk-measurements.json).",
    );
    text
}

fn run_build(args: Args) -> Result<(), Failure> {
    let started = Instant::now();
    if args.formats.iter().any(|f| f == "help" || f == "list") {
        println!("{}", format_help());
        return Ok(());
    }
    if args.files.is_empty() {
        return Err(usage("no spec file given (use `-` for standard input)"));
    }
    if args.docker {
        return Err(usage(
            "--docker is not supported: kiln reads images from registries and its own store, never from a Docker daemon",
        ));
    }
    let formats = Format::parse_list(&args.formats, args.output.is_some()).map_err(usage)?;
    let size = match args.size.as_deref() {
        None => None,
        Some(text) => Some(boot::parse_size(text).ok_or_else(|| {
            usage(format!(
                "--size {text}: use NNNM, NNNG or a bare number of GiB"
            ))
        })?),
    };
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
    let signer = provenance_signer(&args)?;
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| default_name(&args.files));
    let store = open_store(args.cache.as_deref())?;
    let source = image_source(&args)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| failed(format!("cannot start the async runtime: {e}")))?;
    let images = runtime
        .block_on(build::resolve_images(&spec, &platform, &store, &source))
        .map_err(failed)?;
    let (efi_stub_name, bios_loader_name) = loader_names(&args, &formats)?;
    let resolve = |name: Option<String>| match name {
        Some(name) => runtime
            .block_on(build::disk::resolve_loader(
                &name, &platform, &store, &source,
            ))
            .map(Some)
            .map_err(failed),
        None => Ok(None),
    };
    let efi_stub = resolve(efi_stub_name)?;
    let bios_loader = resolve(bios_loader_name)?;
    let policy = trust_policy(args.trust_policy.as_deref())?;
    let registry = match &source {
        ImageSource::Registry { config, .. } => Some(config.as_ref()),
        ImageSource::Offline => None,
    };
    let loaders: Vec<BootLoader<'_>> = [("efi-stub", &efi_stub), ("bios-loader", &bios_loader)]
        .into_iter()
        .filter_map(|(role, l)| l.as_ref().map(|image| BootLoader { role, image }))
        .collect();
    let trust = runtime
        .block_on(build::trust::enforce(
            &spec,
            &images,
            &loaders,
            &policy,
            registry,
            args.disable_content_trust,
        ))
        .map_err(|e| match e {
            BuildError::DisableNotPermitted => usage(
                "--disable-content-trust is not permitted: the trust policy does not set `allow_disable_content_trust = true`",
            ),
            other => failed(other),
        })?;
    if trust.disabled {
        eprintln!(
            "kiln: content trust DISABLED (--disable-content-trust, permitted by the policy's allow_disable_content_trust): no image signature was verified"
        );
    }
    for v in &trust.verified {
        eprintln!(
            "kiln: verified {} ({}) with key {} from trust root `{}`",
            v.image, v.digest, v.key_fingerprint, v.trust_root
        );
    }
    let spec_digest = format!("sha256:{}", build::spec_digest(&spec));
    let provenance = signer.map(|signer| Provenance {
        signer,
        spec_sha256: spec_digest["sha256:".len()..].to_owned(),
        name: &name,
        formats: formats.iter().map(|f| f.name().to_owned()).collect(),
        arch: platform.architecture.as_str(),
        images: &images,
        trust: &trust,
        spec: &spec,
        store: &store,
        sbom: !args.no_sbom,
    });

    let cwd = std::env::current_dir().map_err(|e| usage(format!("no working directory: {e}")))?;
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let req = BuildRequest {
        spec: &spec,
        formats: &formats,
        dir: &args.dir,
        name: &name,
        platform: &platform,
        cwd: &cwd,
        home: home.as_deref(),
        initrd: InitrdOptions {
            level: args.compression_level,
            member_cache: store::kiln_home().map(|h| h.join("initrd-members")),
            ..InitrdOptions::default()
        },
        flatten: FlattenOptions::default(),
        cancel: Default::default(),
        boot: BootOptions {
            size,
            efi_stub,
            bios_loader,
        },
        sbom: !args.no_sbom,
    };

    match &args.output {
        Some(out) if out.as_os_str() == "-" => {
            let dockerfile = formats[0] == Format::Docker;
            let stdout = BufWriter::new(io::stdout().lock());
            let mut w =
                build::write_stream(&req, &store, &images, dockerfile, stdout).map_err(failed)?;
            w.flush()
                .map_err(|e| failed(format!("standard output: {e}")))?;
            eprintln!(
                "kiln: wrote {} to standard output in {:.2} s",
                formats[0],
                started.elapsed().as_secs_f64()
            );
            eprintln!("kiln: {}", trust.summary());
            Ok(())
        }
        Some(out) => {
            let dir = out
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let file_name = out
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .ok_or_else(|| usage(format!("-o {}: not a file name", out.display())))?;
            let tmp = dir.join(format!(".{file_name}.kiln-tmp"));
            let file = std::fs::File::create(&tmp)
                .map_err(|e| usage(format!("cannot create {}: {e}", tmp.display())))?;
            let dockerfile = formats[0] == Format::Docker;
            let mut w =
                build::write_stream(&req, &store, &images, dockerfile, BufWriter::new(file))
                    .map_err(failed)?;
            w.flush()
                .map_err(|e| failed(format!("{}: {e}", tmp.display())))?;
            drop(w);
            std::fs::rename(&tmp, out).map_err(|e| failed(format!("{}: {e}", out.display())))?;
            let mut artifacts = vec![build::artifact_of(out).map_err(failed)?];
            sign_provenance(provenance.as_ref(), &mut artifacts, dir)?;
            summary(&artifacts, &trust, started);
            Ok(())
        }
        None => {
            let mut artifacts = build::write_outputs(&req, &store, &images).map_err(failed)?;
            let measured = measure_outputs(
                &measure::output::measured_outputs(&formats, &args.dir, &name),
                args.pcr_banks.clone(),
                spec_digest,
                provenance.as_ref().map(|p| p.signer.as_ref()),
            )?;
            artifacts.extend(measured);
            sign_provenance(provenance.as_ref(), &mut artifacts, &args.dir)?;
            summary(&artifacts, &trust, started);
            Ok(())
        }
    }
}

/// The signer for the provenance, opened before building so that a bad key
/// or an absent daemon fails fast.
fn provenance_signer(args: &Args) -> Result<Option<Box<dyn Signer>>, Failure> {
    super::signer::signer_from(args.sign_key.as_deref(), args.signer_socket.as_deref())
        .map_err(usage)
}

/// Writes the TPM measurement manifest (signed, with a signer) beside each
/// bootable output; returns the files written.
fn measure_outputs(
    paths: &[PathBuf],
    banks: Vec<measure::bank::Bank>,
    spec_digest: String,
    signer: Option<&dyn Signer>,
) -> Result<Vec<Artifact>, Failure> {
    let opts = measure::Options {
        banks,
        spec_digest: Some(spec_digest),
    };
    measure::output::measure_outputs(paths, &opts, signer)
        .map_err(failed)?
        .iter()
        .map(|p| build::artifact_of(p).map_err(failed))
        .collect()
}

/// What the provenance records besides the outputs.
struct Provenance<'a> {
    signer: Box<dyn Signer>,
    spec_sha256: String,
    name: &'a str,
    formats: Vec<String>,
    arch: &'a str,
    images: &'a Images,
    trust: &'a TrustRecord,
    spec: &'a Spec,
    store: &'a Store,
    /// Write NAME-sbom.spdx.json (with the packages found in the images)
    /// for publishing, unless `--no-sbom`.
    sbom: bool,
}

/// Writes NAME-sbom.spdx.json and NAME-provenance.sigstore.json next to
/// the outputs, when asked to; the SBOM joins the outputs the provenance
/// names, which is what `kiln publish` reads.
fn sign_provenance(
    provenance: Option<&Provenance<'_>>,
    artifacts: &mut Vec<Artifact>,
    dir: &Path,
) -> Result<(), Failure> {
    let Some(p) = provenance else {
        return Ok(());
    };
    if p.sbom {
        let options = SbomOptions {
            scan_packages: true,
            ..SbomOptions::new(p.name).map_err(usage)?
        };
        let doc = sbom::document(p.spec, p.images, p.store, &options).map_err(failed)?;
        let path = dir.join(format!("{}-sbom.spdx.json", p.name));
        std::fs::write(&path, doc).map_err(|e| failed(format!("{}: {e}", path.display())))?;
        artifacts.push(build::artifact_of(&path).map_err(failed)?);
    }
    let statement = provenance::statement(&BuildRecord {
        builder_id: DEFAULT_BUILDER_ID,
        spec_sha256: &p.spec_sha256,
        name: p.name,
        formats: &p.formats,
        arch: p.arch,
        images: p.images,
        verified: &p.trust.verified,
        content_trust: if p.trust.disabled {
            ContentTrust::Disabled
        } else {
            ContentTrust::Enforced
        },
        artifacts,
    });
    let signer = p.signer.as_ref();
    let bundle = Bundle::sign_dsse(signer, INTOTO_PAYLOAD_TYPE, &statement.to_json())
        .map_err(|e| failed(format!("signing the provenance: {e}")))?;
    let path = dir.join(format!("{}-provenance.sigstore.json", p.name));
    std::fs::write(&path, bundle.to_json())
        .map_err(|e| failed(format!("{}: {e}", path.display())))?;
    eprintln!(
        "kiln: signed provenance of {} outputs with key {} into {}",
        artifacts.len(),
        signer.public_key().fingerprint(),
        path.display()
    );
    Ok(())
}

/// The boot loader images the requested formats need: `--efi-stub` and
/// `--bios-loader`, else `[build] efi_stub` / `bios_loader` from the
/// config file.
fn loader_names(
    args: &Args,
    formats: &[Format],
) -> Result<(Option<String>, Option<String>), Failure> {
    let efi = formats.iter().any(|f| f.needs_efi_stub());
    let bios = formats.iter().any(|f| f.needs_bios_loader());
    let mut names = (
        args.efi_stub.clone().filter(|_| efi),
        args.bios_loader.clone().filter(|_| bios),
    );
    if (efi && names.0.is_none()) || (bios && names.1.is_none()) {
        if let Some(path) = store::kiln_home().map(|h| super::cache::config::default_path(&h)) {
            let config = FileConfig::load(&path).map_err(usage)?;
            if efi && names.0.is_none() {
                names.0 = config.build.efi_stub;
            }
            if bios && names.1.is_none() {
                names.1 = config.build.bios_loader;
            }
        }
    }
    Ok(names)
}

/// The trust policy: `--trust-policy`, else `$KILN_HOME/trust.toml` if it
/// exists, else an empty policy (under which a spec's `trust` entries fail,
/// naming the orgs that have no trust root).
fn trust_policy(path: Option<&Path>) -> Result<TrustPolicy, Failure> {
    let default = store::kiln_home().map(|h| h.join("trust.toml"));
    let path = match (path, &default) {
        (Some(p), _) => Some(p.to_owned()),
        (None, Some(d)) if d.exists() => Some(d.clone()),
        _ => None,
    };
    match path {
        Some(p) => TrustPolicy::load(&p).map_err(usage),
        None => Ok(TrustPolicy::default()),
    }
}

fn image_source(args: &Args) -> Result<ImageSource, Failure> {
    if args.offline {
        return Ok(ImageSource::Offline);
    }
    let flags = Flags {
        mirrors: args.mirrors.clone(),
        insecure_registries: args.insecure_registries.clone(),
        jobs: None,
    };
    let config_file = store::kiln_home().map(|h| super::cache::config::default_path(&h));
    let config = registry_config(config_file.as_deref(), &flags).map_err(usage)?;
    Ok(ImageSource::Registry {
        config: Box::new(config),
        pull_all: args.pull,
    })
}

/// Reads and validates the spec files, merged in order.
fn read_specs(files: &[PathBuf]) -> Result<Spec, Failure> {
    let mut texts = Vec::new();
    for path in files {
        match super::validate::read(path) {
            Ok(Ok(input)) => texts.push((input.name, input.text)),
            // Not UTF-8: reported like any other spec error.
            Ok(Err(diagnostic)) => {
                eprintln!("{diagnostic}");
                return Err(failed("the spec has errors; nothing was built"));
            }
            Err(e) => return Err(usage(format!("cannot read {}: {e}", path.display()))),
        }
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

/// Each output with its size and sha256, the time taken, and what content
/// trust verified (or that it was disabled).
fn summary(artifacts: &[Artifact], trust: &TrustRecord, started: Instant) {
    let parts: Vec<String> = artifacts
        .iter()
        .map(|a| {
            format!(
                "{} ({} bytes, sha256:{})",
                a.path.display(),
                a.size,
                a.sha256
            )
        })
        .collect();
    eprintln!(
        "kiln: built {} in {:.2} s",
        parts.join(", "),
        started.elapsed().as_secs_f64()
    );
    eprintln!("kiln: {}", trust.summary());
}
