//! The formats that carry the root filesystem as a filesystem image beside
//! the kernel (`kernel+squashfs`, `kernel+iso`): Debian's readers
//! (unsquashfs, xorriso through Rock Ridge and Joliet) list the same tree
//! as kiln's own `tar` output of the same build, file contents match, and
//! two builds in different directories give identical bytes. The spec adds an
//! init image with hard links, a device node, a fifo, a long name and a
//! file owned by someone other than root.

mod cache_common;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use cache_common::{fixtures, kiln_in, reference, registry_with};
use kiln_e2e::fixtures::{Fixture, FixtureOptions, TAG};
use kiln_e2e::oci::{ImageSpec, Layout, Platform, RunConfig};
use kiln_e2e::registry::Registry;
use kiln_e2e::tarball::{Node, Tree};
use kiln_e2e::tools;
use sha2::{Digest, Sha256};

const FORMATS: &str = "tar,kernel+squashfs,kernel+iso";
const NAME: &str = "rootfs";
const LONG_DIR: &str = "opt/edge/a-directory-name-that-is-rather-long-0123456789";

fn long_name() -> String {
    format!("{LONG_DIR}/{}", "f".repeat(200))
}

/// `kiln-test/edge`: one layer of entries the writers must not lose.
fn edge_fixture() -> Fixture {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("build_rootfs_images-edge");
    let _ = std::fs::remove_dir_all(&dir);
    let opts = FixtureOptions::from_env(&dir).unwrap();
    let mut tree = Tree::new();
    tree.file("opt/edge/a-original", 0o640, "linked twice\n");
    tree.insert(
        "opt/edge/hardlink",
        Node::Hardlink {
            target: "opt/edge/a-original".into(),
        },
    );
    tree.insert(
        "opt/edge/null",
        Node::Char {
            mode: 0o666,
            major: 1,
            minor: 3,
        },
    );
    tree.insert("opt/edge/pipe", Node::Fifo { mode: 0o600 });
    tree.insert(
        "opt/edge/owned",
        Node::Owned {
            mode: 0o4750,
            uid: 1000,
            gid: 100,
            data: b"setuid, not root's\n".to_vec(),
        },
    );
    tree.file(&long_name(), 0o644, "a long name\n");
    tree.file(
        "opt/edge/big",
        0o644,
        (0..300_000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>(),
    );
    tree.symlink("opt/edge/dangling", "../nowhere");
    tree.dir("opt/edge/sticky", 0o1777);
    let layout_dir = dir.join("layout");
    let layout = Layout::create(&layout_dir, opts.source_date_epoch).unwrap();
    let manifest = layout
        .write_image(&ImageSpec {
            platform: Platform::amd64(),
            config: RunConfig::default(),
            layers: vec![tree],
            description: "kiln-e2e edge entries".into(),
        })
        .unwrap();
    let mut root = manifest.clone();
    root.platform = None;
    layout.set_tags(&[(TAG, &root)]).unwrap();
    Fixture {
        name: "kiln-test/edge".into(),
        tag: TAG.into(),
        root,
        manifests: vec![manifest],
        layout: layout_dir,
    }
}

fn spec(registry: &Registry, edge: &Fixture) -> String {
    let set = fixtures();
    let r = |f| reference(registry, f);
    format!(
        "kernel:
  image: {kernel}
  cmdline: \"console=ttyS0\"
init:
  - {init}
  - {runc}
  - {edge}
onboot:
  - name: plain
    image: {plain}
",
        kernel = r(&set.kernel),
        init = r(&set.init),
        runc = r(&set.runc),
        edge = r(edge),
        plain = r(&set.plain),
    )
}

fn build(dir: &Path, spec: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(format!("{NAME}.yml")), spec).unwrap();
    let out = dir.join("out");
    let run = kiln_in(dir)
        .args(["build", "-f", FORMATS, "--dir"])
        .arg(&out)
        .arg(format!("{NAME}.yml"))
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "kiln build failed:\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    out
}

struct Built {
    a: PathBuf,
    b: PathBuf,
}

fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let set = fixtures();
        let edge = edge_fixture();
        let registry = registry_with(&[&set.kernel, &set.init, &set.runc, &set.plain, &edge]);
        let spec = spec(&registry, &edge);
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("build_rootfs_images-out");
        let _ = std::fs::remove_dir_all(&root);
        let a = build(&root.join("a"), &spec);
        std::thread::sleep(Duration::from_millis(1100));
        let b = build(&root.join("b"), &spec);
        Built { a, b }
    })
}

fn output(file: &str) -> PathBuf {
    built().a.join(format!("{NAME}{file}"))
}

fn tool(name: &str, package: &str) -> Command {
    Command::new(tools::find(name, package).unwrap_or_else(|e| panic!("{e:#}")))
}

fn stdout_of(cmd: &mut Command) -> String {
    tools::run_stdout(cmd).unwrap_or_else(|e| panic!("{e:#}"))
}

/// `ls -l`'s mode string.
fn mode_string(kind: char, mode: u32) -> String {
    let mut s = String::from(kind);
    for (shift, special, set, unset) in [
        (6, 0o4000, 's', 'S'),
        (3, 0o2000, 's', 'S'),
        (0, 0o1000, 't', 'T'),
    ] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(match (bits & 1 != 0, mode & special != 0) {
            (true, true) => set,
            (false, true) => unset,
            (true, false) => 'x',
            (false, false) => '-',
        });
    }
    s
}

/// One entry as `ls -l` shows it: mode string, `uid/gid`, and the link
/// target or device numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Listed {
    mode: String,
    owner: String,
    extra: String,
}

/// The tree a tar extraction of kiln's `tar` output leaves, without
/// `boot/*`; hard links are files with their target's contents.
fn tar_tree() -> (BTreeMap<String, Listed>, BTreeMap<String, Vec<u8>>) {
    let bytes = std::fs::read(output(".tar")).unwrap();
    let mut archive = tar::Archive::new(bytes.as_slice());
    let mut listed = BTreeMap::new();
    let mut contents: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry
            .path()
            .unwrap()
            .to_string_lossy()
            .trim_end_matches('/')
            .to_owned();
        if path.starts_with("boot/") || path == "Dockerfile" {
            continue;
        }
        let header = entry.header().clone();
        let mode = header.mode().unwrap();
        let link = || entry_link(&header);
        let (kind, extra) = match header.entry_type() {
            tar::EntryType::Regular => {
                let mut data = Vec::new();
                entry.read_to_end(&mut data).unwrap();
                contents.insert(path.clone(), data);
                ('-', String::new())
            }
            // A hard link is its target's inode.
            tar::EntryType::Link => {
                let target = link();
                let data = contents[&target].clone();
                contents.insert(path.clone(), data);
                let same = listed
                    .get(&target)
                    .cloned()
                    .unwrap_or_else(|| panic!("{path}: no target {target}"));
                listed.insert(path, same);
                continue;
            }
            tar::EntryType::Directory => ('d', String::new()),
            tar::EntryType::Symlink => ('l', link()),
            tar::EntryType::Char => (
                'c',
                format!(
                    "{},{}",
                    header.device_major().unwrap().unwrap(),
                    header.device_minor().unwrap().unwrap()
                ),
            ),
            tar::EntryType::Block => (
                'b',
                format!(
                    "{},{}",
                    header.device_major().unwrap().unwrap(),
                    header.device_minor().unwrap().unwrap()
                ),
            ),
            tar::EntryType::Fifo => ('p', String::new()),
            other => panic!("{path}: unexpected tar entry type {other:?}"),
        };
        if kind != '-' {
            contents.remove(&path);
        }
        listed.insert(
            path,
            Listed {
                mode: mode_string(kind, mode),
                owner: format!("{}/{}", header.uid().unwrap(), header.gid().unwrap()),
                extra,
            },
        );
    }
    (listed, contents)
}

fn entry_link(header: &tar::Header) -> String {
    header
        .link_name()
        .unwrap()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `unsquashfs -lln`'s listing, by path below the root.
fn squashfs_tree() -> BTreeMap<String, Listed> {
    let listing = stdout_of(
        tool("unsquashfs", "squashfs-tools")
            .env("TZ", "UTC")
            .arg("-lln")
            .arg(output("-squashfs.img")),
    );
    let mut tree = BTreeMap::new();
    for line in listing.lines() {
        let Some(at) = line.find(" squashfs-root") else {
            continue;
        };
        let fields: Vec<&str> = line[..at].split_whitespace().collect();
        let name = &line[at + " squashfs-root".len()..];
        let (name, target) = match name.split_once(" -> ") {
            Some((n, t)) => (n, t.to_owned()),
            None => (name, String::new()),
        };
        let path = name.trim_start_matches('/').to_owned();
        if path.is_empty() {
            continue;
        }
        let mode = fields[0].to_owned();
        let extra = match mode.chars().next() {
            Some('l') => target,
            Some('c' | 'b') => format!("{}{}", fields[2], fields[3]),
            _ => String::new(),
        };
        tree.insert(
            path,
            Listed {
                mode,
                owner: fields[1].to_owned(),
                extra,
            },
        );
    }
    tree
}

#[test]
fn both_builds_are_byte_identical() {
    let built = built();
    let mut names: Vec<String> = std::fs::read_dir(&built.a)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let expected: Vec<String> = ["-cmdline", "-kernel", "-squashfs.img", ".iso", ".tar"]
        .iter()
        .map(|s| format!("{NAME}{s}"))
        .collect();
    assert_eq!(names, expected);
    for name in names {
        let x = std::fs::read(built.a.join(&name)).unwrap();
        let y = std::fs::read(built.b.join(&name)).unwrap();
        assert!(x == y, "{name} differs between two builds");
    }
    assert_eq!(
        std::fs::read_to_string(output("-cmdline")).unwrap(),
        "console=ttyS0"
    );
    let kernel = std::fs::read(output("-kernel")).unwrap();
    assert_eq!(&kernel[0x202..0x206], b"HdrS");
}

#[test]
fn unsquashfs_lists_the_tar_tree() {
    let (expected, _) = tar_tree();
    let listed = squashfs_tree();
    for path in ["boot", "opt/edge/null", "opt/edge/owned", "opt/edge/pipe"] {
        assert!(listed.contains_key(path), "{path} missing");
    }
    assert!(!listed.contains_key("boot/kernel"));
    assert_eq!(listed["opt/edge/hardlink"].mode, "-rw-r-----");
    assert_eq!(listed["opt/edge/owned"].mode, "-rwsr-x---");
    assert_eq!(listed["opt/edge/owned"].owner, "1000/100");
    assert_eq!(listed["opt/edge/null"].extra, "1,3");
    assert_eq!(listed["opt/edge/sticky"].mode, "drwxrwxrwt");
    assert!(listed.contains_key(&long_name()));
    let only_tar: Vec<_> = expected
        .keys()
        .filter(|k| !listed.contains_key(*k))
        .collect();
    let only_squashfs: Vec<_> = listed
        .keys()
        .filter(|k| !expected.contains_key(*k))
        .collect();
    assert!(
        only_tar.is_empty() && only_squashfs.is_empty(),
        "only in tar: {only_tar:?}\nonly in squashfs: {only_squashfs:?}"
    );
    for (path, want) in &expected {
        assert_eq!(&listed[path], want, "{path}");
    }
}

#[test]
fn unsquashfs_extracts_the_tar_contents() {
    let (_, contents) = tar_tree();
    let long = long_name();
    let wanted: Vec<&str> = [
        "opt/edge/hardlink",
        "opt/edge/owned",
        "opt/edge/big",
        long.as_str(),
        "bin/busybox",
    ]
    .into_iter()
    .filter(|p| contents.contains_key(*p))
    .collect();
    assert!(wanted.len() >= 4, "fixture lacks files: {wanted:?}");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    stdout_of(
        tool("unsquashfs", "squashfs-tools")
            .arg("-d")
            .arg(&root)
            .arg(output("-squashfs.img"))
            .args(&wanted),
    );
    let sha = |b: &[u8]| hex::encode(Sha256::digest(b));
    for path in wanted {
        let got = std::fs::read(root.join(path)).unwrap();
        assert_eq!(sha(&got), sha(&contents[path]), "{path}");
    }
}

/// `xorriso -find / -exec lsdl` of the ISO, read through `read_fs`
/// (`any`: Rock Ridge; `norock`: Joliet), by path below the root.
fn iso_tree(read_fs: &str) -> BTreeMap<String, Listed> {
    let listing = stdout_of(
        tool("xorriso", "xorriso")
            .args(["-read_fs", read_fs, "-indev"])
            .arg(output(".iso"))
            .args(["-find", "/", "-exec", "lsdl"]),
    );
    let mut tree = BTreeMap::new();
    for line in listing.lines() {
        let Some(at) = line.find(" '/") else {
            continue;
        };
        let fields: Vec<&str> = line[..at].split_whitespace().collect();
        let rest = &line[at + 2..];
        let (name, target) = match rest.split_once("' -> '") {
            Some((n, t)) => (n, t.trim_end_matches('\'').to_owned()),
            None => (rest.trim_end_matches('\''), String::new()),
        };
        let path = name.trim_start_matches('/').to_owned();
        if path.is_empty() {
            continue;
        }
        let mode = fields[0].to_owned();
        let extra = match mode.chars().next() {
            Some('l') => target,
            Some('c' | 'b') => fields[4].to_owned(),
            _ => String::new(),
        };
        tree.insert(
            path,
            Listed {
                mode,
                owner: format!("{}/{}", fields[2], fields[3]),
                extra,
            },
        );
    }
    tree
}

#[test]
fn xorriso_reads_the_tar_tree_through_rock_ridge() {
    let (expected, _) = tar_tree();
    let listed = iso_tree("any");
    assert_eq!(listed["opt/edge/owned"].owner, "1000/100");
    assert_eq!(listed["opt/edge/null"].extra, "1,3");
    assert_eq!(listed["opt/edge/dangling"].extra, "../nowhere");
    assert!(!listed.contains_key("boot/kernel"));
    let only_tar: Vec<_> = expected
        .keys()
        .filter(|k| !listed.contains_key(*k))
        .collect();
    let only_iso: Vec<_> = listed
        .keys()
        .filter(|k| !expected.contains_key(*k))
        .collect();
    assert!(
        only_tar.is_empty() && only_iso.is_empty(),
        "only in tar: {only_tar:?}\nonly in the ISO: {only_iso:?}"
    );
    for (path, want) in &expected {
        assert_eq!(&listed[path], want, "{path}");
    }
    let volume = stdout_of(
        tool("xorriso", "xorriso")
            .arg("-indev")
            .arg(output(".iso"))
            .args(["-pvd_info"]),
    );
    assert!(volume.contains("Volume Id    : LinuxKit"), "{volume}");
}

/// Joliet holds the same tree, names cut at 103 characters.
#[test]
fn xorriso_reads_the_same_names_through_joliet() {
    let (expected, _) = tar_tree();
    let cut = |p: &str| {
        p.split('/')
            .map(|c| c.chars().take(103).collect::<String>())
            .collect::<Vec<_>>()
            .join("/")
    };
    let want: Vec<String> = expected.keys().map(|p| cut(p)).collect();
    let got: Vec<String> = iso_tree("norock").into_keys().collect();
    assert_eq!(got, want);
}

#[test]
fn xorriso_extracts_the_tar_contents() {
    let (_, contents) = tar_tree();
    let dir = tempfile::tempdir().unwrap();
    let wanted = [
        "opt/edge/a-original",
        "opt/edge/hardlink",
        "opt/edge/owned",
        "opt/edge/big",
        "bin/busybox",
    ];
    let mut cmd = tool("xorriso", "xorriso");
    cmd.args(["-osirrox", "on", "-indev"]).arg(output(".iso"));
    for (i, path) in wanted.iter().enumerate() {
        cmd.arg("-extract")
            .arg(format!("/{path}"))
            .arg(dir.path().join(i.to_string()));
    }
    stdout_of(&mut cmd);
    let sha = |b: &[u8]| hex::encode(Sha256::digest(b));
    for (i, path) in wanted.iter().enumerate() {
        let got = std::fs::read(dir.path().join(i.to_string())).unwrap();
        assert_eq!(sha(&got), sha(&contents[*path]), "{path}");
    }
}
