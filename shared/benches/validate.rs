//! Validation speed. Prints the median time for `linuxkit.yml` and for a
//! generated 2,000-line spec, each as a ratio to a baseline measured in the
//! same run: scanning the same text into YAML events and nothing more.
//! Targets: 1 ms and 20 ms natively.
//!
//! Run: `cargo bench -p kiln-shared --bench validate`

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

fn median(mut f: impl FnMut(), budget: Duration) -> Duration {
    for _ in 0..3 {
        f();
    }
    let mut samples = Vec::new();
    let start = Instant::now();
    while samples.len() < 15 || (start.elapsed() < budget && samples.len() < 2000) {
        let t = Instant::now();
        f();
        samples.push(t.elapsed());
    }
    samples.sort();
    samples[samples.len() / 2]
}

fn scan_only(text: &str) -> usize {
    saphyr_parser::Parser::new_from_str(text)
        .take_while(|e| e.is_ok())
        .count()
}

fn big_spec(lines: usize) -> String {
    let mut out = String::from(
        "kernel:\n  image: linuxkit/kernel:6.6.71\n  cmdline: \"console=ttyS0\"\ninit:\n  - linuxkit/init:v1.2.0\n  - linuxkit/runc:v1.2.0\nvolumes:\n  - name: data\n    readonly: true\nonboot:\n",
    );
    let mut i = 0;
    while out.lines().count() < lines {
        out.push_str(&format!(
            "  - name: svc{i}
    image: linuxkit/sysctl:v1.{i}
    capabilities:
      - CAP_NET_ADMIN
      - CAP_SYS_ADMIN
    binds:
      - /etc/resolv.conf:/etc/resolv.conf
      - data:/data:ro
    rlimits:
      - nofile,1024,4096
    uid: svc0
    devices:
      - path: /dev/null
        type: c
        major: 1
        minor: 3
        mode: \"0666\"
    sysctl:
      net.ipv4.ip_forward: \"1\"
"
        ));
        i += 1;
    }
    out
}

fn report(name: &str, text: &str, target: Duration) {
    let budget = Duration::from_secs(2);
    let baseline = median(
        || {
            black_box(scan_only(black_box(text)));
        },
        budget,
    );
    let validate = median(
        || drop(black_box(kiln_shared::validate(black_box(text)))),
        budget,
    );
    assert!(
        !kiln_shared::validate(text).has_errors(),
        "{name} must be valid"
    );
    println!(
        "{name:<28} {:>5} lines  validate {:>9.3} ms  yaml-scan baseline {:>9.3} ms  ratio {:>5.2}x  target {:>4} ms ({})",
        text.lines().count(),
        validate.as_secs_f64() * 1e3,
        baseline.as_secs_f64() * 1e3,
        validate.as_secs_f64() / baseline.as_secs_f64(),
        target.as_millis(),
        if validate <= target { "met" } else { "MISSED" },
    );
}

fn main() {
    let corpus =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/linuxkit/linuxkit.yml");
    let linuxkit = std::fs::read_to_string(&corpus)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", corpus.display()));
    report("corpus linuxkit.yml", &linuxkit, Duration::from_millis(1));
    report("generated spec", &big_spec(2000), Duration::from_millis(20));
}
