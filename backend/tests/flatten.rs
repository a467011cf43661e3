//! Normal-case behaviour of engine::flatten: layer formats, whiteouts,
//! opaque directories, links, PAX metadata, linuxkit's filter and touch set.

mod flatten_support;

use std::collections::BTreeMap;

use flatten_support::*;
use kiln_backend::engine::flatten::{
    flatten, Compression, FlattenOptions, LayerSource, Role, HOSTS, NO_RESOLV_CONF,
    RESOLV_CONF_LINK, TOUCH,
};
use kiln_backend::engine::fs::{Kind, LINUXKIT_EPOCH};
use kiln_backend::engine::store::{Descriptor, Digest, Store, OCI_LAYER_TAR_GZIP};
use sha2::{Digest as _, Sha256};

fn simple_layer() -> Vec<u8> {
    RawTar::new()
        .dir("./etc/")
        .file("./etc/motd", b"hello\n")
        .dir("./bin/")
        .file("./bin/sh", b"#!\n")
        .symlink("./bin/ash", "sh")
        .finish()
}

#[test]
fn plain_layer_keeps_metadata_and_cleans_names() {
    let mut t = RawTar::new();
    let mut h = H::new("./srv/", b'5');
    h.mode = 0o1777;
    h.uid = 1000;
    h.gid = 1001;
    h.mtime = 1_234_567_890;
    t.entry(h, b"");
    let mut f = H::new("srv/run.sh", b'0');
    f.mode = 0o4755;
    t.entry(f, b"echo hi\n");
    let (rec, stats) = run(&[t.finish()]).unwrap();
    let srv = rec.get("srv").unwrap();
    assert_eq!(srv.entry.kind, Kind::Dir);
    assert_eq!(
        (
            srv.entry.mode,
            srv.entry.uid,
            srv.entry.gid,
            srv.entry.mtime
        ),
        (0o1777, 1000, 1001, 1_234_567_890)
    );
    let run_sh = rec.get("srv/run.sh").unwrap();
    assert_eq!(run_sh.entry.mode, 0o4755);
    assert_eq!(run_sh.data, b"echo hi\n");
    assert_eq!(
        run_sh.entry.provenance,
        BTreeMap::from([
            ("LINUXKIT.location".to_owned(), "services[0]".to_owned()),
            ("LINUXKIT.source".to_owned(), IMAGE.to_owned()),
        ])
    );
    assert_eq!(stats.layers[0].compression, Compression::None);
    assert_eq!(stats.entries_read, 2);
    assert_eq!(image_paths(&rec, &stats), ["srv", "srv/run.sh"]);
}

#[test]
fn gzip_layer() {
    let layer = gzip(&simple_layer());
    let (rec, stats) = run(&[layer]).unwrap();
    assert_eq!(stats.layers[0].compression, Compression::Gzip);
    assert_eq!(rec.get("etc/motd").unwrap().data, b"hello\n");
    assert!(stats.layers[0].compressed_bytes > 0);
}

#[test]
fn multi_member_gzip_layer() {
    let tar = simple_layer();
    let (a, b) = tar.split_at(1000);
    let mut layer = gzip(a);
    layer.extend(gzip(b));
    let (rec, _) = run(&[layer]).unwrap();
    assert_eq!(rec.get("bin/sh").unwrap().data, b"#!\n");
}

#[test]
fn zstd_layer() {
    let layer = zstd(&simple_layer());
    let (rec, stats) = run(&[layer]).unwrap();
    assert_eq!(stats.layers[0].compression, Compression::Zstd);
    assert_eq!(rec.get("etc/motd").unwrap().data, b"hello\n");
}

#[test]
fn zstd_from_libzstd_multi_frame_checksummed_with_skippable_frame() {
    // zstd -19 --check and zstd -3 --check of two halves of a GNU tar
    // --format=pax archive, behind a skippable frame.
    let layer = include_bytes!("flatten_fixtures/libzstd-multiframe.tar.zst").to_vec();
    let (rec, stats) = run(&[layer]).unwrap();
    assert_eq!(stats.layers[0].compression, Compression::Zstd);
    assert_eq!(rec.get("etc/motd").unwrap().data, b"hello from libzstd\n");
    let blob = rec.get("usr/bin/blob").unwrap();
    assert_eq!(blob.data.len(), 20000);
    assert_eq!(
        hex::encode(Sha256::digest(&blob.data)),
        "8be7cf3422a95b9128f71be2b0f9e360389d02a58f530aac53be666aced489c9"
    );
}

#[test]
fn compression_is_detected_from_bytes_not_the_media_type() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let lease = store.lease().unwrap();
    // A plain tar stored under a gzip media type, and a gzip one.
    let plain = simple_layer();
    let gz = gzip(&RawTar::new().file("top", b"t").finish());
    let d1 = lease.put_bytes(&plain).unwrap();
    let d2 = lease.put_bytes(&gz).unwrap();
    let descs = [
        Descriptor::new(OCI_LAYER_TAR_GZIP, d1.clone(), plain.len() as u64),
        Descriptor::new(OCI_LAYER_TAR_GZIP, d2, gz.len() as u64),
    ];
    let layers: Vec<LayerSource<'_>> = descs
        .iter()
        .map(|d| LayerSource::from_store(&store, d))
        .collect();
    assert_eq!(layers[0].media_type(), Some(OCI_LAYER_TAR_GZIP));
    assert_eq!(layers[0].label(), d1.to_string());
    let mut rec = Recorder::default();
    let stats = flatten(
        &layers,
        &FlattenOptions::default(),
        Role::Container,
        "",
        (IMAGE, "services[0]"),
        &mut rec,
    )
    .unwrap();
    assert_eq!(stats.layers[0].compression, Compression::Gzip);
    assert_eq!(stats.layers[1].compression, Compression::None);
    assert_eq!(stats.layers[1].label, d1.to_string());
    assert_eq!(rec.get("top").unwrap().data, b"t");
    assert_eq!(rec.get("etc/motd").unwrap().data, b"hello\n");

    // A missing blob is an open error naming the digest.
    let missing = Descriptor::new(OCI_LAYER_TAR_GZIP, Digest::of(b"not stored"), 1);
    let err = flatten(
        &[LayerSource::from_store(&store, &missing)],
        &FlattenOptions::default(),
        Role::Container,
        "",
        (IMAGE, "services[0]"),
        &mut Recorder::default(),
    )
    .unwrap_err();
    assert_eq!(err.layer, Some(Digest::of(b"not stored").to_string()));
    assert!(err.to_string().contains("cannot open"), "{err}");
}

#[test]
fn top_layer_wins_and_the_walk_is_top_down() {
    let lower = RawTar::new()
        .dir("etc")
        .file("etc/a", b"lower a")
        .file("etc/b", b"lower b")
        .finish();
    let upper = RawTar::new().dir("etc").file("etc/a", b"upper a").finish();
    let (rec, stats) = run(&[lower, upper]).unwrap();
    assert_eq!(rec.count("etc/a"), 1);
    assert_eq!(rec.get("etc/a").unwrap().data, b"upper a");
    assert_eq!(rec.get("etc/b").unwrap().data, b"lower b");
    assert_eq!(image_paths(&rec, &stats), ["etc", "etc/a", "etc/b"]);
    assert_eq!(stats.hidden, 2); // lower etc and etc/a
    assert_eq!(stats.layers[0].label, "sha256:layer1");
}

#[test]
fn whiteout_hides_the_path_and_its_subtree_in_lower_layers() {
    let lower = RawTar::new()
        .dir("opt")
        .dir("opt/app")
        .file("opt/app/bin", b"x")
        .file("opt/keep", b"k")
        .file("gone", b"g")
        .finish();
    let upper = RawTar::new()
        .file("opt/.wh.app", b"")
        .file(".wh.gone", b"")
        .finish();
    let (rec, stats) = run(&[lower, upper]).unwrap();
    assert_eq!(image_paths(&rec, &stats), ["opt", "opt/keep"]);
    assert_eq!(stats.whiteouts, 2);
    assert!(rec.paths().iter().all(|p| !p.contains(".wh.")));
}

#[test]
fn whiteout_does_not_hide_entries_of_its_own_layer() {
    let lower = RawTar::new().file("f", b"lower").finish();
    let upper = RawTar::new()
        .file(".wh.f", b"")
        .file("f", b"upper")
        .finish();
    let (rec, _) = run(&[lower, upper]).unwrap();
    assert_eq!(rec.count("f"), 1);
    assert_eq!(rec.get("f").unwrap().data, b"upper");
}

#[test]
fn opaque_directory_hides_lower_contents_but_not_itself() {
    let lower = RawTar::new()
        .dir("var")
        .dir("var/cache")
        .file("var/cache/old", b"o")
        .dir("var/cache/sub")
        .file("var/cache/sub/old2", b"o")
        .file("var/other", b"v")
        .finish();
    let mid = RawTar::new()
        .file("var/cache/.wh..wh..opq", b"")
        .file("var/cache/new", b"n")
        .finish();
    let (rec, stats) = run(&[lower, mid]).unwrap();
    assert_eq!(
        image_paths(&rec, &stats),
        ["var/cache/new", "var", "var/cache", "var/other"]
    );
    assert_eq!(stats.opaque_dirs, 1);
}

#[test]
fn opaque_root_hides_every_lower_layer() {
    let lower = RawTar::new().file("a", b"a").dir("d").finish();
    let upper = RawTar::new()
        .file(".wh..wh..opq", b"")
        .file("b", b"b")
        .finish();
    let (rec, stats) = run(&[lower, upper]).unwrap();
    assert_eq!(image_paths(&rec, &stats), ["b"]);
}

#[test]
fn aufs_metadata_is_skipped() {
    let layer = RawTar::new()
        .dir(".wh..wh.plnk")
        .file(".wh..wh.aufs", b"")
        .file("a", b"a")
        .finish();
    let (rec, stats) = run(&[layer]).unwrap();
    assert_eq!(image_paths(&rec, &stats), ["a"]);
    assert_eq!(stats.skipped, 2);
}

#[test]
fn non_directory_hides_the_lower_subtree() {
    let lower = RawTar::new()
        .dir("lib")
        .file("lib/libc.so", b"c")
        .dir("lib/x")
        .file("lib/x/y", b"y")
        .finish();
    let upper = RawTar::new().symlink("lib", "usr/lib").finish();
    let (rec, stats) = run(&[lower, upper]).unwrap();
    assert_eq!(image_paths(&rec, &stats), ["lib"]);
    assert_eq!(
        rec.get("lib").unwrap().entry.kind,
        Kind::Symlink {
            target: "usr/lib".into()
        }
    );
}

#[test]
fn lower_non_directory_under_upper_children_is_shadowed() {
    // The upper layer has lib/x without a lib header; the lower layer's
    // lib symlink must not be written after lib/x.
    let lower = RawTar::new().symlink("lib", "/etc").finish();
    let upper = RawTar::new().file("lib/x", b"x").finish();
    let (rec, stats) = run(&[lower, upper]).unwrap();
    assert_eq!(image_paths(&rec, &stats), ["lib/x"]);
    // A lower directory header is still written.
    let lower = RawTar::new().dir("lib").finish();
    let upper = RawTar::new().file("lib/x", b"x").finish();
    let (rec, stats) = run(&[lower, upper]).unwrap();
    assert_eq!(image_paths(&rec, &stats), ["lib/x", "lib"]);
}

#[test]
fn hardlinks_are_cleaned_and_prefixed() {
    let lower = RawTar::new().dir("bin").file("bin/busybox", b"BB").finish();
    let upper = RawTar::new()
        .dir("sbin")
        .hardlink("sbin/init", "./bin/busybox")
        .hardlink("sbin/halt", "/bin/../bin/busybox")
        .finish();
    // bin/busybox is only in the lower layer: not yet written when the
    // upper links come. Put the target in the upper layer instead.
    let err = run(&[lower.clone(), upper]).unwrap_err();
    assert!(err.to_string().contains("hard link"), "{err}");

    let layer = RawTar::new()
        .dir("bin")
        .file("bin/busybox", b"BB")
        .dir("sbin")
        .hardlink("sbin/init", "./bin/busybox")
        .hardlink("sbin/halt", "/bin/../bin/busybox")
        .finish();
    let (rec, _) = run_with(
        &[layer],
        &FlattenOptions::default(),
        Role::Container,
        "containers/onboot/000-x/lower/",
    )
    .unwrap();
    for link in ["sbin/init", "sbin/halt"] {
        let e = &rec
            .get(&format!("containers/onboot/000-x/lower/{link}"))
            .unwrap()
            .entry;
        assert_eq!(
            e.kind,
            Kind::Hardlink {
                target: "containers/onboot/000-x/lower/bin/busybox".into()
            }
        );
        assert_eq!(e.size, 0);
    }
    // A hard link in a lower layer may point at an upper layer's file.
    let upper = RawTar::new().file("bin/busybox", b"new").finish();
    let lower = RawTar::new().hardlink("sbin/sh", "bin/busybox").finish();
    let (rec, _) = run(&[lower, upper]).unwrap();
    assert_eq!(
        rec.get("sbin/sh").unwrap().entry.kind,
        Kind::Hardlink {
            target: "bin/busybox".into()
        }
    );
}

#[test]
fn symlinks_are_stored_verbatim() {
    let layer = RawTar::new()
        .symlink("abs", "/etc/shadow")
        .symlink("up", "../../../../../../etc/passwd")
        .symlink("dots", "./a/./b/")
        .finish();
    let (rec, _) = run_with(
        &[layer],
        &FlattenOptions::default(),
        Role::Container,
        "containers/services/x/lower",
    )
    .unwrap();
    let target = |p: &str| match &rec
        .get(&format!("containers/services/x/lower/{p}"))
        .unwrap()
        .entry
        .kind
    {
        Kind::Symlink { target } => target.clone(),
        k => panic!("{k:?}"),
    };
    assert_eq!(target("abs"), "/etc/shadow");
    assert_eq!(target("up"), "../../../../../../etc/passwd");
    assert_eq!(target("dots"), "./a/./b/");
    assert_eq!(
        rec.get("containers/services/x/lower/abs")
            .unwrap()
            .entry
            .mode,
        0o777
    );
}

#[test]
fn pax_metadata_xattrs_and_long_names() {
    // security.capability with a 0x0a byte: the tar crate's PAX parser
    // would split the record there.
    let cap = b"\x01\x00\x00\x02\x0a\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00";
    let long_dir = "d".repeat(120);
    let long_file = format!("{long_dir}/{}", "f".repeat(150));
    let long_target = format!("/{}", "t".repeat(200));
    let mut t = RawTar::new();
    t.pax(&[
        ("SCHILY.xattr.security.capability", cap),
        ("SCHILY.xattr.user.note", b"line1\nline2"),
        ("uid", b"4294967295"),
        ("gid", b"70000"),
        ("mtime", b"1700000000.987654321"),
        ("atime", b"1700000001"),
        ("path", format!("./{long_file}").as_bytes()),
    ]);
    t.file("short-ustar-name", b"capped");
    t.gnu_long(b'L', format!("{long_dir}/gnu-long-link").as_bytes());
    t.gnu_long(b'K', long_target.as_bytes());
    t.symlink("ignored-short-name", "ignored");
    let (rec, _) = run(&[t.finish()]).unwrap();
    let f = rec.get(&long_file).unwrap();
    assert_eq!(f.data, b"capped");
    assert_eq!(f.entry.xattrs["security.capability"], cap.to_vec());
    assert_eq!(f.entry.xattrs["user.note"], b"line1\nline2".to_vec());
    assert_eq!(f.entry.uid, u32::MAX);
    assert_eq!(f.entry.gid, 70000);
    assert_eq!(f.entry.mtime, 1_700_000_000);
    let l = rec.get(&format!("{long_dir}/gnu-long-link")).unwrap();
    assert_eq!(
        l.entry.kind,
        Kind::Symlink {
            target: long_target
        }
    );
}

#[test]
fn written_by_the_tar_crate_builder() {
    // Ordinary archives from another writer, GNU format.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_size(0);
    b.append_data(&mut h, "usr/", &[][..]).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(3);
    let long = format!("usr/{}", "n".repeat(200));
    b.append_data(&mut h, &long, &b"abc"[..]).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Fifo);
    h.set_size(0);
    b.append_data(&mut h, "usr/fifo", &[][..]).unwrap();
    let layer = b.into_inner().unwrap();
    let (rec, _) = run(&[layer]).unwrap();
    assert_eq!(rec.get(&long).unwrap().data, b"abc");
    assert_eq!(rec.get("usr/fifo").unwrap().entry.kind, Kind::Fifo);
    assert_eq!(rec.get("usr").unwrap().entry.kind, Kind::Dir);
}

#[test]
fn v7_directory_and_root_entry_and_global_header() {
    let mut t = RawTar::new();
    t.entry(
        H::new("pax_global_header", b'g'),
        &pax_record("comment", b"abc"),
    );
    t.dir("./");
    t.entry(H::new("olddir/", 0), b"");
    t.file("olddir/f", b"f");
    let (rec, stats) = run(&[t.finish()]).unwrap();
    assert_eq!(image_paths(&rec, &stats), ["olddir", "olddir/f"]);
    assert_eq!(rec.get("olddir").unwrap().entry.kind, Kind::Dir);
    assert_eq!(stats.skipped, 1);
}

#[test]
fn devices_are_allowed_in_init_images_and_by_option() {
    let mut t = RawTar::new();
    let mut h = H::new("dev/null", b'3');
    h.major = 1;
    h.minor = 3;
    t.entry(h, b"");
    let mut h = H::new("dev/sda", b'4');
    h.major = 8;
    t.entry(h, b"");
    let layer = t.finish();
    let (rec, _) = run_with(
        std::slice::from_ref(&layer),
        &FlattenOptions::default(),
        Role::Init,
        "",
    )
    .unwrap();
    assert_eq!(
        rec.get("dev/null").unwrap().entry.kind,
        Kind::Char { major: 1, minor: 3 }
    );
    assert_eq!(
        rec.get("dev/sda").unwrap().entry.kind,
        Kind::Block { major: 8, minor: 0 }
    );
    let opts = FlattenOptions {
        allow_devices: true,
        ..FlattenOptions::default()
    };
    assert!(run_with(&[layer], &opts, Role::Container, "").is_ok());
}

#[test]
fn dropped_names() {
    let mut t = RawTar::new();
    t.file(".dockerenv", b"")
        .file("Dockerfile", b"FROM x")
        .dir("dev")
        .dir("dev/pts")
        .dir("dev/shm")
        .file("etc/hostname", b"box");
    let mut console = H::new("dev/console", b'3');
    console.major = 5;
    console.minor = 1;
    t.entry(console, b"");
    t.file("keep/Dockerfile", b"kept: not an exact match");
    // dev/console is a device, but dropped before the device policy.
    let (rec, stats) = run(&[t.finish()]).unwrap();
    assert_eq!(stats.dropped, 6);
    assert_eq!(image_paths(&rec, &stats), ["dev", "keep/Dockerfile"]);
}

#[test]
fn etc_hosts_and_resolv_conf_are_replaced_once() {
    let mut t = RawTar::new();
    t.dir("etc");
    let mut hosts = H::new("etc/hosts", b'0');
    hosts.mode = 0o600;
    hosts.uid = 7;
    t.entry(hosts, b"10.0.0.1 evil\n");
    t.file("etc/resolv.conf", b"nameserver 8.8.8.8\n");
    let layer = t.finish();

    let (rec, stats) = run(std::slice::from_ref(&layer)).unwrap();
    assert_eq!(stats.replaced, 2);
    assert_eq!(rec.count("etc/hosts"), 1);
    assert_eq!(rec.count("etc/resolv.conf"), 1);
    let h = rec.get("etc/hosts").unwrap();
    assert_eq!(h.data, HOSTS.as_bytes());
    assert_eq!(
        (h.entry.mode, h.entry.uid, h.entry.mtime),
        (0o644, 0, LINUXKIT_EPOCH)
    );
    let r = rec.get("etc/resolv.conf").unwrap();
    assert_eq!(r.entry.kind, Kind::File);
    assert_eq!(r.data, NO_RESOLV_CONF.as_bytes());
    assert_eq!(NO_RESOLV_CONF, "\n# no resolv.conf configured\n");
    // Replaced in place, before the rest of the image.
    assert_eq!(
        image_paths(&rec, &stats),
        ["etc", "etc/hosts", "etc/resolv.conf"]
    );

    for role in [Role::Init, Role::Volume] {
        let (rec, _) = run_with(
            std::slice::from_ref(&layer),
            &FlattenOptions::default(),
            role,
            "",
        )
        .unwrap();
        let r = rec.get("etc/resolv.conf").unwrap();
        assert_eq!(
            r.entry.kind,
            Kind::Symlink {
                target: RESOLV_CONF_LINK.into()
            }
        );
        assert_eq!(r.entry.size, 0);
        assert_eq!(rec.count("etc/resolv.conf"), 1);
    }
    let (rec, _) = run_with(&[layer], &FlattenOptions::default(), Role::Kernel, "").unwrap();
    assert_eq!(rec.get("etc/resolv.conf").unwrap().entry.kind, Kind::File);
}

#[test]
fn touch_set_is_appended_in_order_when_missing() {
    let layer = RawTar::new().file("hello", b"world").finish();
    let (rec, stats) = run_with(
        &[layer],
        &FlattenOptions::default(),
        Role::Container,
        "containers/services/x/lower",
    )
    .unwrap();
    assert_eq!(stats.touched, 9);
    let tail: Vec<&str> = rec.paths()[1..].to_vec();
    let expected: Vec<String> = TOUCH
        .iter()
        .map(|k| format!("containers/services/x/lower/{k}"))
        .collect();
    assert_eq!(tail, expected);
    for s in &rec.seen[1..] {
        assert_eq!(s.entry.mtime, LINUXKIT_EPOCH);
        assert_eq!((s.entry.uid, s.entry.gid), (0, 0));
        assert_eq!(s.entry.provenance["LINUXKIT.source"], IMAGE);
        assert_eq!(s.entry.provenance["LINUXKIT.location"], "services[0]");
    }
    let mtab = &rec
        .get("containers/services/x/lower/etc/mtab")
        .unwrap()
        .entry;
    assert_eq!(
        mtab.kind,
        Kind::Symlink {
            target: "/proc/mounts".into()
        }
    );
    assert_eq!(mtab.mode, 0o755);
    let dev = &rec.get("containers/services/x/lower/dev").unwrap().entry;
    assert_eq!((dev.kind.clone(), dev.mode), (Kind::Dir, 0o755));
    let hosts = rec.get("containers/services/x/lower/etc/hosts").unwrap();
    assert_eq!(
        (hosts.entry.mode, hosts.data.as_slice()),
        (0o644, HOSTS.as_bytes())
    );
}

#[test]
fn touch_entries_found_in_the_image_are_not_repeated() {
    let mut t = RawTar::new();
    for d in ["dev", "etc", "proc", "sys"] {
        let mut h = H::new(d, b'5');
        h.mode = 0o700;
        h.uid = 5;
        t.entry(h, b"");
    }
    t.symlink("etc/mtab", "/proc/self/mounts");
    t.file("etc/hosts", b"x");
    t.file("etc/resolv.conf", b"x");
    t.dir("dev/pts");
    let (rec, stats) = run(&[t.finish()]).unwrap();
    // Only dev/pts and dev/shm are appended (dev/pts is always dropped).
    assert_eq!(stats.touched, 2);
    assert_eq!(&rec.paths()[rec.seen.len() - 2..], ["dev/pts", "dev/shm"]);
    for d in ["dev", "etc", "proc", "sys"] {
        assert_eq!(rec.count(d), 1, "{d}");
        let e = &rec.get(d).unwrap().entry;
        assert_eq!((e.mode, e.uid, e.mtime), (0o755, 0, LINUXKIT_EPOCH));
    }
    let mtab = &rec.get("etc/mtab").unwrap().entry;
    assert_eq!(
        mtab.kind,
        Kind::Symlink {
            target: "/proc/self/mounts".into()
        }
    );
    assert_eq!((mtab.mode, mtab.mtime), (0o755, LINUXKIT_EPOCH));
    assert_eq!(rec.count("etc/hosts"), 1);
}

#[test]
fn touch_directory_follows_an_image_symlink_of_the_same_name() {
    // etc is a symlink in the image: the touch dir comes after it (and
    // before etc/hosts), so nothing is written through the symlink.
    let layer = RawTar::new().symlink("etc", "/").finish();
    let (rec, _) = run(&[layer]).unwrap();
    let paths = rec.paths();
    let first_etc = paths.iter().position(|p| *p == "etc").unwrap();
    let last_etc = paths.iter().rposition(|p| *p == "etc").unwrap();
    let hosts = paths.iter().position(|p| *p == "etc/hosts").unwrap();
    assert!(first_etc < last_etc && last_etc < hosts);
    assert_eq!(rec.get("etc").unwrap().entry.kind, Kind::Dir);
}

#[test]
fn duplicates_in_one_layer_are_written_in_order_so_the_later_wins() {
    let layer = RawTar::new()
        .file("a", b"first")
        .file("a", b"second")
        .symlink("s", "x")
        .dir("s")
        .file("s/child", b"c")
        .finish();
    let (rec, stats) = run(&[layer]).unwrap();
    assert_eq!(stats.duplicates, 2);
    assert_eq!(rec.count("a"), 2);
    assert_eq!(rec.get("a").unwrap().data, b"second");
    assert_eq!(image_paths(&rec, &stats), ["a", "a", "s", "s", "s/child"]);
    assert_eq!(rec.get("s").unwrap().entry.kind, Kind::Dir);
}

#[test]
fn prefix_is_applied_to_every_name() {
    let (rec, _) = run_with(
        &[simple_layer()],
        &FlattenOptions::default(),
        Role::Container,
        "/containers/services/foo/lower/",
    )
    .unwrap();
    assert!(rec
        .paths()
        .iter()
        .all(|p| p.starts_with("containers/services/foo/lower/")));
    assert!(rec.get("containers/services/foo/lower/etc/motd").is_some());
    let err = run_with(
        &[simple_layer()],
        &FlattenOptions::default(),
        Role::Container,
        "containers/../etc",
    )
    .unwrap_err();
    assert!(err.to_string().contains("prefix"), "{err}");
}

#[test]
fn empty_layers_and_no_layers() {
    let (rec, stats) = run(&[Vec::new(), RawTar::new().finish()]).unwrap();
    assert_eq!(stats.entries_read, 0);
    assert_eq!(rec.seen.len(), 9);
    let (rec, _) = run(&[]).unwrap();
    assert_eq!(rec.seen.len(), 9);
}

#[test]
fn stats_add_up() {
    let lower = RawTar::new()
        .dir("d")
        .file("d/f", b"12345")
        .file("x", b"")
        .finish();
    let upper = RawTar::new()
        .file(".wh.x", b"")
        .file("Dockerfile", b"")
        .finish();
    let (rec, stats) = run(&[lower, upper]).unwrap();
    assert_eq!(stats.entries_read, 5);
    assert_eq!(stats.whiteouts, 1);
    assert_eq!(stats.dropped, 1);
    assert_eq!(stats.hidden, 1);
    assert_eq!(
        stats.data_bytes,
        5 + HOSTS.len() as u64 + NO_RESOLV_CONF.len() as u64
    );
    assert_eq!(stats.written as usize, rec.seen.len());
    assert_eq!(stats.layers.len(), 2);
    assert_eq!(stats.layers[0].entries, 2);
    assert_eq!(stats.layers[1].entries, 3);
}
