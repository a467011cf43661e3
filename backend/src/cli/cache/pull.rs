//! `kiln cache pull`.

use std::time::Instant;

use kiln_backend::engine::reference::Reference;
use kiln_backend::engine::registry::{self, PlatformSelection, PulledImage};
use kiln_backend::engine::store::{go_arch, Platform, StoreError};

use super::config::{self, Flags};
use super::progress::Progress;
use super::{human_size, parse_references, plural, Context, Failure};
use crate::cli::exit;

/// Fetch images into the store (or check them, offline).
///
/// The registry is always asked what a tag points at; blobs already in the store are not downloaded again. From a
/// multi-platform index only the requested platforms are stored (default
/// linux/<host architecture>), and each gets a `<REF>-<arch>` name as
/// linuxkit's `cache pull` writes. With `--offline`, nothing is fetched:
/// the command checks that every image is complete in the store for each
/// platform and names each one that is not.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Images, e.g. `alpine:3.20` or `127.0.0.1:5000/org/img@sha256:…`
    /// (`:latest` is added when there is neither tag nor digest).
    #[arg(required = true, value_name = "REF")]
    references: Vec<String>,
    /// A platform to store from an index; repeatable.
    #[arg(long = "platform", value_name = "OS/ARCH[/VARIANT]")]
    platforms: Vec<String>,
    /// An architecture to store from an index, as `--platform linux/ARCH`;
    /// repeatable.
    #[arg(long = "arch", value_name = "ARCH")]
    arches: Vec<String>,
    /// Store every manifest of an index.
    #[arg(long, conflicts_with_all = ["platforms", "arches"])]
    all_platforms: bool,
    /// A registry mirror, `URL` for every registry or `REGISTRY=URL` for
    /// one; repeatable (also KILN_MIRROR, space- or comma-separated).
    #[arg(long = "mirror", value_name = "[REGISTRY=]URL")]
    mirrors: Vec<String>,
    /// A registry that may be used over plain HTTP (loopback ones always
    /// may); repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    insecure_registries: Vec<String>,
    /// Blobs downloaded at once [default: 4].
    #[arg(long, short = 'j', value_name = "N")]
    jobs: Option<usize>,
}

pub fn run(ctx: &Context, args: Args) -> Result<u8, Failure> {
    let references = parse_references(&args.references)?;
    let selection = selection(&args)?;
    if ctx.offline {
        return offline(ctx, &references, &selection);
    }
    let flags = Flags {
        mirrors: args.mirrors,
        insecure_registries: args.insecure_registries,
        jobs: args.jobs,
    };
    let config =
        config::registry_config(ctx.config_file.as_deref(), &flags).map_err(Failure::usage)?;
    let store = ctx.open_store()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::failed(format!("cannot start the async runtime: {e}")))?;

    let started = Instant::now();
    let result = {
        let _progress = Progress::start(
            store.blobs_dir(),
            format!("pulling {}", plural(references.len(), "image", "images")),
        );
        runtime.block_on(registry::pull(&references, &selection, &store, &config))
    };
    match result {
        Ok(pulled) => {
            let mut lines = Vec::new();
            for image in &pulled {
                lines.push(describe(image));
                let name = image.reference.to_string();
                let arch_names = store.add_arch_names(&name).map_err(|e| {
                    Failure::failed(format!("{name}: recording the per-architecture names: {e}"))
                })?;
                for n in arch_names {
                    lines.push(format!("named {n}"));
                }
            }
            for line in lines {
                println!("{line}");
            }
            let blobs: usize = pulled.iter().map(|p| p.blobs_downloaded).sum();
            let bytes: u64 = pulled.iter().map(|p| p.bytes_downloaded).sum();
            eprintln!(
                "pulled {} in {:.2} s: {} ({}) downloaded",
                plural(pulled.len(), "image", "images"),
                started.elapsed().as_secs_f64(),
                plural(blobs, "blob", "blobs"),
                human_size(bytes)
            );
            Ok(exit::OK)
        }
        Err(e) => {
            // Images that did arrive are stored; give them their names too.
            for r in &references {
                let _ = store.add_arch_names(&r.with_default_tag().to_string());
            }
            Err(Failure::failed(e))
        }
    }
}

/// `pulled REF DIGEST [platforms]: N blobs (SIZE) downloaded`.
fn describe(image: &PulledImage) -> String {
    let platforms: Vec<String> = image
        .manifests
        .iter()
        .filter_map(|m| m.platform.as_ref().map(ToString::to_string))
        .collect();
    let platforms = if platforms.is_empty() {
        String::new()
    } else {
        format!(" [{}]", platforms.join(","))
    };
    format!(
        "pulled {} {}{platforms}: {} ({}) downloaded",
        image.reference,
        image.root.digest,
        plural(image.blobs_downloaded, "blob", "blobs"),
        human_size(image.bytes_downloaded)
    )
}

fn selection(args: &Args) -> Result<PlatformSelection, Failure> {
    if args.all_platforms {
        return Ok(PlatformSelection::All);
    }
    let mut platforms = Vec::new();
    for p in &args.platforms {
        let parsed = Platform::parse(p).ok_or_else(|| {
            Failure::usage(format!(
                "--platform {p:?}: expected OS/ARCH[/VARIANT], e.g. linux/arm64"
            ))
        })?;
        platforms.push(parsed);
    }
    for a in &args.arches {
        if a.is_empty() || a.contains('/') {
            return Err(Failure::usage(format!(
                "--arch {a:?}: expected an architecture such as amd64 or arm64"
            )));
        }
        platforms.push(Platform::linux(go_arch(a)));
    }
    if platforms.is_empty() {
        platforms.push(Platform::host());
    }
    platforms.dedup();
    Ok(PlatformSelection::Only(platforms))
}

/// `--offline`: resolve every reference for every platform from the store.
fn offline(
    ctx: &Context,
    references: &[Reference],
    selection: &PlatformSelection,
) -> Result<u8, Failure> {
    let PlatformSelection::Only(platforms) = selection else {
        return Err(Failure::usage(
            "--all-platforms needs the registry; name the platforms with --platform or --arch",
        ));
    };
    let store = ctx.open_store()?;
    let mut problems = Vec::new();
    for platform in platforms {
        match store.resolve(references, platform) {
            Ok(images) => {
                for image in images {
                    println!(
                        "available {} {} {} (manifest {})",
                        image.reference, image.root.digest, platform, image.manifest.digest
                    );
                }
            }
            Err(StoreError::Missing { missing }) => {
                let mut text = format!(
                    "{} not available offline for {platform}:",
                    plural(missing.len(), "image is", "images are")
                );
                for m in &missing {
                    text.push_str(&format!("\n  {m}"));
                }
                problems.push(text);
            }
            Err(e) => problems.push(e.to_string()),
        }
    }
    if problems.is_empty() {
        Ok(exit::OK)
    } else {
        Err(Failure::failed(problems.join("\nkiln: ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        args: Args,
    }

    fn sel(argv: &[&str]) -> Result<PlatformSelection, Failure> {
        let t = T::try_parse_from(std::iter::once("pull").chain(argv.iter().copied())).unwrap();
        selection(&t.args)
    }

    #[test]
    fn platform_flags() {
        assert_eq!(
            sel(&["x"]).unwrap(),
            PlatformSelection::Only(vec![Platform::host()])
        );
        assert_eq!(
            sel(&["--arch", "aarch64", "--platform", "linux/amd64", "x"]).unwrap(),
            PlatformSelection::Only(vec![Platform::linux("amd64"), Platform::linux("arm64")])
        );
        assert_eq!(
            sel(&["--all-platforms", "x"]).unwrap(),
            PlatformSelection::All
        );
        assert!(T::try_parse_from(["pull", "--all-platforms", "--arch", "arm64", "x"]).is_err());
        assert_eq!(sel(&["--platform", "amd64", "x"]).unwrap_err().code, 2);
        assert_eq!(sel(&["--arch", "linux/amd64", "x"]).unwrap_err().code, 2);
    }

    #[test]
    fn offline_names_each_missing_image() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = Context {
            store_dir: dir.path().join("store"),
            offline: true,
            config_file: None,
        };
        let refs = parse_references(&[
            "a/b:1".into(),
            "127.0.0.1:5000/c@sha256:".to_owned() + &"0".repeat(64),
        ])
        .unwrap();
        let store = ctx.open_store().unwrap();
        assert!(store.resolve(&refs, &Platform::host()).is_err());
        let err = offline(
            &ctx,
            &refs,
            &PlatformSelection::Only(vec![Platform::host()]),
        )
        .unwrap_err();
        assert_eq!(err.code, exit::INVALID);
        assert!(err.message.contains("docker.io/a/b:1"), "{}", err.message);
        assert!(
            err.message.contains("127.0.0.1:5000/c@sha256:000"),
            "{}",
            err.message
        );
        assert!(err.message.contains("2 images"), "{}", err.message);
    }
}
