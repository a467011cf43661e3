//! Coverage-guided fuzzing of the parser and validator. Seed it with the
//! linuxkit corpus: `cargo +nightly fuzz run validate ../../shared/corpus/linuxkit/examples`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let v = kiln_shared::validate(&text);
    assert_eq!(v.spec.is_some(), !v.has_errors());
});
