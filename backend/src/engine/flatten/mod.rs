//! Flattening an image's layers into the entry stream (spec B.2), streaming
//! and hardened against hostile layers.
//!
//! [`flatten`] walks the layers from the top down, like go-containerregistry's
//! `mutate.Extract` that linuxkit uses: each path is emitted once, from the
//! topmost layer that has it; `.wh.<name>` hides `<name>` and everything
//! below it in lower layers; a non-directory hides everything below it in
//! lower layers. Unlike linuxkit, opaque markers (`.wh..wh..opq`) are
//! honoured. Then linuxkit's per-entry filter is applied (dropped names,
//! `etc/hosts` and `etc/resolv.conf` replaced, the destination prefix, the
//! "touch" set) and every entry gets its provenance records.
//!
//! File data flows from the decompressor straight into the [`Sink`]; memory
//! grows with the number of paths only. Every layer is opened once.
//!
//! Hostile input is rejected with a [`FlattenError`] naming the image, the
//! layer and the entry: paths that climb out of the root, hard links out of
//! the image or to anything not already written, writes through a symlink
//! or file of the same layer, device nodes in container and volume images
//! (unless allowed), non-UTF-8 names, corrupt or truncated tar and
//! compression streams, and anything over the [`FlattenOptions`] limits.
//! Symlinks are stored verbatim and never followed. Absolute names and
//! `..` that stays inside the image are contained: cleaned to a relative
//! name. Duplicates inside one layer are all written, in order, so the later
//! one wins on extraction, as with tar.
//!
//! Choices where kiln differs from linuxkit (for docs/compat.md) are listed
//! in [`filter`] (touch set de-duplication) and on [`flatten`].

mod decompress;
mod error;
mod filter;
mod sanitize;
mod tarstream;
mod whiteout;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;
use std::rc::Rc;

pub use decompress::{detect, Compression};
pub use error::{FlattenError, FlattenErrorKind, Limit};
pub use filter::{DROPPED, HOSTS, NO_RESOLV_CONF, RESOLV_CONF_LINK, TOUCH};

use super::fs::{Entry, Kind, Sink, LINUXKIT_EPOCH};
use super::store::{Descriptor, ResolvedImage, Store};
use decompress::{Guard, GuardLimits, Meter, RawCounter};
use filter::Action;
use tarstream::{Member, TarLimits, TarStream};
use whiteout::{Decision, Tree};

/// The PAX record naming the image an entry came from.
pub const SOURCE_RECORD: &str = "LINUXKIT.source";
/// The PAX record naming where in the spec an entry came from.
pub const LOCATION_RECORD: &str = "LINUXKIT.location";

/// What the image is used for; decides the `etc/resolv.conf` rule and
/// whether device nodes are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The kernel image (its stream is filtered further, B.3).
    Kernel,
    /// An init image.
    Init,
    /// A volume's image.
    Volume,
    /// An onboot, onshutdown or service container.
    Container,
    /// A tarball copied as it is: no per-entry filter and no touch entries
    /// (the kernel image's module tarball, B.3).
    Raw,
}

impl Role {
    /// `kernel`, `init`, `volume` or `container`.
    pub fn name(self) -> &'static str {
        match self {
            Role::Kernel => "kernel",
            Role::Init => "init",
            Role::Volume => "volume",
            Role::Container => "container",
            Role::Raw => "raw",
        }
    }

    /// Init and volume images get `etc/resolv.conf` as a symlink to
    /// [`RESOLV_CONF_LINK`]; the others get a placeholder file.
    pub fn resolv_conf_symlink(self) -> bool {
        matches!(self, Role::Init | Role::Volume)
    }

    /// Container and volume images may only carry device nodes when
    /// [`FlattenOptions::allow_devices`] says so (both end up mounted into
    /// containers). Init and kernel images are the OS itself.
    pub fn restricts_devices(self) -> bool {
        matches!(self, Role::Container | Role::Volume)
    }
}

/// Limits and policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlattenOptions {
    /// Most uncompressed bytes read from all layers of an image, and most
    /// file data written for it. Default 32 GiB.
    pub max_total_bytes: u64,
    /// Most uncompressed bytes per compressed byte of a layer. Default 1100:
    /// just above deflate's maximum (about 1032), so no gzip layer trips
    /// it, while zstd streams of long runs (up to 32768:1) are refused
    /// beyond the grace bytes.
    pub max_ratio: u64,
    /// The ratio is only checked after this many uncompressed bytes of a
    /// layer, so small, very compressible layers pass. Default 64 MiB.
    pub ratio_grace_bytes: u64,
    /// Most tar entries in all layers of an image. Default 1,000,000.
    pub max_entries: u64,
    /// Longest path or link target in bytes. Default 4096 (`PATH_MAX`).
    pub max_path_len: usize,
    /// Most bytes of PAX, GNU long-name and global headers in front of one
    /// entry. Default 1 MiB.
    pub max_metadata_bytes: u64,
    /// Allow character and block devices in container and volume images.
    /// Default false.
    pub allow_devices: bool,
}

impl Default for FlattenOptions {
    fn default() -> Self {
        FlattenOptions {
            max_total_bytes: 32 << 30,
            max_ratio: 1100,
            ratio_grace_bytes: 64 << 20,
            max_entries: 1_000_000,
            max_path_len: 4096,
            max_metadata_bytes: 1 << 20,
            allow_devices: false,
        }
    }
}

/// One layer as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerStats {
    /// The layer's label (its digest for store layers).
    pub label: String,
    /// The compression found in its bytes.
    pub compression: Compression,
    /// Blob bytes read (the rest of the blob after the archive end is not).
    pub compressed_bytes: u64,
    /// Uncompressed tar bytes read.
    pub uncompressed_bytes: u64,
    /// Tar entries (whiteouts and hidden ones included).
    pub entries: u64,
}

/// What a flatten did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlattenStats {
    /// Per layer, in walk order (top layer first).
    pub layers: Vec<LayerStats>,
    /// Tar entries read from all layers.
    pub entries_read: u64,
    /// Entries passed to the sink (touch entries included).
    pub written: u64,
    /// File data bytes passed to the sink.
    pub data_bytes: u64,
    /// Entries hidden by upper layers (already taken, whited out, below an
    /// opaque directory or a non-directory, or shadowed by an upper
    /// layer's directory).
    pub hidden: u64,
    /// Whiteout entries seen.
    pub whiteouts: u64,
    /// Opaque markers seen.
    pub opaque_dirs: u64,
    /// Entries dropped by the filter.
    pub dropped: u64,
    /// `etc/hosts` / `etc/resolv.conf` entries replaced.
    pub replaced: u64,
    /// Touch entries appended after the image.
    pub touched: u64,
    /// Later duplicates within one layer (written again, so they win).
    pub duplicates: u64,
    /// Root (`./`) entries and AUFS metadata (`.wh..wh.*`) skipped.
    pub skipped: u64,
}

type Opener<'a> = Box<dyn Fn() -> io::Result<Box<dyn Read + 'a>> + 'a>;

/// A layer blob that can be opened for reading.
pub struct LayerSource<'a> {
    label: String,
    media_type: Option<String>,
    open: Opener<'a>,
}

impl std::fmt::Debug for LayerSource<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayerSource")
            .field("label", &self.label)
            .field("media_type", &self.media_type)
            .finish_non_exhaustive()
    }
}

impl<'a> LayerSource<'a> {
    /// A layer opened by `open` (called once per flatten).
    pub fn new(
        label: impl Into<String>,
        open: impl Fn() -> io::Result<Box<dyn Read + 'a>> + 'a,
    ) -> Self {
        LayerSource {
            label: label.into(),
            media_type: None,
            open: Box::new(open),
        }
    }

    /// A layer held in memory.
    pub fn from_bytes(label: impl Into<String>, bytes: &'a [u8]) -> Self {
        Self::new(label, move || Ok(Box::new(bytes) as Box<dyn Read + 'a>))
    }

    /// A layer in a file.
    pub fn from_path(label: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        Self::new(label, move || {
            Ok(Box::new(File::open(&path)?) as Box<dyn Read + 'a>)
        })
    }

    /// A layer blob in the store, labelled with its digest.
    pub fn from_store(store: &'a Store, descriptor: &Descriptor) -> Self {
        let digest = descriptor.digest.clone();
        let mut source = Self::new(digest.to_string(), move || {
            let file = store.open_blob(&digest).map_err(io::Error::other)?;
            Ok(Box::new(file) as Box<dyn Read + 'a>)
        });
        source.media_type = Some(descriptor.media_type.clone());
        source
    }

    /// The layers of a resolved image, bottom first (manifest order), ready
    /// for [`flatten`].
    pub fn for_image(store: &'a Store, image: &ResolvedImage) -> Vec<LayerSource<'a>> {
        image
            .layers
            .iter()
            .map(|d| Self::from_store(store, d))
            .collect()
    }

    /// The label used in errors and stats.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The media type from the manifest, if known (informational: the
    /// compression is detected from the bytes).
    pub fn media_type(&self) -> Option<&str> {
        self.media_type.as_deref()
    }

    /// Opens the blob.
    pub fn open(&self) -> io::Result<Box<dyn Read + 'a>> {
        (self.open)()
    }
}

/// Flattens `layers` (bottom first, as in the manifest) into `sink`.
///
/// `prefix` is the destination directory (`""` for the root, or for
/// example `containers/services/foo/lower/`); it is put in front of every
/// name and hard-link target. `provenance` is the `(LINUXKIT.source,
/// LINUXKIT.location)` pair recorded on every entry, and the source names
/// the image in errors.
///
/// Differences from linuxkit, all deliberate:
///
/// * opaque whiteouts are honoured (linuxkit ignores them);
/// * whiteouts and opaque markers only hide entries of lower layers (the
///   OCI rule); go-containerregistry also hides later entries of the same
///   layer;
/// * within one layer the last entry for a path wins (written after the
///   earlier ones); go-containerregistry keeps the first;
/// * the touch set is de-duplicated (see the `filter` module docs);
/// * root entries (`./`), global PAX headers and AUFS `.wh..wh.*` metadata
///   are not written (go-containerregistry writes `.` and global headers
///   through);
/// * names and hard-link targets are cleaned (linuxkit only cleans names);
/// * a non-directory in a lower layer at a path where an upper layer has
///   entries below it is dropped (linuxkit writes it after them);
/// * PAX records other than xattrs (`SCHILY.xattr.*`) and the ones applied
///   to the header (`path`, `linkpath`, `size`, `uid`, `gid`, `mtime`) are
///   not carried over: [`Entry`] has no place for them;
/// * hostile input is rejected (see the module docs), sparse files too.
pub fn flatten(
    layers: &[LayerSource<'_>],
    opts: &FlattenOptions,
    role: Role,
    prefix: &str,
    provenance: (&str, &str),
    sink: &mut dyn Sink,
) -> Result<FlattenStats, FlattenError> {
    let image = provenance.0;
    let prefix = sanitize::prefix(prefix).map_err(|k| FlattenError::new(image, k))?;
    let mut run = Run {
        opts,
        role,
        prefix,
        provenance: BTreeMap::from([
            (SOURCE_RECORD.to_owned(), provenance.0.to_owned()),
            (LOCATION_RECORD.to_owned(), provenance.1.to_owned()),
        ]),
        tree: Tree::default(),
        stats: FlattenStats::default(),
        total_uncompressed: 0,
    };
    for (walk, layer) in layers.iter().rev().enumerate() {
        let walk = u32::try_from(walk).unwrap_or(u32::MAX);
        run.layer(walk, layer, sink)
            .map_err(|(path, kind)| FlattenError {
                image: image.to_owned(),
                layer: Some(layer.label().to_owned()),
                path,
                kind,
            })?;
    }
    if role != Role::Raw {
        run.touch(sink).map_err(|(path, kind)| FlattenError {
            image: image.to_owned(),
            layer: None,
            path,
            kind,
        })?;
    }
    Ok(run.stats)
}

type Failure = (Option<String>, FlattenErrorKind);

struct Run<'o> {
    opts: &'o FlattenOptions,
    role: Role,
    prefix: String,
    provenance: BTreeMap<String, String>,
    tree: Tree,
    stats: FlattenStats,
    total_uncompressed: u64,
}

impl Run<'_> {
    fn layer(
        &mut self,
        walk: u32,
        source: &LayerSource<'_>,
        sink: &mut dyn Sink,
    ) -> Result<(), Failure> {
        let raw = source
            .open()
            .map_err(|e| (None, FlattenErrorKind::Open(e)))?;
        let meter = Rc::new(Meter::default());
        let (compression, decoded) =
            decompress::open(RawCounter::new(raw, meter.clone())).map_err(|k| (None, k))?;
        let limits = GuardLimits {
            max_total: self.opts.max_total_bytes,
            max_ratio: self.opts.max_ratio,
            ratio_grace: self.opts.ratio_grace_bytes,
        };
        let guard = Guard::new(decoded, meter, compression, limits, self.total_uncompressed);
        let mut tar = TarStream::new(guard);
        let tar_limits = TarLimits {
            max_path_len: self.opts.max_path_len,
            max_metadata: self.opts.max_metadata_bytes,
        };
        let mut entries = 0;
        while let Some(member) = tar.next(&tar_limits).map_err(|e| (e.path, e.kind))? {
            entries += 1;
            self.stats.entries_read += 1;
            if self.stats.entries_read > self.opts.max_entries {
                return Err((
                    Some(lossy(&member.path)),
                    FlattenErrorKind::LimitExceeded {
                        limit: Limit::Entries,
                        value: self.stats.entries_read,
                        max: self.opts.max_entries,
                    },
                ));
            }
            self.member(walk, &member, &mut tar, sink)
                .map_err(|k| (Some(lossy(&member.path)), k))?;
        }
        self.total_uncompressed += tar.guard().decompressed();
        self.stats.layers.push(LayerStats {
            label: source.label().to_owned(),
            compression,
            compressed_bytes: tar.guard().compressed(),
            uncompressed_bytes: tar.guard().decompressed(),
            entries,
        });
        Ok(())
    }

    fn member(
        &mut self,
        walk: u32,
        m: &Member,
        tar: &mut TarStream<'_>,
        sink: &mut dyn Sink,
    ) -> Result<(), FlattenErrorKind> {
        let raw_path = sanitize::name(&m.path, "path")?;
        let is_dir = m.typeflag == b'5' || (m.typeflag == 0 && raw_path.ends_with('/'));
        let name = sanitize::clean(raw_path).ok_or(FlattenErrorKind::PathEscapes)?;

        if name.is_empty() {
            if is_dir {
                self.stats.skipped += 1;
                return Ok(());
            }
            return Err(FlattenErrorKind::RootNotDirectory);
        }

        let action = if self.role == Role::Raw {
            Action::Keep
        } else {
            filter::action(&name, is_dir)
        };
        // What the entry is once written: a replaced etc/hosts is a file.
        let written_dir = is_dir && action != Action::Replace;

        let (parent, base) = sanitize::split(&name);
        if let Some(hidden) = base.strip_prefix(".wh.") {
            if base == ".wh..wh..opq" {
                self.tree.opaque(parent, walk);
                self.stats.opaque_dirs += 1;
            } else if base.starts_with(".wh..wh.") {
                self.stats.skipped += 1;
            } else if matches!(hidden, "" | "." | "..") {
                return Err(FlattenErrorKind::InvalidWhiteout);
            } else {
                self.tree.whiteout(&sanitize::join(parent, hidden), walk);
                self.stats.whiteouts += 1;
            }
            return Ok(());
        }

        let kind = match m.typeflag {
            b'0' | b'7' | 0 if !is_dir => Kind::File,
            b'5' | 0 => Kind::Dir,
            b'1' => Kind::Hardlink {
                target: String::new(),
            },
            b'2' => Kind::Symlink {
                target: String::new(),
            },
            b'3' => Kind::Char {
                major: m.dev_major,
                minor: m.dev_minor,
            },
            b'4' => Kind::Block {
                major: m.dev_major,
                minor: m.dev_minor,
            },
            b'6' => Kind::Fifo,
            other => return Err(FlattenErrorKind::UnsupportedEntryType(char::from(other))),
        };

        let duplicate = match self.tree.decide(&name, written_dir, walk)? {
            Decision::Hidden | Decision::Shadowed => {
                self.stats.hidden += 1;
                return Ok(());
            }
            Decision::Take { duplicate } => duplicate,
        };

        match action {
            Action::Drop => {
                self.tree.take(&name, walk, is_dir, false);
                self.stats.dropped += 1;
                return Ok(());
            }
            Action::Replace => {
                let already = self.tree.taken(&name).is_some_and(|t| t.written);
                self.tree.take(&name, walk, false, true);
                if !already {
                    let (entry, data) = filter::touch_entry(&name, self.role);
                    self.write(entry, &mut &data[..], sink)
                        .map_err(FlattenErrorKind::Sink)?;
                    self.stats.replaced += 1;
                }
                return Ok(());
            }
            Action::Normalize { .. } | Action::Keep => {}
        }

        let kind = match kind {
            Kind::Hardlink { .. } => Kind::Hardlink {
                target: self.hardlink_target(&name, &m.link)?,
            },
            Kind::Symlink { .. } => {
                let target = sanitize::name(&m.link, "symlink target")?;
                if target.is_empty() {
                    return Err(FlattenErrorKind::InvalidName {
                        what: "symlink target",
                        reason: "empty",
                    });
                }
                Kind::Symlink {
                    target: target.to_owned(),
                }
            }
            Kind::Char { major, minor } | Kind::Block { major, minor }
                if self.role.restricts_devices() && !self.opts.allow_devices =>
            {
                return Err(FlattenErrorKind::DeviceNotAllowed {
                    kind: if matches!(kind, Kind::Char { .. }) {
                        "character"
                    } else {
                        "block"
                    },
                    major,
                    minor,
                    role: self.role.name(),
                });
            }
            k => k,
        };

        let size = if kind == Kind::File { m.size } else { 0 };
        let data_total = self.stats.data_bytes.saturating_add(size);
        if data_total > self.opts.max_total_bytes {
            return Err(FlattenErrorKind::LimitExceeded {
                limit: Limit::TotalBytes,
                value: data_total,
                max: self.opts.max_total_bytes,
            });
        }
        let id = |what: &'static str, value: u64| {
            u32::try_from(value).map_err(|_| FlattenErrorKind::IdOutOfRange { what, value })
        };
        let mut entry = Entry {
            path: name.clone(),
            kind,
            mode: m.mode,
            uid: id("uid", m.uid)?,
            gid: id("gid", m.gid)?,
            mtime: m.mtime,
            size,
            xattrs: m.xattrs.clone(),
            provenance: BTreeMap::new(),
        };
        if let Action::Normalize { mode } = action {
            entry.mode = mode;
            entry.uid = 0;
            entry.gid = 0;
            entry.mtime = LINUXKIT_EPOCH;
        }

        let result = if size > 0 {
            self.write(entry, &mut tar.data(), sink)
        } else {
            self.write(entry, &mut io::empty(), sink)
        };
        if let Err(e) = result {
            return Err(tar.reading_failure().unwrap_or(FlattenErrorKind::Sink(e)));
        }
        // A sink that stopped early (or swallowed an error) still gets the
        // stream checked to the end of the entry.
        tar.skip_data()?;
        if let Some(kind) = tar.reading_failure() {
            return Err(kind);
        }

        self.tree.take(&name, walk, is_dir, true);
        if duplicate {
            self.stats.duplicates += 1;
        }
        Ok(())
    }

    /// Cleans and checks a hard-link target; returns it prefixed.
    fn hardlink_target(&self, name: &str, raw: &[u8]) -> Result<String, FlattenErrorKind> {
        let raw = sanitize::name(raw, "hard-link target")?;
        let target = sanitize::clean(raw).ok_or_else(|| FlattenErrorKind::LinkEscapes {
            target: raw.to_owned(),
        })?;
        if target == name {
            return Err(FlattenErrorKind::HardlinkToSelf);
        }
        match self.tree.taken(&target) {
            _ if target.is_empty() => Err(FlattenErrorKind::HardlinkToDirectory {
                target: raw.to_owned(),
            }),
            Some(t) if t.written && t.dir => Err(FlattenErrorKind::HardlinkToDirectory {
                target: raw.to_owned(),
            }),
            Some(t) if t.written => Ok(sanitize::join(&self.prefix, &target)),
            _ => Err(FlattenErrorKind::HardlinkTargetMissing {
                target: raw.to_owned(),
            }),
        }
    }

    /// Prefixes, stamps provenance and hands the entry to the sink.
    fn write(
        &mut self,
        mut entry: Entry,
        data: &mut dyn Read,
        sink: &mut dyn Sink,
    ) -> io::Result<()> {
        entry.path = sanitize::join(&self.prefix, &entry.path);
        entry.provenance = self.provenance.clone();
        sink.add(&entry, data)?;
        self.stats.written += 1;
        self.stats.data_bytes += entry.size;
        Ok(())
    }

    /// Appends the touch entries the image did not provide.
    fn touch(&mut self, sink: &mut dyn Sink) -> Result<(), Failure> {
        for key in TOUCH {
            let done = self
                .tree
                .taken(key)
                .is_some_and(|t| t.written && filter::satisfied(key, t.dir));
            if done {
                continue;
            }
            let (entry, data) = filter::touch_entry(key, self.role);
            self.write(entry, &mut &data[..], sink)
                .map_err(|e| (Some(key.to_owned()), FlattenErrorKind::Sink(e)))?;
            self.stats.touched += 1;
        }
        Ok(())
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
