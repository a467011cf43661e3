//! Hostile layers, one test per case. Each is either rejected with a typed
//! error naming the image, the layer and (where there is one) the entry, or
//! contained: written under the destination prefix and never through a
//! symlink (the recording sink checks that invariant on every entry).
//! Layers are raw bytes written by hand where the `tar` crate refuses to
//! produce them.

mod flatten_support;

use std::io::{self, Read};

use flatten_support::*;
use kiln_backend::engine::flatten::{
    flatten, FlattenErrorKind, FlattenOptions, LayerSource, Limit, Role,
};
use kiln_backend::engine::fs::{Entry, Kind, Sink};

const PREFIX: &str = "containers/services/x/lower";

fn limit_of(err: &kiln_backend::engine::flatten::FlattenError) -> Limit {
    err.limit()
        .unwrap_or_else(|| panic!("not a limit error: {err}"))
}

// ---- names that escape -------------------------------------------------

#[test]
fn dotdot_name_escapes() {
    let layer = RawTar::new()
        .file("../../etc/passwd", b"root::0:0")
        .finish();
    let err = reject(&[layer]);
    assert!(matches!(err.kind, FlattenErrorKind::PathEscapes), "{err}");
    assert_eq!(err.path.as_deref(), Some("../../etc/passwd"));
}

#[test]
fn dotdot_after_a_leading_slash_escapes() {
    let layer = RawTar::new().file("/../etc/shadow", b"x").finish();
    let err = reject(&[layer]);
    assert!(matches!(err.kind, FlattenErrorKind::PathEscapes), "{err}");
}

#[test]
fn dotdot_climbing_out_midway_escapes() {
    let layer = RawTar::new().file("usr/../../../x", b"x").finish();
    let err = reject(&[layer]);
    assert!(matches!(err.kind, FlattenErrorKind::PathEscapes), "{err}");
}

#[test]
fn absolute_and_inner_dotdot_names_are_contained() {
    let layer = RawTar::new()
        .file("/etc/passwd", b"p")
        .file("a/b/../../c", b"c")
        .finish();
    let (rec, _) = run_with(
        &[layer],
        &FlattenOptions::default(),
        Role::Container,
        PREFIX,
    )
    .unwrap();
    assert_eq!(rec.get(&format!("{PREFIX}/etc/passwd")).unwrap().data, b"p");
    assert_eq!(rec.get(&format!("{PREFIX}/c")).unwrap().data, b"c");
    assert!(rec.paths().iter().all(|p| p.starts_with(PREFIX)));
}

#[test]
fn pax_path_escapes_behind_a_harmless_ustar_name() {
    let layer = RawTar::new()
        .pax(&[("path", b"../../../../root/.ssh/authorized_keys")])
        .file("harmless", b"ssh-ed25519 AAAA")
        .finish();
    let err = reject(&[layer]);
    assert!(matches!(err.kind, FlattenErrorKind::PathEscapes), "{err}");
    assert_eq!(
        err.path.as_deref(),
        Some("../../../../root/.ssh/authorized_keys")
    );
}

#[test]
fn gnu_long_name_escapes() {
    let name = format!("{}etc/cron.d/evil", "../".repeat(40));
    let layer = RawTar::new()
        .gnu_long(b'L', name.as_bytes())
        .file("short", b"* * * * * root sh")
        .finish();
    let err = reject(&[layer]);
    assert!(matches!(err.kind, FlattenErrorKind::PathEscapes), "{err}");
}

#[test]
fn root_entry_that_is_not_a_directory() {
    let layer = RawTar::new().file("./", b"x").finish();
    let err = reject(&[layer]);
    assert!(
        matches!(err.kind, FlattenErrorKind::RootNotDirectory),
        "{err}"
    );
}

// ---- links -------------------------------------------------------------

#[test]
fn hardlink_target_escapes() {
    let layer = RawTar::new()
        .hardlink("shadow", "../../../etc/shadow")
        .finish();
    let err = reject(&[layer]);
    assert!(
        matches!(&err.kind, FlattenErrorKind::LinkEscapes { target } if target == "../../../etc/shadow"),
        "{err}"
    );
    assert_eq!(err.path.as_deref(), Some("shadow"));
}

#[test]
fn hardlink_to_a_path_not_in_the_image() {
    // Absolute targets are relative to the image root: /etc/shadow is the
    // image's own etc/shadow, which does not exist here.
    let layer = RawTar::new().hardlink("shadow", "/etc/shadow").finish();
    let err = reject(&[layer]);
    assert!(
        matches!(err.kind, FlattenErrorKind::HardlinkTargetMissing { .. }),
        "{err}"
    );
}

#[test]
fn hardlink_before_its_target() {
    let layer = RawTar::new()
        .hardlink("early", "late")
        .file("late", b"x")
        .finish();
    let err = reject(&[layer]);
    assert!(
        matches!(err.kind, FlattenErrorKind::HardlinkTargetMissing { .. }),
        "{err}"
    );
}

#[test]
fn hardlink_to_a_file_only_in_a_lower_layer() {
    // Top-down, the lower layer's file comes after the link.
    let lower = RawTar::new().file("bin/busybox", b"bb").finish();
    let upper = RawTar::new().hardlink("bin/sh", "bin/busybox").finish();
    let err = reject(&[lower, upper]);
    assert!(
        matches!(err.kind, FlattenErrorKind::HardlinkTargetMissing { .. }),
        "{err}"
    );
    assert_eq!(err.layer.as_deref(), Some("sha256:layer1"));
}

#[test]
fn hardlink_to_a_whited_out_file() {
    let bottom = RawTar::new().file("secret", b"s3cr3t").finish();
    let middle = RawTar::new().hardlink("copy", "secret").finish();
    let top = RawTar::new().file(".wh.secret", b"").finish();
    let err = reject(&[bottom, middle, top]);
    assert!(
        matches!(err.kind, FlattenErrorKind::HardlinkTargetMissing { .. }),
        "{err}"
    );
}

#[test]
fn hardlink_to_a_dropped_name() {
    let layer = RawTar::new()
        .dir("etc")
        .file("etc/hostname", b"h")
        .hardlink("copy", "etc/hostname")
        .finish();
    let err = reject(&[layer]);
    assert!(
        matches!(err.kind, FlattenErrorKind::HardlinkTargetMissing { .. }),
        "{err}"
    );
}

#[test]
fn hardlink_to_a_directory() {
    let layer = RawTar::new().dir("d").hardlink("l", "d").finish();
    let err = reject(&[layer]);
    assert!(
        matches!(err.kind, FlattenErrorKind::HardlinkToDirectory { .. }),
        "{err}"
    );
}

#[test]
fn hardlink_to_itself() {
    let layer = RawTar::new().file("a", b"a").hardlink("a", "./a").finish();
    let err = reject(&[layer]);
    assert!(
        matches!(err.kind, FlattenErrorKind::HardlinkToSelf),
        "{err}"
    );
}

#[test]
fn write_through_a_symlink_of_the_same_layer() {
    let layer = RawTar::new()
        .symlink("etc", "/etc")
        .file("etc/passwd", b"root::0:0")
        .finish();
    let err = reject(&[layer]);
    assert!(
        matches!(&err.kind, FlattenErrorKind::AncestorNotDirectory { ancestor } if ancestor == "etc"),
        "{err}"
    );
    assert_eq!(err.path.as_deref(), Some("etc/passwd"));
}

#[test]
fn write_below_a_regular_file_of_the_same_layer() {
    let layer = RawTar::new().file("f", b"").file("f/x", b"x").finish();
    let err = reject(&[layer]);
    assert!(
        matches!(err.kind, FlattenErrorKind::AncestorNotDirectory { .. }),
        "{err}"
    );
}

#[test]
fn symlink_over_a_directory_with_children_in_the_same_layer() {
    let layer = RawTar::new()
        .dir("d")
        .file("d/x", b"x")
        .symlink("d", "/")
        .finish();
    let err = reject(&[layer]);
    assert!(matches!(err.kind, FlattenErrorKind::PathConflict), "{err}");
}

#[test]
fn symlinks_in_other_layers_are_never_followed() {
    // A lower-layer symlink under an upper layer's files is dropped; an
    // upper-layer symlink hides the lower layer's files below it. Either
    // way nothing is written through a symlink.
    let lower = RawTar::new()
        .symlink("a", "/etc")
        .dir("b")
        .file("b/passwd", b"lower")
        .finish();
    let upper = RawTar::new()
        .file("a/passwd", b"upper")
        .symlink("b", "/etc")
        .finish();
    let (rec, stats) = run_with(
        &[lower, upper],
        &FlattenOptions::default(),
        Role::Container,
        PREFIX,
    )
    .unwrap();
    assert_eq!(
        image_paths(&rec, &stats),
        [format!("{PREFIX}/a/passwd"), format!("{PREFIX}/b")]
    );
}

#[test]
fn symlink_swapped_in_by_a_duplicate_entry() {
    // dir d, then a duplicate d as a symlink, then d/x: the later symlink
    // wins, so d/x would go through it.
    let layer = RawTar::new()
        .dir("d")
        .symlink("d", "/etc")
        .file("d/x", b"x")
        .finish();
    let err = reject(&[layer]);
    assert!(
        matches!(err.kind, FlattenErrorKind::AncestorNotDirectory { .. }),
        "{err}"
    );
}

// ---- whiteouts ---------------------------------------------------------

#[test]
fn whiteout_that_names_nothing() {
    for name in ["dir/.wh.", ".wh..", ".wh..."] {
        let layer = RawTar::new().file(name, b"").finish();
        let err = reject(&[layer]);
        assert!(
            matches!(err.kind, FlattenErrorKind::InvalidWhiteout),
            "{name}: {err}"
        );
    }
}

// ---- devices -----------------------------------------------------------

#[test]
fn character_device_in_a_container() {
    let mut h = H::new("dev/mem", b'3');
    h.major = 1;
    h.minor = 1;
    let layer = RawTar::new().entry(h, b"").finish();
    let err = reject(&[layer]);
    assert!(
        matches!(
            err.kind,
            FlattenErrorKind::DeviceNotAllowed {
                kind: "character",
                major: 1,
                minor: 1,
                role: "container"
            }
        ),
        "{err}"
    );
}

#[test]
fn block_device_in_a_volume() {
    let mut h = H::new("disk", b'4');
    h.major = 8;
    let layer = RawTar::new().entry(h, b"").finish();
    let err = reject_with(&[layer], &FlattenOptions::default(), Role::Volume);
    assert!(
        matches!(
            err.kind,
            FlattenErrorKind::DeviceNotAllowed {
                kind: "block",
                role: "volume",
                ..
            }
        ),
        "{err}"
    );
}

// ---- decompression bombs and limits -----------------------------------

#[test]
fn gzip_bomb_trips_the_ratio_limit() {
    let mut t = RawTar::new();
    let zeros = vec![0u8; 16 << 20];
    t.file("zeros", &zeros);
    let layer = gzip(&t.finish());
    assert!(layer.len() < 100_000);
    let opts = FlattenOptions {
        max_ratio: 100,
        ratio_grace_bytes: 1 << 20,
        ..FlattenOptions::default()
    };
    let err = reject_with(&[layer], &opts, Role::Container);
    assert_eq!(limit_of(&err), Limit::Ratio, "{err}");
}

/// A zstd frame with a raw block and RLE blocks of zeros: each 4-byte RLE
/// block expands to 128 KiB.
fn zstd_rle_bomb(prefix: &[u8], rle_blocks: usize) -> Vec<u8> {
    let mut z = vec![0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x38]; // 128 KiB window
    let block = |z: &mut Vec<u8>, last: bool, kind: u32, size: u32| {
        let h = u32::from(last) | (kind << 1) | (size << 3);
        z.extend_from_slice(&h.to_le_bytes()[..3]);
    };
    block(&mut z, false, 0, prefix.len() as u32);
    z.extend_from_slice(prefix);
    for i in 0..rle_blocks {
        block(&mut z, i + 1 == rle_blocks, 1, 128 * 1024);
        z.push(0);
    }
    z
}

#[test]
fn zstd_bomb_trips_the_ratio_limit_with_default_options() {
    let mut h = H::new("zeros", b'0');
    h.size = 1 << 30;
    let head = header(&h);
    // 1 GiB of zeros from about 32 KiB.
    let layer = zstd_rle_bomb(&head, 8192);
    assert!(layer.len() < 40_000);
    let err = reject(&[layer]);
    assert_eq!(limit_of(&err), Limit::Ratio, "{err}");
}

#[test]
fn zstd_frame_asking_for_a_huge_window() {
    // Window descriptor exponent 31: a 2 TiB window.
    let layer = vec![0x28, 0xb5, 0x2f, 0xfd, 0x00, 31 << 3, 0x01, 0x00, 0x00];
    let err = reject(&[layer]);
    assert!(
        matches!(
            err.kind,
            FlattenErrorKind::Decompress {
                compression: "zstd",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn declared_file_size_over_the_total_limit_is_rejected_up_front() {
    let mut h = H::new("huge", b'0');
    h.size = 4 << 30;
    let mut layer = header(&h).to_vec();
    layer.extend_from_slice(&[0u8; 4096]);
    let opts = FlattenOptions {
        max_total_bytes: 1 << 30,
        ..FlattenOptions::default()
    };
    let err = reject_with(&[layer], &opts, Role::Container);
    assert_eq!(limit_of(&err), Limit::TotalBytes, "{err}");
    assert_eq!(err.path.as_deref(), Some("huge"));
}

#[test]
fn uncompressed_bytes_over_the_total_limit_across_layers() {
    let a = RawTar::new().file("a", &[1u8; 300_000]).finish();
    let b = RawTar::new().file("b", &[2u8; 300_000]).finish();
    let opts = FlattenOptions {
        max_total_bytes: 500_000,
        ..FlattenOptions::default()
    };
    let err = reject_with(&[gzip(&a), gzip(&b)], &opts, Role::Container);
    assert_eq!(limit_of(&err), Limit::TotalBytes, "{err}");
    assert_eq!(err.layer.as_deref(), Some("sha256:layer0"));
}

#[test]
fn too_many_entries() {
    let mut t = RawTar::new();
    for i in 0..101 {
        t.file(&format!("f{i}"), b"");
    }
    let opts = FlattenOptions {
        max_entries: 100,
        ..FlattenOptions::default()
    };
    let err = reject_with(&[t.finish()], &opts, Role::Container);
    assert_eq!(limit_of(&err), Limit::Entries, "{err}");
}

#[test]
fn path_longer_than_the_limit() {
    let long = "a/".repeat(2100) + "f";
    let layer = RawTar::new()
        .pax(&[("path", long.as_bytes())])
        .file("x", b"")
        .finish();
    let err = reject(&[layer]);
    assert_eq!(limit_of(&err), Limit::PathLength, "{err}");
}

#[test]
fn gnu_long_name_header_claiming_a_gigabyte() {
    // Only the header is there: the size is refused before any allocation.
    let mut h = H::new("././@LongLink", b'L');
    h.size = 1 << 30;
    let mut layer = header(&h).to_vec();
    layer.extend_from_slice(&[b'a'; 512]);
    let err = reject(&[layer]);
    assert_eq!(limit_of(&err), Limit::PathLength, "{err}");
}

#[test]
fn pax_header_claiming_sixty_four_megabytes() {
    let mut h = H::new("PaxHeaders/x", b'x');
    h.size = 64 << 20;
    let layer = header(&h).to_vec();
    let err = reject(&[layer]);
    assert_eq!(limit_of(&err), Limit::MetadataBytes, "{err}");
}

#[test]
fn endless_global_headers() {
    let mut t = RawTar::new();
    for _ in 0..5000 {
        t.entry(
            H::new("pax_global_header", b'g'),
            &pax_record("comment", b"x"),
        );
    }
    let err = reject(&[t.finish()]);
    assert_eq!(limit_of(&err), Limit::MetadataBytes, "{err}");
}

// ---- broken tar structure ---------------------------------------------

#[test]
fn file_data_shorter_than_its_header_says() {
    let mut h = H::new("big", b'0');
    h.size = 1 << 20;
    let mut layer = header(&h).to_vec();
    layer.extend_from_slice(&[7u8; 100]);
    let err = reject(&[layer]);
    assert!(matches!(err.kind, FlattenErrorKind::Truncated(_)), "{err}");
    assert_eq!(err.path.as_deref(), Some("big"));
}

#[test]
fn data_of_a_hidden_entry_cut_short_names_the_entry() {
    // The lower layer's etc/motd is hidden, so its data is skipped, not
    // read by the sink; the truncation is still found and reported.
    let upper = RawTar::new().file("etc/motd", b"upper").finish();
    let mut h = H::new("etc/motd", b'0');
    h.size = 10_000;
    let mut lower = header(&h).to_vec();
    lower.extend_from_slice(&[b'm'; 1000]);
    let err = reject(&[lower, upper]);
    assert!(matches!(err.kind, FlattenErrorKind::Truncated(_)), "{err}");
    assert_eq!(err.layer.as_deref(), Some("sha256:layer0"));
    assert_eq!(err.path.as_deref(), Some("etc/motd"));
}

#[test]
fn layer_ending_inside_a_header() {
    let mut layer = RawTar::new().file("ok", b"fine").finish();
    layer.truncate(1024);
    layer.extend_from_slice(&header(&H::new("cut", b'0'))[..300]);
    let err = reject(&[layer]);
    assert!(matches!(err.kind, FlattenErrorKind::Truncated(_)), "{err}");
}

#[test]
fn header_checksum_mismatch() {
    let mut layer = RawTar::new().file("f", b"x").finish();
    layer[0] = b'g'; // name changed, checksum not
    let err = reject(&[layer]);
    assert!(matches!(err.kind, FlattenErrorKind::CorruptTar(_)), "{err}");
}

#[test]
fn garbage_in_the_size_field() {
    let mut b = header(&H::new("f", b'0'));
    b[124..136].copy_from_slice(b"12345678z01\0");
    fix_checksum(&mut b);
    let err = reject(&[b.to_vec()]);
    assert!(matches!(err.kind, FlattenErrorKind::CorruptTar(_)), "{err}");
}

#[test]
fn negative_base256_size() {
    let mut b = header(&H::new("f", b'0'));
    b[124..136].copy_from_slice(&[0xff; 12]);
    fix_checksum(&mut b);
    let err = reject(&[b.to_vec()]);
    assert!(matches!(err.kind, FlattenErrorKind::CorruptTar(_)), "{err}");
}

#[test]
fn symlink_that_declares_data() {
    // Go's reader consumes no data for a symlink, the tar crate would: a
    // parser differential that could smuggle entries. Refused.
    let mut h = H::new("s", b'2');
    h.link = b"t".to_vec();
    h.size = 512;
    let mut t = RawTar::new();
    t.raw(&h, &header(&H::new("smuggled", b'0')));
    let err = reject(&[t.finish()]);
    assert!(
        matches!(
            err.kind,
            FlattenErrorKind::DataOnNonFile {
                kind: "symlink",
                size: 512
            }
        ),
        "{err}"
    );
}

#[test]
fn entries_hidden_after_the_end_of_archive_marker() {
    let mut layer = RawTar::new().file("a", b"a").bytes.clone();
    layer.extend_from_slice(&[0u8; 512]);
    layer.extend(RawTar::new().file("hidden", b"h").finish());
    let err = reject(&[layer]);
    assert!(matches!(err.kind, FlattenErrorKind::CorruptTar(_)), "{err}");
}

#[test]
fn extended_header_with_no_entry() {
    let mut t = RawTar::new();
    t.pax(&[("path", b"x")]);
    let err = reject(&[t.finish()]);
    assert!(matches!(err.kind, FlattenErrorKind::CorruptTar(_)), "{err}");
}

#[test]
fn malformed_pax_record() {
    let mut t = RawTar::new();
    t.entry(H::new("PaxHeaders/x", b'x'), b"99 path=short\n");
    t.file("f", b"");
    let err = reject(&[t.finish()]);
    assert!(matches!(err.kind, FlattenErrorKind::CorruptTar(_)), "{err}");
}

#[test]
fn non_utf8_name() {
    let layer = RawTar::new().file("caf\u{e9}", b"").finish();
    assert!(run(&[layer]).is_ok());
    let mut t = RawTar::new();
    t.entry(H::new(b"caf\xe9", b'0'), b"latin-1");
    let err = reject(&[t.finish()]);
    assert!(
        matches!(err.kind, FlattenErrorKind::NonUtf8("path")),
        "{err}"
    );
}

#[test]
fn non_utf8_symlink_target() {
    let mut h = H::new("s", b'2');
    h.link = b"\xff\xfe".to_vec();
    let layer = RawTar::new().entry(h, b"").finish();
    let err = reject(&[layer]);
    assert!(
        matches!(err.kind, FlattenErrorKind::NonUtf8("symlink target")),
        "{err}"
    );
}

#[test]
fn nul_byte_in_a_pax_path() {
    let layer = RawTar::new()
        .pax(&[("path", b"etc/passwd\0.txt")])
        .file("f", b"")
        .finish();
    let err = reject(&[layer]);
    assert!(
        matches!(err.kind, FlattenErrorKind::InvalidName { what: "path", .. }),
        "{err}"
    );
}

#[test]
fn uid_beyond_32_bits() {
    let layer = RawTar::new()
        .pax(&[("uid", b"1099511627776")])
        .file("f", b"")
        .finish();
    let err = reject(&[layer]);
    assert!(
        matches!(err.kind, FlattenErrorKind::IdOutOfRange { what: "uid", .. }),
        "{err}"
    );
}

#[test]
fn gnu_sparse_file() {
    let layer = RawTar::new().entry(H::new("sparse", b'S'), b"").finish();
    let err = reject(&[layer]);
    assert!(
        matches!(err.kind, FlattenErrorKind::UnsupportedEntryType('S')),
        "{err}"
    );
}

#[test]
fn pax_sparse_file() {
    let layer = RawTar::new()
        .pax(&[("GNU.sparse.major", b"1"), ("GNU.sparse.minor", b"0")])
        .file("sparse", b"")
        .finish();
    let err = reject(&[layer]);
    assert!(
        matches!(err.kind, FlattenErrorKind::UnsupportedPax(_)),
        "{err}"
    );
}

#[test]
fn unknown_entry_type() {
    let layer = RawTar::new().entry(H::new("dumpdir", b'D'), b"").finish();
    let err = reject(&[layer]);
    assert!(
        matches!(err.kind, FlattenErrorKind::UnsupportedEntryType('D')),
        "{err}"
    );
}

// ---- broken compression -----------------------------------------------

#[test]
fn truncated_gzip_stream() {
    let tar = RawTar::new()
        .file(
            "a",
            &(0..60_000u32)
                .flat_map(|i| i.to_le_bytes())
                .collect::<Vec<_>>(),
        )
        .finish();
    let mut layer = gzip(&tar);
    layer.truncate(layer.len() / 2);
    let err = reject(&[layer]);
    assert!(
        matches!(
            err.kind,
            FlattenErrorKind::Decompress {
                compression: "gzip",
                ..
            } | FlattenErrorKind::Truncated(_)
        ),
        "{err}"
    );
}

#[test]
fn corrupt_deflate_data() {
    let tar = RawTar::new().file("a", b"some data to compress").finish();
    let mut layer = gzip(&tar);
    for b in &mut layer[10..30] {
        *b ^= 0x5a;
    }
    let err = reject(&[layer]);
    assert!(
        matches!(
            err.kind,
            FlattenErrorKind::Decompress {
                compression: "gzip",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn zstd_frame_checksum_mismatch() {
    let mut layer = include_bytes!("flatten_fixtures/libzstd-multiframe.tar.zst").to_vec();
    // A skippable frame (13 bytes), then two frames. The byte before the
    // second frame's magic ends the first frame's checksum.
    assert_eq!(&layer[13..17], [0x28, 0xb5, 0x2f, 0xfd]);
    let second = layer
        .windows(4)
        .skip(14)
        .position(|w| w == [0x28, 0xb5, 0x2f, 0xfd])
        .unwrap()
        + 14;
    layer[second - 1] ^= 0xff;
    let err = reject(&[layer]);
    assert!(
        matches!(&err.kind, FlattenErrorKind::Decompress { compression: "zstd", source } if source.to_string().contains("checksum")),
        "{err}"
    );
}

#[test]
fn xz_layer() {
    let layer = vec![0xfd, b'7', b'z', b'X', b'Z', 0x00, 0, 0];
    let err = reject(&[layer]);
    assert!(
        matches!(err.kind, FlattenErrorKind::UnsupportedCompression("xz")),
        "{err}"
    );
}

#[test]
fn random_bytes() {
    // Deterministic pseudo-random garbage, plain and behind each magic.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for magic in [
        &[][..],
        &[0x1f, 0x8b, 8, 0][..],
        &[0x28, 0xb5, 0x2f, 0xfd][..],
    ] {
        for len in [1usize, 100, 511, 512, 1024, 5000] {
            let mut layer = magic.to_vec();
            while layer.len() < len + magic.len() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                layer.push(x as u8);
            }
            // Either rejected or (for tiny inputs that read as an empty
            // archive) accepted; never a panic.
            let _ = run(&[layer]);
        }
    }
}

// ---- the sink ----------------------------------------------------------

struct Failing(usize);

impl Sink for Failing {
    fn add(&mut self, _: &Entry, data: &mut dyn Read) -> io::Result<()> {
        io::copy(data, &mut io::sink())?;
        if self.0 == 0 {
            return Err(io::Error::other("disk full"));
        }
        self.0 -= 1;
        Ok(())
    }
}

#[test]
fn sink_errors_are_reported_as_sink_errors() {
    let layer = RawTar::new().file("a", b"a").file("b", b"b").finish();
    let sources = [LayerSource::from_bytes("sha256:layer0", &layer)];
    let err = flatten(
        &sources,
        &FlattenOptions::default(),
        Role::Container,
        "",
        (IMAGE, "services[0]"),
        &mut Failing(1),
    )
    .unwrap_err();
    assert!(matches!(err.kind, FlattenErrorKind::Sink(_)), "{err}");
    assert_eq!(err.path.as_deref(), Some("b"));
}

/// Reads only the first byte of each file and returns Ok.
struct Sloppy(Vec<String>);

impl Sink for Sloppy {
    fn add(&mut self, e: &Entry, data: &mut dyn Read) -> io::Result<()> {
        let mut one = [0u8; 1];
        if e.kind == Kind::File && e.size > 0 {
            data.read_exact(&mut one)?;
        }
        self.0.push(e.path.clone());
        Ok(())
    }
}

#[test]
fn a_sink_that_reads_too_little_does_not_desynchronise_the_stream() {
    let layer = RawTar::new()
        .file("a", &[1u8; 5000])
        .file("b", b"bb")
        .finish();
    let sources = [LayerSource::from_bytes("sha256:layer0", &layer)];
    let mut sink = Sloppy(Vec::new());
    flatten(
        &sources,
        &FlattenOptions::default(),
        Role::Container,
        "",
        (IMAGE, "services[0]"),
        &mut sink,
    )
    .unwrap();
    assert_eq!(&sink.0[..2], ["a", "b"]);
}
