//! `kiln publish`: push a build's outputs to a registry as one signed
//! release, with its SBOM, provenance and measurement manifests attached.

use std::fs;
use std::path::{Path, PathBuf};

use kiln_backend::engine::build;
use kiln_backend::engine::publish::{self, Output, Release};
use kiln_backend::engine::reference::Reference;
use kiln_signer::bundle::Bundle;
use kiln_signer::dsse::{Statement, INTOTO_PAYLOAD_TYPE};
use kiln_signer::Signer;

use super::exit::{self, failed, usage, Failure};
use super::verify::{runtime, RegistryArgs};

/// Publish a build directory to a registry as a signed release.
///
/// DIR is what `kiln build --sign-key` wrote: the outputs, the signed
/// provenance (NAME-provenance.sigstore.json) and the SBOM
/// (NAME-sbom.spdx.json). Each output becomes a layer of one OCI artifact
/// manifest, signed with cosign's scheme; the SBOM, the provenance and any
/// measurement manifests are attached as signed OCI 1.1 referrers. The tag
/// moves only after everything verifies, and a tag already pointing at
/// another release is never moved.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to publish, `REGISTRY/REPO:TAG`.
    #[arg(long, value_name = "REF")]
    to: String,
    /// Which build in DIR [default: the only one].
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Sign with this private key.
    #[arg(long, value_name = "FILE", conflicts_with = "signer_socket")]
    key: Option<PathBuf>,
    /// Sign through the signer daemon on this socket.
    #[arg(long, value_name = "PATH")]
    signer_socket: Option<PathBuf>,
    #[command(flatten)]
    registry: RegistryArgs,
    /// The build's output directory.
    #[arg(value_name = "DIR")]
    dir: PathBuf,
}

pub fn run(args: Args) -> u8 {
    exit::report(run_publish(&args).map(|()| exit::OK))
}

fn run_publish(args: &Args) -> Result<(), Failure> {
    let target = Reference::parse(&args.to).map_err(|e| usage(format!("--to {}: {e}", args.to)))?;
    let signer = super::signer::signer_from(args.key.as_deref(), args.signer_socket.as_deref())
        .map_err(usage)?
        .ok_or_else(|| usage("give --key or --signer-socket"))?;
    let release = read_build(&args.dir, args.name.as_deref(), signer.as_ref())?;
    let config = args.registry.config().map_err(usage)?;
    let published = runtime()
        .map_err(failed)?
        .block_on(publish::publish(
            &release,
            &target,
            &config,
            signer.as_ref(),
            &|line| eprintln!("kiln: {line}"),
        ))
        .map_err(failed)?;
    println!(
        "Published {} ({}) with {} attestations",
        published.reference,
        published.digest,
        published.referrers.len()
    );
    Ok(())
}

/// Reads a build directory: the provenance names every output with its
/// sha256, and each must be there unchanged.
fn read_build(dir: &Path, name: Option<&str>, signer: &dyn Signer) -> Result<Release, Failure> {
    let bundle_path = provenance_file(dir, name)?;
    let name = bundle_path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix("-provenance.sigstore.json"))
        .unwrap_or("moby")
        .to_owned();
    let bytes =
        fs::read(&bundle_path).map_err(|e| usage(format!("{}: {e}", bundle_path.display())))?;
    let at = |e: String| failed(format!("{}: {e}", bundle_path.display()));
    let bundle = Bundle::from_json(&bytes).map_err(|e| at(e.to_string()))?;
    let (_, payload_type, payload) = bundle
        .verify_dsse(std::slice::from_ref(signer.public_key()))
        .map_err(|e| {
            at(format!(
                "the provenance is not signed by the publishing key: {e}"
            ))
        })?;
    if payload_type != INTOTO_PAYLOAD_TYPE {
        return Err(at(format!("payload type `{payload_type}`")));
    }
    let provenance = Statement::parse(&payload).map_err(|e| at(e.to_string()))?;

    let sbom_name = format!("{name}-sbom.spdx.json");
    let mut sbom = None;
    let mut outputs = Vec::new();
    let mut measurements = Vec::new();
    for subject in &provenance.subject {
        let file = &subject.name;
        if file.contains('/') || file.starts_with('.') {
            return Err(at(format!("subject `{file}` is not a plain file name")));
        }
        let path = dir.join(file);
        let artifact = build::artifact_of(&path).map_err(|e| failed(format!("{file}: {e}")))?;
        if subject.digest.get("sha256") != Some(&artifact.sha256) {
            return Err(failed(format!(
                "{}: sha256:{} differs from the provenance; the build directory was changed",
                path.display(),
                artifact.sha256
            )));
        }
        if *file == sbom_name {
            sbom = Some(fs::read(&path).map_err(|e| failed(format!("{}: {e}", path.display())))?);
        } else if file.ends_with("-measurements.json") {
            let doc = fs::read(&path).map_err(|e| failed(format!("{}: {e}", path.display())))?;
            measurements.push((file.clone(), doc));
        } else if file.ends_with(".dsse") {
            // A measurement manifest's build-time envelope; the release
            // carries its own, signed by the publishing key.
        } else {
            outputs.push(Output {
                file_name: file.clone(),
                path,
                sha256: artifact.sha256,
                size: artifact.size,
            });
        }
    }
    let sbom = sbom.ok_or_else(|| {
        failed(format!(
            "{}: no {sbom_name} among the outputs; build with --sign-key (and without --no-sbom)",
            dir.display()
        ))
    })?;
    if outputs.is_empty() {
        return Err(failed(format!(
            "{}: the build has no outputs",
            dir.display()
        )));
    }
    Ok(Release {
        name,
        outputs,
        provenance,
        sbom,
        measurements,
    })
}

fn provenance_file(dir: &Path, name: Option<&str>) -> Result<PathBuf, Failure> {
    if let Some(name) = name {
        return Ok(dir.join(format!("{name}-provenance.sigstore.json")));
    }
    let entries = fs::read_dir(dir).map_err(|e| usage(format!("{}: {e}", dir.display())))?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with("-provenance.sigstore.json"))
        })
        .collect();
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(usage(format!(
            "{}: no NAME-provenance.sigstore.json; build with --sign-key or --signer-socket",
            dir.display()
        ))),
        _ => Err(usage(format!(
            "{}: several builds; choose one with --name",
            dir.display()
        ))),
    }
}
