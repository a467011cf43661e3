//! The QEMU harness itself: the fixture kernel boots a tiny initramfs
//! (busybox from the init fixture and an `/init` that prints markers and
//! powers off), and QEMU never outlives its [`Vm`].

mod common;

use std::io::Write;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use kiln_e2e::qemu::{self, BootSpec, Ending, Vm};

/// Generous for a boot that takes ~5-15 s under TCG on a quiet machine:
/// the tests share two cores with parallel tests and other compilers.
const MARKER_WITHIN: Duration = Duration::from_secs(90);
const POWEROFF_WITHIN: Duration = Duration::from_secs(30);
const HARD_TIMEOUT: Duration = Duration::from_secs(150);

/// The fixture kernel and busybox binary, built once per test binary.
struct Inputs {
    kernel: Vec<u8>,
    busybox: Vec<u8>,
}

fn inputs() -> &'static Inputs {
    static INPUTS: OnceLock<Inputs> = OnceLock::new();
    INPUTS.get_or_init(|| {
        let built = common::build();
        let kernel = &built.set.kernel;
        let mut files = common::files(&kernel.layout, kernel.digest());
        let kernel = files
            .remove("kernel")
            .expect("kernel in the kernel image")
            .data;
        let init = &built.set.init;
        let mut files = common::files(&init.layout, init.digest());
        let busybox = files
            .remove("bin/busybox")
            .expect("bin/busybox in the init image")
            .data;
        Inputs { kernel, busybox }
    })
}

/// One entry of a newc archive.
enum Node<'a> {
    Dir,
    File(u32, &'a [u8]),
    Symlink(&'a str),
    CharDev(u32, u32),
}

/// An uncompressed newc cpio, entries in the given order (parents first).
fn newc(entries: &[(&str, Node)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (ino, (name, node)) in (1u32..).zip(entries) {
        let builder = cpio::NewcBuilder::new(name).ino(ino).uid(0).gid(0);
        let (builder, data): (_, &[u8]) = match node {
            Node::Dir => (builder.mode(0o040755).nlink(2), b""),
            Node::File(mode, data) => (builder.mode(0o100000 | mode), data),
            Node::Symlink(target) => (builder.mode(0o120777), target.as_bytes()),
            Node::CharDev(major, minor) => (
                builder.mode(0o020600).rdev_major(*major).rdev_minor(*minor),
                b"",
            ),
        };
        let mut writer = builder.write(&mut out, data.len() as u32);
        writer.write_all(data).unwrap();
        writer.finish().unwrap();
    }
    cpio::newc::trailer(&mut out).unwrap();
    out
}

/// `/init` (busybox sh as PID 1): the markers, then an immediate poweroff.
const INIT: &str = r#"#!/bin/sh
/bin/busybox mount -t proc proc /proc
read up idle < /proc/uptime
echo "KILN-MARKER harness up uptime=$up kernel=$(/bin/busybox uname -r)"
echo "KILN-MARKER harness poweroff"
/bin/busybox poweroff -f
"#;

/// Writes the kernel and an initramfs with `init` (None: no /init at all)
/// into `dir`; returns a spec for them.
fn spec(dir: &Path, init: Option<&str>) -> BootSpec {
    let inputs = inputs();
    let mut entries = vec![
        ("bin", Node::Dir),
        ("bin/busybox", Node::File(0o755, &inputs.busybox)),
        ("bin/sh", Node::Symlink("busybox")),
        ("dev", Node::Dir),
        ("dev/console", Node::CharDev(5, 1)),
        ("proc", Node::Dir),
    ];
    if let Some(init) = init {
        entries.push(("init", Node::File(0o755, init.as_bytes())));
    }
    let kernel = dir.join("kernel");
    let initrd = dir.join("initrd.cpio");
    std::fs::write(&kernel, &inputs.kernel).unwrap();
    std::fs::write(&initrd, newc(&entries)).unwrap();
    let mut spec = BootSpec::new(kernel, initrd);
    spec.memory_mib = 256;
    spec.cmdline = "quiet".into();
    spec.timeout = HARD_TIMEOUT;
    spec
}

fn boot(spec: BootSpec) -> Vm {
    Vm::boot(spec).unwrap_or_else(|e| panic!("{e:#}"))
}

/// QEMU must be gone: no process with that pid, or a zombie of someone
/// else's (pids are not reused this fast).
fn assert_gone(pid: u32) {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    assert!(
        !comm.starts_with("qemu-system"),
        "QEMU (pid {pid}) is still there"
    );
}

#[test]
fn boots_the_fixture_kernel_and_powers_off() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(dir.path(), Some(INIT));
    let requested = Instant::now();
    let mut vm = boot(spec);
    eprintln!("{}", qemu::version().unwrap());
    // `contains`, not `starts_with`: the UART re-init of the kernel can eat
    // the firmware's last newline, so the marker may share a line with it.
    let up = vm
        .wait_for(|l| l.contains("KILN-MARKER harness up"), MARKER_WITHIN)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let last = vm
        .wait_for_text("KILN-MARKER harness poweroff", Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let exit = vm
        .wait_poweroff(POWEROFF_WITHIN)
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(exit.ending, Ending::Exited);
    assert!(exit.status.success());
    assert!(up.at <= last.at && last.at <= exit.at);
    assert!(
        up.text.contains("kernel=6."),
        "unexpected marker: {}",
        up.text
    );
    // Markers come once, in order, and the console keeps everything.
    assert!(vm
        .wait_for(|l| l.contains("KILN-MARKER"), Duration::ZERO)
        .is_err());
    let console = vm.console();
    assert_eq!(console.matches("KILN-MARKER harness").count(), 2);
    assert!(!console.contains('\r'));
    assert_eq!(vm.lines().len(), console.lines().count());
    assert_gone(vm.pid());
    let uptime: f64 = up
        .text
        .split("uptime=")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no uptime in {}", up.text));
    eprintln!(
        "TCG boot: marker {:.2}s after QEMU start (guest uptime {uptime:.2}s, so \
         {:.2}s of firmware, kernel loading and decompression), QEMU exited at {:.2}s, \
         {:.2}s including the slot wait; {} console lines",
        up.at.as_secs_f64(),
        up.at.as_secs_f64() - uptime,
        exit.at.as_secs_f64(),
        requested.elapsed().as_secs_f64(),
        vm.lines().len()
    );
}

#[test]
fn kernel_panic_ends_qemu_and_fails_the_poweroff_check() {
    let dir = tempfile::tempdir().unwrap();
    // No /init: the kernel panics (no working init found), `panic=-1`
    // reboots, `-no-reboot` turns that into QEMU exiting.
    let mut vm = boot(spec(dir.path(), None));
    let err = vm
        .wait_poweroff(MARKER_WITHIN + POWEROFF_WITHIN)
        .expect_err("a panic is not a poweroff");
    let msg = format!("{err:#}");
    assert!(msg.contains("the guest kernel panicked"), "{msg}");
    assert_eq!(vm.exit().unwrap().ending, Ending::Exited);
    assert_gone(vm.pid());
}

#[test]
fn hard_timeout_kills_qemu() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = spec(
        dir.path(),
        Some("#!/bin/sh\nexec /bin/busybox sleep 1000\n"),
    );
    spec.timeout = Duration::from_secs(2);
    let mut vm = boot(spec);
    let pid = vm.pid();
    let err = vm
        .wait_for_text("never printed", Duration::from_secs(60))
        .expect_err("the VM is killed first");
    let msg = format!("{err:#}");
    assert!(msg.contains("killed at the hard timeout"), "{msg}");
    let exit = vm.exit().unwrap();
    assert_eq!(exit.ending, Ending::TimedOut);
    assert!(exit.at >= Duration::from_secs(2) && exit.at < Duration::from_secs(30));
    assert!(vm.wait_exit(Duration::from_secs(1)).is_err());
    assert_gone(pid);
}

#[test]
fn drop_kills_qemu() {
    let dir = tempfile::tempdir().unwrap();
    let vm = boot(spec(
        dir.path(),
        Some("#!/bin/sh\nexec /bin/busybox sleep 1000\n"),
    ));
    let pid = vm.pid();
    assert!(vm.exit().is_none());
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert!(comm.starts_with("qemu-system"), "{comm}");
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    drop(vm);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_gone(pid);
}
