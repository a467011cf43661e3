//! Writing the planned sections out in each requested format.
//!
//! `tar` and `docker` are one PAX tar of every section. `kernel+initrd`
//! keeps `boot/kernel`, `boot/cmdline` and `boot/ucode.cpio` apart and turns
//! every other entry into the initrd: one newc cpio archive per section,
//! each gzip-compressed in parallel chunks, concatenated. A section's
//! compressed member is cached by a digest of everything it is made from,
//! so a rebuild recompresses only the sections that changed.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest as _, Sha256};

use super::plan::Section;
use super::rootfs::{self, Inputs, RootfsError};
use crate::engine::formats::cpio::CpioSink;
use crate::engine::formats::pargz::{ParallelGz, DEFAULT_CHUNK};
use crate::engine::formats::tar::TarSink;
use crate::engine::fs::{Entry, Kind, Sink, LINUXKIT_EPOCH};

/// How the initrd is compressed.
#[derive(Debug, Clone)]
pub struct InitrdOptions {
    pub level: u32,
    pub chunk: usize,
    pub workers: usize,
    /// Where compressed section members are cached, if anywhere.
    pub member_cache: Option<PathBuf>,
}

impl Default for InitrdOptions {
    fn default() -> Self {
        InitrdOptions {
            level: 6,
            chunk: DEFAULT_CHUNK,
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            member_cache: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: io::Error },
}

fn io_at(path: &Path) -> impl Fn(io::Error) -> OutputError + '_ {
    move |error| OutputError::Io {
        path: path.to_owned(),
        error,
    }
}

/// Writes every section as one tar stream; `docker` adds a Dockerfile.
pub fn write_tar<W: Write>(
    inputs: &Inputs<'_>,
    sections: &[Section],
    dockerfile: bool,
    out: W,
) -> Result<W, RootfsError> {
    let mut sink = TarSink::new(out);
    // linuxkit writes the Dockerfile before the SBOM.
    let (body, sbom) = match sections.split_last() {
        Some((last @ Section::Sbom(_), body)) => (body, Some(last)),
        _ => (sections, None),
    };
    for section in body {
        rootfs::write_section(inputs, section, &mut sink)?;
    }
    let write = |error| RootfsError::Write {
        location: "trailer".into(),
        error,
    };
    if dockerfile {
        let text = b"FROM scratch\nCOPY . ./\nENTRYPOINT [\"/bin/rc.init\"]\n";
        let mut e = Entry::new("Dockerfile", Kind::File, 0o644, LINUXKIT_EPOCH);
        e.size = text.len() as u64;
        sink.add(&e, &mut &text[..]).map_err(write)?;
    }
    if let Some(section) = sbom {
        rootfs::write_section(inputs, section, &mut sink)?;
    }
    sink.finish().map_err(write)
}

/// The boot files kept out of the initrd.
#[derive(Debug, Default)]
pub struct BootFiles {
    pub kernel: Option<PathBuf>,
    pub cmdline: Vec<u8>,
    pub ucode: Vec<u8>,
}

/// Diverts `boot/*` away from the initrd: the kernel to a file, the
/// command line and microcode to memory; other `boot/` entries are dropped.
struct BootSplit<'a, S> {
    inner: S,
    boot: &'a mut BootFiles,
    kernel_path: &'a Path,
}

impl<S: Sink> Sink for BootSplit<'_, S> {
    fn add(&mut self, entry: &Entry, data: &mut dyn Read) -> io::Result<()> {
        match entry.path.as_str() {
            "boot/kernel" => {
                let mut f = BufWriter::new(File::create(self.kernel_path)?);
                io::copy(&mut data.take(entry.size), &mut f)?;
                f.flush()?;
                self.boot.kernel = Some(self.kernel_path.to_owned());
                Ok(())
            }
            "boot/cmdline" => {
                self.boot.cmdline.clear();
                data.take(entry.size).read_to_end(&mut self.boot.cmdline)?;
                Ok(())
            }
            "boot/ucode.cpio" => {
                self.boot.ucode.clear();
                data.take(entry.size).read_to_end(&mut self.boot.ucode)?;
                Ok(())
            }
            p if p.starts_with("boot/") => Ok(()),
            _ => self.inner.add(entry, data),
        }
    }
}

/// What `kernel+initrd` wrote.
#[derive(Debug)]
pub struct KernelInitrd {
    pub kernel: Option<PathBuf>,
    pub initrd: PathBuf,
    pub cmdline: Option<PathBuf>,
    /// Sections whose compressed member came from the cache.
    pub reused: usize,
}

/// Writes `<dir>/<name>-kernel`, `-initrd.img` and `-cmdline`. The kernel
/// and cmdline files are written only when non-empty, as linuxkit does.
pub fn write_kernel_initrd(
    inputs: &Inputs<'_>,
    sections: &[Section],
    opts: &InitrdOptions,
    dir: &Path,
    name: &str,
) -> Result<KernelInitrd, OutputError> {
    let kernel_path = dir.join(format!("{name}-kernel"));
    let initrd_path = dir.join(format!("{name}-initrd.img"));
    let cmdline_path = dir.join(format!("{name}-cmdline"));
    let scratch = tempfile_in(dir, &format!(".{name}-members"))?;
    let mut boot = BootFiles::default();
    let mut members = Vec::new();
    let mut reused = 0;

    for (i, section) in sections.iter().enumerate() {
        let key = member_key(inputs, section, opts);
        let cached = match (&opts.member_cache, &key) {
            (Some(cache), Some(key)) => Some(cache.join(format!("{key}.cpio.gz"))),
            _ => None,
        };
        // The kernel section also yields the boot files, cached beside its
        // member; if they are gone, the section is rebuilt.
        let reusable = cached.as_ref().filter(|p| {
            p.exists()
                && (!matches!(section, Section::Kernel) || restore_boot(p, &kernel_path, &mut boot))
        });
        if let Some(path) = reusable {
            members.push(path.clone());
            reused += 1;
            continue;
        }
        let member = scratch.join(format!("{i:04}.cpio.gz"));
        let file = File::create(&member).map_err(io_at(&member))?;
        let gz = ParallelGz::new(BufWriter::new(file), opts.level, opts.chunk, opts.workers);
        let mut split = BootSplit {
            inner: CpioSink::new(gz),
            boot: &mut boot,
            kernel_path: &kernel_path,
        };
        rootfs::write_section(inputs, section, &mut split)?;
        let cpio = split.inner.finish().map_err(io_at(&member))?;
        let (mut out, _) = cpio.finish().map_err(io_at(&member))?;
        out.flush().map_err(io_at(&member))?;
        drop(out);
        if let Some(path) = &cached {
            if matches!(section, Section::Kernel) {
                save_boot(path, &boot).map_err(io_at(path))?;
            }
            store_member(&member, path).map_err(io_at(path))?;
            members.push(path.clone());
        } else {
            members.push(member);
        }
    }

    let mut out = BufWriter::new(File::create(&initrd_path).map_err(io_at(&initrd_path))?);
    out.write_all(&boot.ucode).map_err(io_at(&initrd_path))?;
    for member in &members {
        let mut f = File::open(member).map_err(io_at(member))?;
        io::copy(&mut f, &mut out).map_err(io_at(&initrd_path))?;
    }
    out.flush().map_err(io_at(&initrd_path))?;
    let _ = fs::remove_dir_all(&scratch);

    let kernel = boot.kernel.clone();
    let cmdline = if boot.cmdline.is_empty() {
        None
    } else {
        fs::write(&cmdline_path, &boot.cmdline).map_err(io_at(&cmdline_path))?;
        Some(cmdline_path)
    };
    Ok(KernelInitrd {
        kernel,
        initrd: initrd_path,
        cmdline,
        reused,
    })
}

fn tempfile_in(dir: &Path, name: &str) -> Result<PathBuf, OutputError> {
    let path = dir.join(format!("{name}-{}", std::process::id()));
    fs::create_dir_all(&path).map_err(io_at(&path))?;
    Ok(path)
}

/// A temporary name beside `path` that no other process or thread uses:
/// builds in one process (the service) write the same cache entries at once.
fn unique_tmp(path: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".tmp{}-{n}", std::process::id()));
    path.with_file_name(name)
}

/// Copies `from` to `to` through a temporary file and a rename, so readers
/// see the old file or the whole new one.
fn copy_atomically(from: &Path, to: &Path) -> io::Result<()> {
    let tmp = unique_tmp(to);
    let result = fs::copy(from, &tmp)
        .and_then(|_| File::open(&tmp)?.sync_all())
        .and_then(|()| fs::rename(&tmp, to));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn write_atomically(to: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = unique_tmp(to);
    let result = fs::write(&tmp, bytes).and_then(|()| fs::rename(&tmp, to));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Moves a finished member into the cache atomically.
fn store_member(member: &Path, cached: &Path) -> io::Result<()> {
    if let Some(parent) = cached.parent() {
        fs::create_dir_all(parent)?;
    }
    copy_atomically(member, cached)
}

fn boot_paths(member: &Path) -> (PathBuf, PathBuf, PathBuf) {
    (
        member.with_extension("kernel"),
        member.with_extension("cmdline"),
        member.with_extension("ucode"),
    )
}

fn save_boot(member: &Path, boot: &BootFiles) -> io::Result<()> {
    if let Some(parent) = member.parent() {
        fs::create_dir_all(parent)?;
    }
    let (kernel, cmdline, ucode) = boot_paths(member);
    if let Some(k) = &boot.kernel {
        copy_atomically(k, &kernel)?;
    }
    write_atomically(&cmdline, &boot.cmdline)?;
    write_atomically(&ucode, &boot.ucode)
}

fn restore_boot(member: &Path, kernel_path: &Path, boot: &mut BootFiles) -> bool {
    let (kernel, cmdline, ucode) = boot_paths(member);
    let (Ok(c), Ok(u)) = (fs::read(&cmdline), fs::read(&ucode)) else {
        return false;
    };
    if kernel.exists() {
        if fs::copy(&kernel, kernel_path).is_err() {
            return false;
        }
        boot.kernel = Some(kernel_path.to_owned());
    }
    boot.cmdline = c;
    boot.ucode = u;
    true
}

/// The digest of everything a section's member is made from, or `None` for
/// sections that read host files (`files`), which are always rebuilt.
fn member_key(inputs: &Inputs<'_>, section: &Section, opts: &InitrdOptions) -> Option<String> {
    let mut h = Sha256::new();
    h.update(concat!(
        "kiln-initrd-member/",
        env!("CARGO_PKG_VERSION"),
        "\n"
    ));
    h.update(format!("gzip {} {}\n", opts.level, opts.chunk));
    h.update(format!("{:?}\n", inputs.flatten));
    let digest_of = |image: &str| {
        inputs
            .images
            .get(image)
            .map(|r| r.manifest.digest.to_string())
    };
    match section {
        Section::Kernel => {
            let kernel = inputs.spec.kernel.as_ref()?;
            h.update(format!("kernel {:?}\n", kernel));
            h.update(digest_of(kernel.image.as_deref()?)?);
        }
        Section::Init(i) => {
            let image = &inputs.spec.init[*i];
            h.update(format!("init {image}\n"));
            h.update(digest_of(image)?);
        }
        Section::Volume(i) => {
            let volume = &inputs.spec.volumes[*i];
            h.update(format!("volume {i} {volume:?}\n"));
            if let Some(image) = volume.image.as_deref().filter(|s| !s.is_empty()) {
                h.update(digest_of(image)?);
            }
        }
        Section::Container(plan) => {
            h.update(format!(
                "container {} {} {} {}\n",
                plan.dir, plan.source, plan.root, plan.extracts
            ));
            h.update(plan.bundle.config_json());
            h.update(plan.bundle.runtime_json(&plan.dir, &plan.root));
            h.update(digest_of(&plan.image)?);
        }
        Section::Files => return None,
        Section::Sbom(bytes) => {
            h.update(b"sbom\n");
            h.update(bytes.as_slice());
        }
    }
    Some(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_in_one_process_store_the_same_member_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let cached = dir.path().join("cache/key.cpio.gz");
        let members: Vec<PathBuf> = (0..8)
            .map(|i| {
                let m = dir.path().join(format!("member{i}"));
                fs::write(&m, vec![b'x'; 1 << 16]).unwrap();
                m
            })
            .collect();
        std::thread::scope(|s| {
            for m in &members {
                let cached = &cached;
                s.spawn(move || {
                    for _ in 0..20 {
                        store_member(m, cached).unwrap();
                        save_boot(
                            cached,
                            &BootFiles {
                                kernel: Some(m.clone()),
                                cmdline: b"console=ttyS0".to_vec(),
                                ucode: Vec::new(),
                            },
                        )
                        .unwrap();
                    }
                });
            }
        });
        assert_eq!(fs::read(&cached).unwrap().len(), 1 << 16);
        let left: Vec<_> = fs::read_dir(cached.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
