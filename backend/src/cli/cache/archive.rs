//! `kiln cache import` and `kiln cache export`.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use kiln_backend::engine::store::{ArchiveFormat, StoreError};

use super::{parse_references, Context, Failure};
use crate::cli::exit;

/// Import images from an OCI-layout or `docker save` tar.
///
/// Accepted: an OCI image layout (`docker buildx --output type=oci`,
/// `skopeo copy oci-archive:`, Docker ≥ 25 `docker save`) or a legacy
/// `docker save` archive. Images are named after their
/// `io.containerd.image.name` annotation or `RepoTags`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The archive; `-` reads standard input.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Also record the image under this name (archives holding one image).
    #[arg(long, value_name = "REF")]
    name: Option<String>,
}

/// Export an image as an OCI-layout tar.
///
/// The tar holds every blob of the image that is in the store, and is
/// read by `kiln cache import`, `linuxkit cache import`, skopeo and
/// `docker load`. The same image always exports to the same bytes.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The image, as stored (`kiln cache ls`).
    #[arg(value_name = "REF")]
    reference: String,
    /// The tar to write; `-` writes standard output.
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
}

pub fn import(ctx: &Context, args: ImportArgs) -> Result<u8, Failure> {
    let name = match &args.name {
        Some(n) => parse_references(std::slice::from_ref(n))?.pop(),
        None => None,
    };
    let store = ctx.open_store()?;
    let shown = args.file.display().to_string();
    let result = if args.file.as_os_str() == "-" {
        store.import(io::stdin().lock(), name.as_ref())
    } else {
        let file = File::open(&args.file)
            .map_err(|e| Failure::usage(format!("cannot read {shown}: {e}")))?;
        store.import(BufReader::new(file), name.as_ref())
    };
    let imported = result.map_err(|e| Failure::failed(format!("importing {shown}: {e}")))?;
    if imported.is_empty() {
        return Err(Failure::failed(format!("{shown} holds no image")));
    }
    for image in &imported {
        let format = match image.format {
            ArchiveFormat::Oci => "OCI layout",
            ArchiveFormat::DockerLegacy => "docker save",
        };
        match &image.name {
            Some(n) => println!("imported {n} {} ({format})", image.descriptor.digest),
            None => {
                println!("imported <none> {} ({format})", image.descriptor.digest);
                eprintln!(
                    "kiln: warning: {} in {shown} has no name; import it again with --name \
                     REF, or `kiln cache clean` will delete it",
                    image.descriptor.digest
                );
            }
        }
    }
    Ok(exit::OK)
}

pub fn export(ctx: &Context, args: ExportArgs) -> Result<u8, Failure> {
    let reference = parse_references(std::slice::from_ref(&args.reference))?
        .pop()
        .ok_or_else(|| Failure::usage("no reference"))?;
    let store = ctx.open_store()?;
    let failed = |e: StoreError| Failure::failed(format!("exporting {reference}: {e}"));
    if args.output.as_os_str() == "-" {
        let mut out = BufWriter::new(io::stdout().lock());
        let root = store.export(&reference, &mut out).map_err(failed)?;
        out.flush()
            .map_err(|e| Failure::failed(format!("writing standard output: {e}")))?;
        eprintln!("exported {reference} {}", root.digest);
        return Ok(exit::OK);
    }
    // Written next to the target and renamed into place, so a failed
    // export never leaves a truncated archive under the requested name.
    let partial = partial_path(&args.output);
    let file = File::create(&partial)
        .map_err(|e| Failure::usage(format!("cannot create {}: {e}", partial.display())))?;
    let mut out = BufWriter::new(file);
    let written = store
        .export(&reference, &mut out)
        .map_err(failed)
        .and_then(|root| {
            finish(out, &partial, &args.output)
                .map_err(|e| Failure::failed(format!("writing {}: {e}", args.output.display())))?;
            Ok(root)
        });
    match written {
        Ok(root) => {
            eprintln!(
                "exported {reference} {} to {}",
                root.digest,
                args.output.display()
            );
            Ok(exit::OK)
        }
        Err(e) => {
            let _ = fs::remove_file(&partial);
            Err(e)
        }
    }
}

/// Flushes and syncs the partial file and renames it to `target`.
fn finish(out: BufWriter<File>, partial: &Path, target: &Path) -> io::Result<()> {
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    fs::rename(partial, target)
}

/// `dir/.NAME.kiln-partial-PID` for `dir/NAME`.
fn partial_path(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "export".to_owned());
    target.with_file_name(format!(".{name}.kiln-partial-{}", std::process::id()))
}
