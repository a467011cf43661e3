//! Arbitrary bytes as image layers for `engine::flatten`.
//!
//! The first byte steers: bits 0-1 the role, bit 2 splits the rest into
//! two layers (at a point taken from bits 3-6), bit 7 adds a destination
//! prefix. The sink checks the stream's contract and safety invariants, so
//! a logic error panics just like a crash: data length equals the declared
//! size, names are clean and relative, nothing is written below a path
//! last written as a non-directory, hard links point at an earlier
//! non-directory.
//!
//! Run from `backend/`: `cargo +nightly fuzz run layer fuzz/corpus/layer
//! fuzz/seeds/layer -- -max_total_time=120`.

#![no_main]

use std::collections::HashMap;
use std::io::{self, Read};

use kiln_backend::engine::flatten::{flatten, FlattenOptions, LayerSource, Role};
use kiln_backend::engine::fs::{Entry, Kind, Sink};
use libfuzzer_sys::fuzz_target;

#[derive(Default)]
struct Checked {
    kinds: HashMap<String, bool>,
}

impl Sink for Checked {
    fn add(&mut self, entry: &Entry, data: &mut dyn Read) -> io::Result<()> {
        let n = io::copy(data, &mut io::sink())?;
        assert_eq!(n, entry.size, "data length of {:?}", entry.path);
        assert!(entry.kind == Kind::File || entry.size == 0);
        let p = &entry.path;
        assert!(
            !p.is_empty() && p.split('/').all(|c| !c.is_empty() && c != "." && c != ".."),
            "unclean path {p:?}"
        );
        for (i, _) in p.match_indices('/') {
            assert_ne!(
                self.kinds.get(&p[..i]),
                Some(&false),
                "{p:?} written below a non-directory"
            );
        }
        if let Kind::Hardlink { target } = &entry.kind {
            assert_eq!(
                self.kinds.get(target),
                Some(&false),
                "hard link {p:?} -> {target:?}"
            );
        }
        assert!(entry.mode <= 0o7777);
        self.kinds.insert(p.clone(), entry.kind == Kind::Dir);
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let role = match ctl & 3 {
        0 => Role::Container,
        1 => Role::Init,
        2 => Role::Volume,
        _ => Role::Kernel,
    };
    let prefix = if ctl & 0x80 != 0 {
        "containers/services/fuzz/lower"
    } else {
        ""
    };
    // Small limits keep every run fast; the limits themselves are fuzzed
    // by hitting them.
    let opts = FlattenOptions {
        max_total_bytes: 64 << 20,
        ratio_grace_bytes: 1 << 20,
        max_entries: 20_000,
        max_metadata_bytes: 256 << 10,
        ..FlattenOptions::default()
    };
    let layers = if ctl & 4 != 0 && rest.len() >= 2 {
        let at = rest.len() * usize::from((ctl >> 3) & 0xf) / 16;
        let (a, b) = rest.split_at(at);
        vec![
            LayerSource::from_bytes("lower", a),
            LayerSource::from_bytes("upper", b),
        ]
    } else {
        vec![LayerSource::from_bytes("layer", rest)]
    };
    let _ = flatten(
        &layers,
        &opts,
        role,
        prefix,
        ("fuzz.example/image:1", "services[0]"),
        &mut Checked::default(),
    );
});
