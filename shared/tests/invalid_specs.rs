//! One small invalid spec per rule. Each case asserts the diagnostic's
//! code, line, column and key path, and that it is the only error.

use kiln_shared::{validate, Code, Severity};

struct Case {
    name: &'static str,
    yaml: &'static str,
    code: Code,
    line: u32,
    col: u32,
    path: &'static str,
}

const CASES: &[Case] = &[
    Case {
        name: "yaml syntax",
        yaml: "services:\n  - name: a\n   image: b\n",
        code: Code::YamlSyntax,
        line: 3,
        col: 4,
        path: "",
    },
    Case {
        name: "empty document",
        yaml: "# nothing here\n",
        code: Code::EmptyDocument,
        line: 1,
        col: 1,
        path: "",
    },
    Case {
        name: "duplicate key",
        yaml: "kernel:\n  image: a/b:1\n  image: a/b:2\n",
        code: Code::DuplicateKey,
        line: 3,
        col: 3,
        path: "",
    },
    Case {
        name: "unknown top-level key",
        yaml: "kernel:\n  image: a/b:1\nunknownField: 1\n",
        code: Code::UnknownKey,
        line: 3,
        col: 1,
        path: "unknownField",
    },
    Case {
        name: "unknown kernel key (binaries)",
        yaml: "kernel:\n  image: a/b:1\n  binaries: vmlinuz\n",
        code: Code::UnknownKey,
        line: 3,
        col: 3,
        path: "kernel.binaries",
    },
    Case {
        name: "cgroupns is not an image key",
        yaml: "services:\n  - name: a\n    image: a/b:1\n    cgroupns: host\n",
        code: Code::UnknownKey,
        line: 4,
        col: 5,
        path: "services[0].cgroupns",
    },
    Case {
        name: "platforms only on volumes",
        yaml: "onboot:\n  - name: a\n    image: a/b:1\n    platforms: [linux/amd64]\n",
        code: Code::UnknownKey,
        line: 4,
        col: 5,
        path: "onboot[0].platforms",
    },
    Case {
        name: "unknown mount key",
        yaml: "services:\n  - name: a\n    image: a/b:1\n    mounts:\n      - destination: /x\n        type: bind\n        source: /y\n        readonly: true\n",
        code: Code::UnknownKey,
        line: 8,
        col: 9,
        path: "services[0].mounts[0].readonly",
    },
    Case {
        name: "unknown resources key",
        yaml: "services:\n  - name: a\n    image: a/b:1\n    resources:\n      memory:\n        max: 1\n",
        code: Code::UnknownKey,
        line: 6,
        col: 9,
        path: "services[0].resources.memory.max",
    },
    Case {
        name: "readonly: yes is a string",
        yaml: "services:\n  - name: a\n    image: a/b:1\n    readonly: yes\n",
        code: Code::WrongType,
        line: 4,
        col: 15,
        path: "services[0].readonly",
    },
    Case {
        name: "unquoted device mode is an integer",
        yaml: "services:\n  - name: a\n    image: a/b:1\n    devices:\n      - path: /dev/null\n        type: c\n        major: 1\n        minor: 3\n        mode: 0666\n",
        code: Code::WrongType,
        line: 9,
        col: 15,
        path: "services[0].devices[0].mode",
    },
    Case {
        name: "init must be a list",
        yaml: "init: linuxkit/init:v1\n",
        code: Code::WrongType,
        line: 1,
        col: 7,
        path: "init",
    },
    Case {
        name: "null cmdline",
        yaml: "kernel:\n  image: a/b:1\n  cmdline:\n",
        code: Code::WrongType,
        line: 3,
        col: 10,
        path: "kernel.cmdline",
    },
    Case {
        name: "sysctl values are strings",
        yaml: "onboot:\n  - name: a\n    image: a/b:1\n    sysctl:\n      net.ipv4.ip_forward: 1\n",
        code: Code::WrongType,
        line: 5,
        col: 28,
        path: "onboot[0].sysctl.net.ipv4.ip_forward",
    },
    Case {
        name: "oomScoreAdj must be an integer",
        yaml: "services:\n  - name: a\n    image: a/b:1\n    oomScoreAdj: high\n",
        code: Code::WrongType,
        line: 4,
        col: 18,
        path: "services[0].oomScoreAdj",
    },
    Case {
        name: "uid must be an integer or a name",
        yaml: "services:\n  - name: a\n    image: a/b:1\n    uid: true\n",
        code: Code::WrongType,
        line: 4,
        col: 10,
        path: "services[0].uid",
    },
    Case {
        name: "missing image",
        yaml: "services:\n  - name: a\n",
        code: Code::MissingKey,
        line: 2,
        col: 5,
        path: "services[0].image",
    },
    Case {
        name: "missing name",
        yaml: "onboot:\n  - image: a/b:1\n",
        code: Code::MissingKey,
        line: 2,
        col: 5,
        path: "onboot[0].name",
    },
    Case {
        name: "integer out of range",
        yaml: "services:\n  - name: a\n    image: a/b:1\n    resources:\n      blockio:\n        weight: 70000\n",
        code: Code::OutOfRange,
        line: 6,
        col: 17,
        path: "services[0].resources.blockio.weight",
    },
    Case {
        name: "uid out of range",
        yaml: "services:\n  - name: a\n    image: a/b:1\n    uid: 4294967296\n",
        code: Code::OutOfRange,
        line: 4,
        col: 10,
        path: "services[0].uid",
    },
    Case {
        name: "volume format enum",
        yaml: "volumes:\n  - name: v\n    format: raw\n",
        code: Code::BadEnum,
        line: 3,
        col: 13,
        path: "volumes[0].format",
    },
    Case {
        name: "duplicate service name",
        yaml: "services:\n  - name: a\n    image: a/b:1\n  - name: a\n    image: a/c:1\n",
        code: Code::DuplicateService,
        line: 4,
        col: 11,
        path: "services[1].name",
    },
    Case {
        name: "bad volume name",
        yaml: "volumes:\n  - name: Data\n",
        code: Code::BadVolumeName,
        line: 2,
        col: 11,
        path: "volumes[0].name",
    },
    Case {
        name: "duplicate volume name",
        yaml: "volumes:\n  - name: v\n  - name: v\n",
        code: Code::DuplicateVolume,
        line: 3,
        col: 11,
        path: "volumes[1].name",
    },
    Case {
        name: "upper-case repository",
        yaml: "init:\n  - linuxkit/Init:v1\n",
        code: Code::BadImageRef,
        line: 2,
        col: 5,
        path: "init[0]",
    },
    Case {
        name: "bad tag",
        yaml: "kernel:\n  image: linuxkit/kernel:-6.6\n",
        code: Code::BadImageRef,
        line: 2,
        col: 10,
        path: "kernel.image",
    },
    Case {
        name: "bad digest",
        yaml: "onshutdown:\n  - name: a\n    image: a/b@sha256:1234\n",
        code: Code::BadImageRef,
        line: 3,
        col: 12,
        path: "onshutdown[0].image",
    },
    Case {
        name: "bad volume image",
        yaml: "volumes:\n  - name: v\n    image: \"a b\"\n",
        code: Code::BadImageRef,
        line: 3,
        col: 12,
        path: "volumes[0].image",
    },
    Case {
        name: "bind with one part",
        yaml: "services:\n  - name: a\n    image: a/b:1\n    binds:\n      - /etc\n",
        code: Code::BadBind,
        line: 5,
        col: 9,
        path: "services[0].binds[0]",
    },
    Case {
        name: "bind with four parts",
        yaml: "services:\n  - name: a\n    image: a/b:1\n    binds.add:\n      - /a:/b:ro:x\n",
        code: Code::BadBind,
        line: 5,
        col: 9,
        path: "services[0].binds.add[0]",
    },
    Case {
        name: "tmpfs with two colons",
        yaml: "services:\n  - name: a\n    image: a/b:1\n    tmpfs:\n      - /tmp:size=1m:x\n",
        code: Code::BadTmpfs,
        line: 5,
        col: 9,
        path: "services[0].tmpfs[0]",
    },
    Case {
        name: "mount type cannot be inferred",
        yaml: "onboot:\n  - name: a\n    image: a/b:1\n    mounts:\n      - destination: /data\n        source: /srv\n",
        code: Code::BadMount,
        line: 5,
        col: 9,
        path: "onboot[0].mounts[0]",
    },
    Case {
        name: "mount destination cannot be inferred",
        yaml: "onboot:\n  - name: a\n    image: a/b:1\n    mounts:\n      - type: tmpfs\n",
        code: Code::BadMount,
        line: 5,
        col: 9,
        path: "onboot[0].mounts[0]",
    },
    Case {
        name: "lower-case capability",
        yaml: "services:\n  - name: a\n    image: a/b:1\n    capabilities:\n      - cap_net_admin\n",
        code: Code::UnknownCapability,
        line: 5,
        col: 9,
        path: "services[0].capabilities[0]",
    },
    Case {
        name: "unknown capability in capabilities.add",
        yaml: "services:\n  - name: a\n    image: a/b:1\n    capabilities.add:\n      - CAP_SYS_ADMIN\n      - CAP_FLY\n",
        code: Code::UnknownCapability,
        line: 6,
        col: 9,
        path: "services[0].capabilities.add[1]",
    },
    Case {
        name: "all mixed with names",
        yaml: "services:\n  - name: a\n    image: a/b:1\n    ambient: [CAP_CHOWN, all]\n",
        code: Code::UnknownCapability,
        line: 4,
        col: 26,
        path: "services[0].ambient[1]",
    },
    Case {
        name: "rlimit with two parts",
        yaml: "services:\n  - name: a\n    image: a/b:1\n    rlimits:\n      - nofile,1024\n",
        code: Code::BadRlimit,
        line: 5,
        col: 9,
        path: "services[0].rlimits[0]",
    },
    Case {
        name: "unknown rlimit",
        yaml: "services:\n  - name: a\n    image: a/b:1\n    rlimits: [\"files,1,2\"]\n",
        code: Code::BadRlimit,
        line: 4,
        col: 15,
        path: "services[0].rlimits[0]",
    },
    Case {
        name: "non-numeric rlimit",
        yaml: "services:\n  - name: a\n    image: a/b:1\n    rlimits:\n      - core,lots,unlimited\n",
        code: Code::BadRlimit,
        line: 5,
        col: 9,
        path: "services[0].rlimits[0]",
    },
    Case {
        name: "bad device mode",
        yaml: "services:\n  - name: a\n    image: a/b:1\n    devices:\n      - path: /dev/null\n        type: c\n        major: 1\n        minor: 3\n        mode: \"rw\"\n",
        code: Code::BadDeviceMode,
        line: 9,
        col: 15,
        path: "services[0].devices[0].mode",
    },
    Case {
        name: "missing device mode",
        yaml: "services:\n  - name: a\n    image: a/b:1\n    devices:\n      - path: /dev/null\n        type: c\n        major: 1\n        minor: 3\n",
        code: Code::BadDeviceMode,
        line: 5,
        col: 9,
        path: "services[0].devices[0].mode",
    },
    Case {
        name: "bad device type",
        yaml: "services:\n  - name: a\n    image: a/b:1\n    devices:\n      - path: /dev/null\n        type: x\n        mode: \"0666\"\n",
        code: Code::BadDevice,
        line: 6,
        col: 15,
        path: "services[0].devices[0].type",
    },
    Case {
        name: "bad file mode",
        yaml: "files:\n  - path: etc/x\n    contents: hi\n    mode: \"0o644\"\n",
        code: Code::BadFileMode,
        line: 4,
        col: 11,
        path: "files[0].mode",
    },
    Case {
        name: "unknown symbolic uid",
        yaml: "onboot:\n  - name: a\n    image: a/b:1\n    uid: nobody\n",
        code: Code::UnknownId,
        line: 4,
        col: 10,
        path: "onboot[0].uid",
    },
    Case {
        name: "unknown symbolic additional gid",
        yaml: "services:\n  - name: a\n    image: a/b:1\n    additionalGids: [a, ghost]\n",
        code: Code::UnknownId,
        line: 4,
        col: 25,
        path: "services[0].additionalGids[1]",
    },
    Case {
        name: "unknown symbolic file gid",
        yaml: "files:\n  - path: etc/x\n    contents: hi\n    gid: ghost\n",
        code: Code::UnknownId,
        line: 4,
        col: 10,
        path: "files[0].gid",
    },
    Case {
        name: "file without content",
        yaml: "files:\n  - path: etc/x\n    mode: \"0644\"\n",
        code: Code::FileNoContent,
        line: 2,
        col: 5,
        path: "files[0]",
    },
    Case {
        name: "file with source and metadata",
        yaml: "files:\n  - path: etc/x\n    source: ./x\n    metadata: yaml\n",
        code: Code::FileContentConflict,
        line: 4,
        col: 15,
        path: "files[0].metadata",
    },
    Case {
        name: "file with contents and source",
        yaml: "files:\n  - path: etc/x\n    contents: hi\n    source: ./x\n",
        code: Code::FileContentConflict,
        line: 4,
        col: 13,
        path: "files[0].source",
    },
    Case {
        name: "directory with contents",
        yaml: "files:\n  - path: etc/x\n    directory: true\n    contents: hi\n",
        code: Code::FileContentConflict,
        line: 4,
        col: 15,
        path: "files[0].contents",
    },
    Case {
        name: "file without path",
        yaml: "files:\n  - contents: hi\n",
        code: Code::FileNoPath,
        line: 2,
        col: 5,
        path: "files[0].path",
    },
    Case {
        name: "bad metadata value",
        yaml: "files:\n  - path: etc/linuxkit.yml\n    metadata: toml\n",
        code: Code::BadMetadata,
        line: 3,
        col: 15,
        path: "files[0].metadata",
    },
    Case {
        name: "bind of a missing volume",
        yaml: "services:\n  - name: a\n    image: a/b:1\n    binds:\n      - data:/data\n",
        code: Code::UnknownVolume,
        line: 5,
        col: 9,
        path: "services[0].binds[0]",
    },
    Case {
        name: "mount of a missing volume",
        yaml: "services:\n  - name: a\n    image: a/b:1\n    mounts:\n      - type: bind\n        source: data\n        destination: /data\n",
        code: Code::UnknownVolume,
        line: 6,
        col: 17,
        path: "services[0].mounts[0].source",
    },
    Case {
        name: "read-write bind of a read-only volume",
        yaml: "volumes:\n  - name: v\n    readonly: true\nservices:\n  - name: a\n    image: a/b:1\n    binds.add:\n      - v:/v:rw\n",
        code: Code::ReadonlyVolume,
        line: 8,
        col: 9,
        path: "services[0].binds.add[0]",
    },
    Case {
        name: "read-write mount of a read-only volume",
        yaml: "volumes:\n  - name: v\n    readonly: true\nonboot:\n  - name: a\n    image: a/b:1\n    mounts:\n      - type: bind\n        source: v\n        destination: /v\n        options: [rw, ro]\n",
        code: Code::ReadonlyVolume,
        line: 11,
        col: 18,
        path: "onboot[0].mounts[0].options",
    },
    Case {
        name: "bad trust org",
        yaml: "trust:\n  org:\n    - Linuxkit\n",
        code: Code::BadTrustOrg,
        line: 3,
        col: 7,
        path: "trust.org[0]",
    },
    Case {
        name: "trust org with too many parts",
        yaml: "trust:\n  org:\n    - ghcr.io/acme/tools\n",
        code: Code::BadTrustOrg,
        line: 3,
        col: 7,
        path: "trust.org[0]",
    },
    Case {
        name: "bad trust image",
        yaml: "trust:\n  image:\n    - \"linuxkit/init:\"\n",
        code: Code::BadTrustImage,
        line: 3,
        col: 7,
        path: "trust.image[0]",
    },
    Case {
        name: "alias bomb",
        yaml: "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n",
        code: Code::TooComplex,
        line: 6,
        col: 36,
        path: "",
    },
];

#[test]
fn each_invalid_spec_reports_its_rule_at_the_right_place() {
    let mut failures = Vec::new();
    for case in CASES {
        let v = validate(case.yaml);
        let errors: Vec<_> = v.diagnostics.iter().filter(|d| d.is_error()).collect();
        let ok = errors.len() == 1
            && errors[0].code == case.code
            && (errors[0].line, errors[0].col) == (case.line, case.col)
            && errors[0].path == case.path;
        if !ok {
            failures.push(format!(
                "{}: expected {}@{}:{} at `{}`, got {:#?}",
                case.name, case.code, case.line, case.col, case.path, errors
            ));
        }
        assert!(
            v.spec.is_none(),
            "{}: a spec with errors has no result",
            case.name
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_error_code_has_a_case() {
    let covered: Vec<Code> = CASES.iter().map(|c| c.code).collect();
    let missing: Vec<&str> = Code::ALL
        .iter()
        .filter(|c| c.severity() == Severity::Error && !covered.contains(c))
        .map(|c| c.as_str())
        .collect();
    assert!(missing.is_empty(), "no invalid spec exercises {missing:?}");
    assert!(CASES.len() >= 40);
}

#[test]
fn all_problems_are_reported_not_just_the_first() {
    let yaml = "\
kernel:
  image: linuxkit/kernel:6.6
  bogus: 1
services:
  - name: a
    image: A/b:1
    capabilities: [CAP_NOPE]
    rlimits: [nofile]
  - name: a
    image: a/b:1
files:
  - path: etc/x
";
    let v = validate(yaml);
    let codes: Vec<(Code, u32)> = v.diagnostics.iter().map(|d| (d.code, d.line)).collect();
    assert_eq!(
        codes,
        [
            (Code::UnknownKey, 3),
            (Code::BadImageRef, 6),
            (Code::UnknownCapability, 7),
            (Code::BadRlimit, 8),
            (Code::DuplicateService, 9),
            (Code::FileNoContent, 12),
        ]
    );
}

#[test]
fn every_code_is_documented() {
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/diagnostics.md"),
    )
    .unwrap();
    for code in Code::ALL {
        let row = format!("| `{}` | {} |", code.as_str(), code.severity());
        assert!(doc.contains(&row), "docs/diagnostics.md lacks {row}");
    }
}

#[test]
fn keys_linuxkit_drops_are_warnings_that_say_what_kiln_does() {
    let yaml = "\
services:
  - name: a
    image: a/b:1
    resources:
      memory:
        kernelTCP: 1
      hugepageLimits:
        - pageSize: 2
          limit: 1
    uidMappings:
      - hostID: 1000
        containerID: 0
        size: 1
";
    let v = validate(yaml);
    assert!(!v.has_errors(), "{:?}", v.diagnostics);
    let found: Vec<(Code, u32, u32, &str)> = v
        .diagnostics
        .iter()
        .map(|d| (d.code, d.line, d.col, d.path.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            (
                Code::DroppedByLinuxkit,
                6,
                20,
                "services[0].resources.memory.kernelTCP"
            ),
            (
                Code::DroppedByLinuxkit,
                8,
                9,
                "services[0].resources.hugepageLimits"
            ),
            (
                Code::DroppedByLinuxkit,
                11,
                17,
                "services[0].uidMappings[0].hostID"
            ),
            (
                Code::DroppedByLinuxkit,
                12,
                22,
                "services[0].uidMappings[0].containerID"
            ),
        ]
    );
    assert!(v
        .diagnostics
        .iter()
        .all(|d| d.severity == Severity::Warning && d.message.contains("kiln applies it")));
    assert!(v.spec.is_some(), "warnings alone keep the spec");
}

#[test]
fn symbolic_ids_resolve_across_merged_files() {
    use kiln_shared::{validate_merged, Source};
    let a = "onboot:\n  - name: a\n    image: a/b:1\n    uid: web\n";
    let b = "services:\n  - name: web\n    image: a/b:1\n";
    assert!(validate(a).has_errors());
    let v = validate_merged(&[
        Source {
            name: "a.yml",
            text: a,
        },
        Source {
            name: "b.yml",
            text: b,
        },
    ]);
    assert!(!v.has_errors(), "{:?}", v.diagnostics);
    let spec = v.spec.unwrap();
    assert_eq!(spec.onboot.len() + spec.services.len(), 2);
}
