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

use sha2::digest::common::hazmat::{SerializableState, SerializedState};
use sha2::{Digest as _, Sha256};

use super::plan::Section;
use super::rootfs::{self, Inputs, Part, RootfsError};
use crate::engine::boot::isofs::{self, IsoFsError};
use crate::engine::formats::cpio::CpioSink;
use crate::engine::formats::pargz::{ParallelGz, DEFAULT_CHUNK};
use crate::engine::formats::spool::{Meta, Spooled};
use crate::engine::formats::squashfs::{self, SquashfsError};
use crate::engine::formats::tar::TarSink;
use crate::engine::fs::{Entry, Kind, Sink, LINUXKIT_EPOCH};

/// The initrd's default gzip level. zlib-rs's level 2 (its fast
/// strategy) comes within a few percent of level 6's size at about twice
/// its speed on a kernel module tree, and matches the size of linuxkit's
/// initrd; level 1 is faster again but about a quarter larger.
pub const DEFAULT_LEVEL: u32 = 2;

/// How the initrd is compressed.
#[derive(Debug, Clone)]
pub struct InitrdOptions {
    /// gzip level, 0 (stored) to 9.
    pub level: u32,
    pub chunk: usize,
    pub workers: usize,
    /// Where compressed section members are cached, if anywhere.
    pub member_cache: Option<PathBuf>,
}

impl Default for InitrdOptions {
    fn default() -> Self {
        InitrdOptions {
            level: DEFAULT_LEVEL,
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
    #[error("{path}: {error}")]
    Squashfs { path: PathBuf, error: SquashfsError },
    #[error("{path}: {error}")]
    Iso { path: PathBuf, error: IsoFsError },
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
    /// The initrd's sha256, lower-case hex, computed while it was written.
    pub initrd_sha256: String,
    pub initrd_size: u64,
    pub cmdline: Option<PathBuf>,
    /// Members that came from the cache.
    pub reused: usize,
}

/// One compressed member of the initrd, in a file.
struct Member {
    path: PathBuf,
    len: u64,
    /// Where its cache metadata lives, when it is cached.
    meta: Option<PathBuf>,
    /// The hash state after the microcode and this member, when it is the
    /// first member and that state was cached.
    state_after: Option<Vec<u8>>,
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
    let result = (|| {
        let mut boot = BootFiles::default();
        let mut members = Vec::new();
        let mut reused = 0;
        let parts = sections.iter().flat_map(Part::of);
        for (i, part) in parts.enumerate() {
            let is_kernel = matches!(part, Part::Whole(Section::Kernel));
            let cached = match (&opts.member_cache, member_key(inputs, part, opts)) {
                (Some(cache), Some(key)) => Some(cache.join(key)),
                _ => None,
            };
            // The kernel section also yields the boot files, cached beside
            // its member; if they are gone, the section is rebuilt.
            let hit = cached.as_ref().and_then(|base| {
                let member = lookup(base, i == 0)?;
                (!is_kernel || restore_boot(base, &kernel_path, &mut boot)).then_some(member)
            });
            if let Some(member) = hit {
                members.push(member);
                reused += 1;
                continue;
            }
            let path = match &cached {
                Some(base) => {
                    fs::create_dir_all(base.parent().unwrap_or(Path::new(".")))
                        .map_err(io_at(base))?;
                    unique_tmp(&base.with_extension("cpio.gz"))
                }
                None => scratch.join(format!("{i:04}.cpio.gz")),
            };
            let file = File::create(&path).map_err(io_at(&path))?;
            let gz = ParallelGz::new(BufWriter::new(file), opts.level, opts.chunk, opts.workers);
            let mut split = BootSplit {
                inner: CpioSink::new(gz),
                boot: &mut boot,
                kernel_path: &kernel_path,
            };
            let written = rootfs::write_part(inputs, part, &mut split);
            let finished = written.map_err(OutputError::from).and_then(|()| {
                let cpio = split.inner.finish().map_err(io_at(&path))?;
                let (mut out, len) = cpio.finish().map_err(io_at(&path))?;
                out.flush().map_err(io_at(&path))?;
                Ok(len)
            });
            let len = match finished {
                Ok(len) => len,
                Err(e) => {
                    let _ = fs::remove_file(&path);
                    return Err(e);
                }
            };
            let member = match &cached {
                Some(base) => {
                    if is_kernel {
                        save_boot(base, &boot).map_err(io_at(base))?;
                    }
                    let final_path = base.with_extension("cpio.gz");
                    fs::rename(&path, &final_path).map_err(io_at(&final_path))?;
                    let meta = base.with_extension("meta");
                    write_meta(&meta, len, None).map_err(io_at(&meta))?;
                    Member {
                        path: final_path,
                        len,
                        meta: Some(meta),
                        state_after: None,
                    }
                }
                None => Member {
                    path,
                    len,
                    meta: None,
                    state_after: None,
                },
            };
            members.push(member);
        }
        let (initrd_sha256, initrd_size) =
            concatenate(&initrd_path, &boot.ucode, &members).map_err(io_at(&initrd_path))?;
        let cmdline = if boot.cmdline.is_empty() {
            None
        } else {
            fs::write(&cmdline_path, &boot.cmdline).map_err(io_at(&cmdline_path))?;
            Some(cmdline_path)
        };
        Ok(KernelInitrd {
            kernel: boot.kernel.clone(),
            initrd: initrd_path,
            initrd_sha256,
            initrd_size,
            cmdline,
            reused,
        })
    })();
    let _ = fs::remove_dir_all(&scratch);
    result
}

/// The filesystem image of `kernel+squashfs` and `kernel+iso`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootfsImage {
    /// `<name>-squashfs.img`.
    Squashfs,
    /// `<name>.iso`: ISO 9660 with Rock Ridge and Joliet, label `LinuxKit`.
    Iso,
}

/// What `kernel+squashfs` or `kernel+iso` wrote.
#[derive(Debug)]
pub struct KernelRootfs {
    pub kernel: Option<PathBuf>,
    pub cmdline: Option<PathBuf>,
    pub image: PathBuf,
}

/// Writes `<dir>/<name>-kernel`, `-cmdline` (each only when non-empty) and
/// the image of the root filesystem without `boot/*`.
pub fn write_kernel_rootfs(
    inputs: &Inputs<'_>,
    sections: &[Section],
    kind: RootfsImage,
    dir: &Path,
    name: &str,
) -> Result<KernelRootfs, OutputError> {
    let kernel_path = dir.join(format!("{name}-kernel"));
    let cmdline_path = dir.join(format!("{name}-cmdline"));
    let (image, format) = match kind {
        RootfsImage::Squashfs => (dir.join(format!("{name}-squashfs.img")), "squashfs"),
        RootfsImage::Iso => (dir.join(format!("{name}.iso")), "iso"),
    };
    let (tree, boot) = spool_rootfs(inputs, sections, dir, name, format, &kernel_path)?;
    write_via_tmp(&image, |f| {
        let out = BufWriter::new(f);
        let mut out =
            match kind {
                RootfsImage::Squashfs => squashfs::write(&tree, LINUXKIT_EPOCH as u32, out)
                    .map_err(|error| OutputError::Squashfs {
                        path: image.clone(),
                        error,
                    })?,
                RootfsImage::Iso => {
                    isofs::write(&tree, "LinuxKit", out)
                        .map_err(|error| OutputError::Iso {
                            path: image.clone(),
                            error,
                        })?
                        .0
                }
            };
        out.flush().map_err(io_at(&image))
    })?;
    let cmdline = if boot.cmdline.is_empty() {
        None
    } else {
        fs::write(&cmdline_path, &boot.cmdline).map_err(io_at(&cmdline_path))?;
        Some(cmdline_path)
    };
    Ok(KernelRootfs {
        kernel: boot.kernel,
        cmdline,
        image,
    })
}

/// The root filesystem without `boot/*`, collected; the kernel written to
/// `kernel_path` and the command line kept, as `kernel+initrd` does.
fn spool_rootfs(
    inputs: &Inputs<'_>,
    sections: &[Section],
    dir: &Path,
    name: &str,
    format: &'static str,
    kernel_path: &Path,
) -> Result<(Spooled, BootFiles), OutputError> {
    let spool = unique_tmp(&dir.join(format!(".{name}-{format}-spool")));
    let root = Meta {
        mode: 0o755,
        uid: 0,
        gid: 0,
        mtime: LINUXKIT_EPOCH,
    };
    let mut boot = BootFiles::default();
    let mut split = BootSplit {
        inner: Spooled::new(&spool, root, format).map_err(io_at(&spool))?,
        boot: &mut boot,
        kernel_path,
    };
    for section in sections {
        rootfs::write_section(inputs, section, &mut split)?;
    }
    let tree = split.inner;
    Ok((tree, boot))
}

/// Writes `path` through a temporary file renamed into place.
fn write_via_tmp(
    path: &Path,
    write: impl FnOnce(File) -> Result<(), OutputError>,
) -> Result<(), OutputError> {
    let tmp = unique_tmp(path);
    let result = File::create(&tmp)
        .map_err(io_at(&tmp))
        .and_then(write)
        .and_then(|()| fs::rename(&tmp, path).map_err(io_at(path)));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Writes the microcode and the members one after the other into `path`,
/// hashing as it goes. The first member's bytes need not be read when the
/// hash state after it is cached: then it is copied inside the kernel
/// (`copy_file_range`), and only the rest is hashed. Otherwise that state
/// is saved for the next build.
fn concatenate(path: &Path, ucode: &[u8], members: &[Member]) -> io::Result<(String, u64)> {
    let mut out = File::create(path)?;
    let mut hasher = Sha256::new();
    out.write_all(ucode)?;
    hasher.update(ucode);
    let mut size = ucode.len() as u64;
    let mut buf = vec![0u8; 1 << 20];
    for (i, member) in members.iter().enumerate() {
        let mut f = File::open(&member.path)?;
        let restored = member
            .state_after
            .as_deref()
            .and_then(|s| SerializedState::<Sha256>::try_from(s).ok())
            .and_then(|s| Sha256::deserialize(&s).ok());
        let copied = match restored {
            Some(state) => {
                hasher = state;
                io::copy(&mut f, &mut out)?
            }
            None => {
                let mut copied = 0u64;
                loop {
                    let n = f.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buf[..n]);
                    out.write_all(&buf[..n])?;
                    copied += n as u64;
                }
                if i == 0 {
                    if let Some(meta) = &member.meta {
                        // Best effort: without it the next build hashes the
                        // member again.
                        let _ = write_meta(meta, member.len, Some(&hasher.serialize()));
                    }
                }
                copied
            }
        };
        if copied != member.len {
            return Err(io::Error::other(format!(
                "{}: expected {} bytes, read {copied}",
                member.path.display(),
                member.len
            )));
        }
        size += copied;
    }
    out.flush()?;
    Ok((hex::encode(hasher.finalize()), size))
}

/// A cached member that is complete: its metadata names its length and
/// the file has that length (a member is renamed into place before its
/// metadata is written, and neither is synced, so a crash can leave a
/// short member, or none, but never a metadata file that vouches for it).
fn lookup(base: &Path, first: bool) -> Option<Member> {
    let meta = base.with_extension("meta");
    let text = fs::read_to_string(&meta).ok()?;
    let mut len = None;
    let mut state = None;
    for line in text.lines() {
        match line.split_once(' ') {
            Some(("len", v)) => len = v.parse::<u64>().ok(),
            Some(("sha256-state", v)) => state = hex::decode(v).ok(),
            _ => {}
        }
    }
    let len = len?;
    let path = base.with_extension("cpio.gz");
    if fs::metadata(&path).ok()?.len() != len {
        return None;
    }
    Some(Member {
        path,
        len,
        meta: Some(meta),
        state_after: state.filter(|_| first),
    })
}

fn write_meta(meta: &Path, len: u64, state: Option<&[u8]>) -> io::Result<()> {
    let mut text = format!("len {len}\n");
    if let Some(state) = state {
        text.push_str(&format!("sha256-state {}\n", hex::encode(state)));
    }
    write_atomically(meta, text.as_bytes())
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

fn boot_paths(base: &Path) -> (PathBuf, PathBuf, PathBuf) {
    (
        base.with_extension("kernel"),
        base.with_extension("cmdline"),
        base.with_extension("ucode"),
    )
}

fn save_boot(base: &Path, boot: &BootFiles) -> io::Result<()> {
    let (kernel, cmdline, ucode) = boot_paths(base);
    if let Some(k) = &boot.kernel {
        copy_atomically(k, &kernel)?;
    }
    write_atomically(&cmdline, &boot.cmdline)?;
    write_atomically(&ucode, &boot.ucode)
}

fn restore_boot(base: &Path, kernel_path: &Path, boot: &mut BootFiles) -> bool {
    let (kernel, cmdline, ucode) = boot_paths(base);
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

/// The digest of everything a member is made from, or `None` for the
/// `files` section, which reads host files and is always rebuilt.
fn member_key(inputs: &Inputs<'_>, part: Part<'_>, opts: &InitrdOptions) -> Option<String> {
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
    match part {
        Part::Whole(Section::Kernel) => {
            let kernel = inputs.spec.kernel.as_ref()?;
            h.update(format!("kernel {:?}\n", kernel));
            h.update(digest_of(kernel.image.as_deref()?)?);
        }
        Part::Whole(Section::Init(i)) => {
            let image = &inputs.spec.init[*i];
            h.update(format!("init {image}\n"));
            h.update(digest_of(image)?);
            // The last init member carries the merged apk database.
            if *i + 1 == inputs.spec.init.len() && *i > 0 {
                for other in &inputs.spec.init {
                    h.update(format!("apk-db {other} {}\n", digest_of(other)?));
                }
            }
        }
        Part::Whole(Section::Volume(i)) => {
            let volume = &inputs.spec.volumes[*i];
            h.update(format!("volume {i} {volume:?}\n"));
            if let Some(image) = volume.image.as_deref().filter(|s| !s.is_empty()) {
                h.update(digest_of(image)?);
                // An OCI-layout volume copies the whole index.
                h.update(inputs.images.get(image)?.root.digest.to_string());
            }
        }
        // Containers go into the initrd as their two parts.
        Part::Whole(Section::Container(_)) => return None,
        Part::ContainerRoot(plan) => {
            h.update(format!(
                "container-root {} {} {} {}\n",
                plan.dir,
                plan.source,
                plan.bundle.root_dir(&plan.dir),
                plan.extracts
            ));
            if plan.extracts {
                h.update(digest_of(&plan.image)?);
            }
        }
        Part::ContainerBundle(plan) => {
            h.update(format!(
                "container-bundle {} {} {} {} {}\n",
                plan.dir,
                plan.source,
                plan.location,
                plan.bundle.readonly(),
                plan.extracts
            ));
            h.update(plan.bundle.config_json());
            h.update(plan.bundle.runtime_json(&plan.dir, &plan.root));
        }
        Part::Whole(Section::Files) => return None,
        Part::Whole(Section::Sbom(bytes)) => {
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
        let cached = dir.path().join("cache/key");
        fs::create_dir_all(cached.parent().unwrap()).unwrap();
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
                        write_meta(&cached.with_extension("meta"), 1 << 16, None).unwrap();
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
        assert_eq!(
            fs::read(cached.with_extension("kernel")).unwrap().len(),
            1 << 16
        );
        assert_eq!(
            fs::read_to_string(cached.with_extension("meta")).unwrap(),
            "len 65536\n"
        );
        let left: Vec<_> = fs::read_dir(cached.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
