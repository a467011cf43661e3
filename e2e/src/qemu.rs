//! Booting `kernel` + `initrd` under QEMU (TCG, no KVM) and reading the
//! serial console.
//!
//! ```no_run
//! # use std::time::Duration;
//! # use kiln_e2e::qemu::{BootSpec, Vm};
//! # fn main() -> anyhow::Result<()> {
//! let mut spec = BootSpec::new("kernel", "initrd.img");
//! spec.cmdline = "kiln.autopoweroff=3".into();
//! let mut vm = Vm::boot(spec)?;
//! vm.wait_for(|l| l.contains("KILN-MARKER init ready"), Duration::from_secs(60))?;
//! let exit = vm.wait_poweroff(Duration::from_secs(30))?;
//! println!("powered off after {:?}", exit.at);
//! # Ok(())
//! # }
//! ```
//!
//! The command line is
//! `qemu-system-x86_64 -machine q35 -accel tcg -smp 1 -m MEMORY -nographic
//! -nodefaults -serial stdio -no-reboot -kernel K -initrd I
//! -append "console=ttyS0 panic=-1 CMDLINE" EXTRA...`: the serial console is
//! QEMU's stdout, read line by line with the time since QEMU started;
//! `-nodefaults` means no NIC (add `-nic user,model=virtio-net-pci` to
//! `extra_args`), and `panic=-1` + `-no-reboot` turn a kernel panic into a
//! QEMU exit instead of a hang. [`Vm::start`] takes raw arguments instead
//! (OVMF, disks, a TPM).
//!
//! Lines are cleaned ([`clean_line`]): terminal escape sequences and control
//! characters go. Match markers with `contains`, not `starts_with`: when the
//! kernel re-initialises the UART it can drop the firmware's last newline
//! (seen: `Booting from ROM..KILN-MARKER ...` on one line).
//!
//! No process is left behind: QEMU is killed at the spec's hard `timeout`,
//! when the [`Vm`] is dropped (also while unwinding from a failed assert),
//! and, through `PR_SET_PDEATHSIG`, when the test process dies.
//!
//! At most `KILN_E2E_QEMU_JOBS` VMs (default: the number of CPUs) run at
//! once per process; [`Vm::boot`] waits for a slot, and a slot is freed as
//! soon as its QEMU has exited. The hard timeout starts when QEMU starts.
//!
//! The binary is `$KILN_E2E_QEMU` if set, else the wrapper that
//! `.ci/install-deps` writes to [`INSTALLED`], else `qemu-system-x86_64` on
//! `PATH`. A missing or broken QEMU is an error naming `.ci/install-deps`;
//! tests never skip. `KILN_E2E_QEMU_ECHO=1` copies the console to stderr
//! as it arrives.

use std::ffi::OsString;
use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::tools;

/// Where `.ci/install-deps` puts its wrapper around bookworm's unpacked
/// `qemu-system-x86_64` (it sets `QEMU_MODULE_DIR` and the `-L` ROM
/// directories).
pub const INSTALLED: &str = "/opt/kiln-qemu/bin/qemu-system-x86_64";

/// What to do about a missing or broken QEMU.
pub const QEMU_HINT: &str = "run `.ci/install-deps` (as root): it unpacks bookworm's \
    qemu-system-x86 7.2 into /opt/kiln-qemu (apt cannot install it next to the \
    backported qemu-utils 10) and installs seabios, ipxe-qemu, ovmf and swtpm";

/// Default of [`BootSpec::memory_mib`].
pub const DEFAULT_MEMORY_MIB: u32 = 256;
/// Default of [`BootSpec::timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(180);
/// What [`Vm::boot`] puts before [`BootSpec::cmdline`].
pub const BASE_CMDLINE: &str = "console=ttyS0 panic=-1";

/// How often the supervisor checks on QEMU.
const POLL: Duration = Duration::from_millis(20);
/// Console lines quoted in error messages.
const TAIL_LINES: usize = 40;
/// Longest wait for a free VM slot before giving up.
const SLOT_WAIT: Duration = Duration::from_secs(20 * 60);

/// One boot: kernel and initrd, the kernel command line, and limits.
#[derive(Debug, Clone)]
pub struct BootSpec {
    /// The kernel image (`-kernel`), e.g. a bzImage/vmlinuz.
    pub kernel: PathBuf,
    /// The initramfs (`-initrd`), cpio, optionally compressed.
    pub initrd: PathBuf,
    /// Appended to [`BASE_CMDLINE`] (`console=ttyS0 panic=-1`); the kernel
    /// takes the last of repeated parameters.
    pub cmdline: String,
    /// Guest RAM (`-m`).
    pub memory_mib: u32,
    /// Hard limit from QEMU's start: QEMU is killed when it passes.
    pub timeout: Duration,
    /// More QEMU arguments, after the harness's own.
    pub extra_args: Vec<OsString>,
}

impl BootSpec {
    /// A spec with no extra command line, [`DEFAULT_MEMORY_MIB`] and
    /// [`DEFAULT_TIMEOUT`].
    pub fn new(kernel: impl Into<PathBuf>, initrd: impl Into<PathBuf>) -> BootSpec {
        BootSpec {
            kernel: kernel.into(),
            initrd: initrd.into(),
            cmdline: String::new(),
            memory_mib: DEFAULT_MEMORY_MIB,
            timeout: DEFAULT_TIMEOUT,
            extra_args: Vec::new(),
        }
    }

    /// The kernel command line as passed to `-append`.
    pub fn kernel_cmdline(&self) -> String {
        let extra = self.cmdline.trim();
        if extra.is_empty() {
            BASE_CMDLINE.to_owned()
        } else {
            format!("{BASE_CMDLINE} {extra}")
        }
    }

    /// The QEMU arguments (without the binary).
    pub fn args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = [
            "-machine",
            "q35",
            "-accel",
            "tcg",
            "-smp",
            "1",
            "-m",
            &self.memory_mib.to_string(),
            "-nographic",
            "-nodefaults",
            "-serial",
            "stdio",
            "-no-reboot",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        args.push("-kernel".into());
        args.push(self.kernel.clone().into());
        args.push("-initrd".into());
        args.push(self.initrd.clone().into());
        args.push("-append".into());
        args.push(self.kernel_cmdline().into());
        args.extend(self.extra_args.iter().cloned());
        args
    }
}

/// The QEMU binary to run (see the module docs for the order), checked with
/// `--version` once per process. The error names `.ci/install-deps`.
pub fn binary() -> anyhow::Result<PathBuf> {
    Ok(checked()?.0.clone())
}

/// The first line of `qemu-system-x86_64 --version`.
pub fn version() -> anyhow::Result<String> {
    Ok(checked()?.1.clone())
}

fn checked() -> anyhow::Result<&'static (PathBuf, String)> {
    static CHECKED: OnceLock<Result<(PathBuf, String), String>> = OnceLock::new();
    CHECKED
        .get_or_init(|| check().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow::anyhow!("{e}"))
}

fn check() -> anyhow::Result<(PathBuf, String)> {
    let bin = locate()?;
    let out = Command::new(&bin)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}: {QEMU_HINT}", bin.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !stdout.starts_with("QEMU emulator version") {
        bail!(
            "`{} --version` failed ({}): {} {}: {QEMU_HINT}",
            bin.display(),
            out.status,
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let version = stdout.lines().next().unwrap_or_default().to_owned();
    smoke(&bin)?;
    Ok((bin, version))
}

/// Creates a q35/TCG machine paused and quits at once (~50 ms): this loads
/// the TCG module and the BIOS, which `--version` does not.
fn smoke(bin: &Path) -> anyhow::Result<()> {
    let mut cmd = Command::new(bin);
    // This thread waits for it below, so it dies only with the process.
    die_with_parent(&mut cmd);
    let mut child = cmd
        .args(["-machine", "q35", "-accel", "tcg", "-nodefaults"])
        .args(["-display", "none", "-S", "-monitor", "stdio"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {}: {QEMU_HINT}", bin.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        // QEMU may already have failed and closed its end.
        let _ = stdin.write_all(b"quit\n");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait()?.is_none() {
        if Instant::now() >= deadline {
            kill(&mut child);
            bail!("{} did not quit its monitor within 60 s", bin.display());
        }
        thread::sleep(POLL);
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "{} cannot create a q35/TCG machine ({}): {}: {QEMU_HINT}",
            bin.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn locate() -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os("KILN_E2E_QEMU").filter(|v| !v.is_empty()) {
        let bin = PathBuf::from(bin);
        if !bin.is_file() {
            bail!(
                "KILN_E2E_QEMU={} does not exist: {QEMU_HINT}",
                bin.display()
            );
        }
        return Ok(bin);
    }
    if Path::new(INSTALLED).is_file() {
        return Ok(INSTALLED.into());
    }
    tools::find("qemu-system-x86_64", "qemu-system-x86").map_err(|_| {
        anyhow::anyhow!(
            "qemu-system-x86_64 not found (not $KILN_E2E_QEMU, not {INSTALLED}, \
             not on PATH): {QEMU_HINT}"
        )
    })
}

/// A console line and when it arrived, measured from QEMU's start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleLine {
    pub at: Duration,
    pub text: String,
}

impl fmt::Display for ConsoleLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:7.3}s] {}", self.at.as_secs_f64(), self.text)
    }
}

/// Why QEMU is no longer running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// QEMU exited by itself (guest poweroff, reboot with `-no-reboot`,
    /// or a QEMU error).
    Exited,
    /// Killed by the harness at [`BootSpec::timeout`].
    TimedOut,
    /// Killed by [`Vm::kill`] or drop.
    Killed,
}

/// How and when QEMU ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub ending: Ending,
    pub status: ExitStatus,
    /// Since QEMU's start.
    pub at: Duration,
}

/// What the supervisor and the readers share with the [`Vm`].
#[derive(Default)]
struct State {
    lines: Vec<ConsoleLine>,
    stdout_closed: bool,
    stderr: Vec<u8>,
    exit: Option<Exit>,
    kill_requested: bool,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running (or finished) QEMU. Dropping it kills QEMU and reaps it.
pub struct Vm {
    shared: Arc<Shared>,
    supervisor: Option<JoinHandle<()>>,
    /// The next console line [`Vm::wait_for`] looks at.
    cursor: usize,
    started: Instant,
    pid: u32,
    command: String,
    timeout: Duration,
}

impl fmt::Debug for Vm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vm")
            .field("pid", &self.pid)
            .field("command", &self.command)
            .field("cursor", &self.cursor)
            .finish_non_exhaustive()
    }
}

impl Vm {
    /// Starts QEMU for `spec` (after waiting for a free slot, see the
    /// module docs). Fails if QEMU is missing or broken, or a file of the
    /// spec does not exist; QEMU failing later shows up in the waits.
    pub fn boot(spec: BootSpec) -> anyhow::Result<Vm> {
        for (what, path) in [("kernel", &spec.kernel), ("initrd", &spec.initrd)] {
            if !path.is_file() {
                bail!("the {what} {} does not exist", path.display());
            }
        }
        Vm::start(spec.args(), spec.timeout)
    }

    /// Runs QEMU with exactly `args` under the same supervision as
    /// [`Vm::boot`] (slot, hard `timeout`, console from stdout, kill on
    /// drop), for boots a [`BootSpec`] does not describe, e.g. OVMF with
    /// a disk. The args must put the console on stdout (`-serial stdio`
    /// with `-nodefaults`, or `-nographic`) and should include `-no-reboot`.
    pub fn start(args: Vec<OsString>, timeout: Duration) -> anyhow::Result<Vm> {
        let bin = binary()?;
        let mut cmd = Command::new(&bin);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let command = tools::describe(&cmd);
        let slot = Slot::acquire()?;

        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let echo =
            std::env::var_os("KILN_E2E_QEMU_ECHO").is_some_and(|v| !v.is_empty() && v != "0");
        let (tx, rx) = mpsc::channel();
        let supervisor = {
            let shared = shared.clone();
            thread::Builder::new()
                .name("qemu-supervisor".into())
                .spawn(move || supervise(cmd, shared, timeout, slot, echo, tx))
                .context("cannot start the QEMU supervisor thread")?
        };
        let started = rx.recv();
        let (pid, started) = match started {
            Ok(Ok(started)) => started,
            Ok(Err(e)) => {
                let _ = supervisor.join();
                return Err(e.context(format!("cannot start `{command}`")));
            }
            Err(_) => {
                let _ = supervisor.join();
                bail!("the QEMU supervisor thread died starting `{command}`");
            }
        };
        Ok(Vm {
            shared,
            supervisor: Some(supervisor),
            cursor: 0,
            started,
            pid,
            command,
            timeout,
        })
    }

    /// Waits up to `within` for the next console line (after those earlier
    /// waits consumed) on which `pred` is true, and returns it. Fails when
    /// `within` passes or QEMU has ended without such a line; the error
    /// quotes the end of the console and QEMU's stderr.
    pub fn wait_for(
        &mut self,
        mut pred: impl FnMut(&str) -> bool,
        within: Duration,
    ) -> anyhow::Result<ConsoleLine> {
        let deadline = Instant::now() + within;
        let mut state = self.shared.lock();
        loop {
            while self.cursor < state.lines.len() {
                let line = &state.lines[self.cursor];
                self.cursor += 1;
                if pred(&line.text) {
                    return Ok(line.clone());
                }
            }
            let now = Instant::now();
            if state.stdout_closed && state.exit.is_some() {
                let why = format!(
                    "QEMU ended ({}) before a matching console line",
                    ended(&state)
                );
                return Err(self.failure(&state, &why));
            }
            if now >= deadline {
                let why = format!("no matching console line within {within:?}");
                return Err(self.failure(&state, &why));
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// [`Vm::wait_for`] a line containing `needle`.
    pub fn wait_for_text(&mut self, needle: &str, within: Duration) -> anyhow::Result<ConsoleLine> {
        self.wait_for(|line| line.contains(needle), within)
            .with_context(|| format!("waiting for {needle:?}"))
    }

    /// Waits up to `within` for QEMU to end by itself (the console is then
    /// complete). Fails if `within` passes (QEMU keeps running) or the
    /// harness had to kill it at the hard timeout.
    pub fn wait_exit(&mut self, within: Duration) -> anyhow::Result<Exit> {
        let deadline = Instant::now() + within;
        let mut state = self.shared.lock();
        loop {
            if let (Some(exit), true) = (state.exit, state.stdout_closed) {
                if exit.ending != Ending::Exited {
                    let why = format!("QEMU did not exit by itself: {}", ended(&state));
                    return Err(self.failure(&state, &why));
                }
                return Ok(exit);
            }
            let now = Instant::now();
            if now >= deadline {
                let why = format!("QEMU still running after {within:?}");
                return Err(self.failure(&state, &why));
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// [`Vm::wait_exit`], then checks that the guest powered off cleanly:
    /// QEMU exited with status 0 and the console shows no kernel panic
    /// (with `panic=-1` a panic also ends QEMU with status 0).
    pub fn wait_poweroff(&mut self, within: Duration) -> anyhow::Result<Exit> {
        let exit = self.wait_exit(within)?;
        let state = self.shared.lock();
        if !exit.status.success() {
            let why = format!("QEMU exited with {}", exit.status);
            return Err(self.failure(&state, &why));
        }
        if let Some(panic) = state.lines.iter().find(|l| l.text.contains("Kernel panic")) {
            let why = format!("the guest kernel panicked: {}", panic.text);
            return Err(self.failure(&state, &why));
        }
        Ok(exit)
    }

    /// Kills QEMU (if still running) and waits for it.
    pub fn kill(&mut self) -> Exit {
        let mut state = self.shared.lock();
        state.kill_requested = true;
        self.shared.changed.notify_all();
        loop {
            if let (Some(exit), true) = (state.exit, state.stdout_closed) {
                return exit;
            }
            state = self
                .shared
                .changed
                .wait(state)
                .unwrap_or_else(|p| p.into_inner());
        }
    }

    /// How QEMU ended, if it has.
    pub fn exit(&self) -> Option<Exit> {
        self.shared.lock().exit
    }

    /// Every console line so far.
    pub fn lines(&self) -> Vec<ConsoleLine> {
        self.shared.lock().lines.clone()
    }

    /// The console so far, one line per `\n`.
    pub fn console(&self) -> String {
        let state = self.shared.lock();
        let mut out = String::new();
        for line in &state.lines {
            out.push_str(&line.text);
            out.push('\n');
        }
        out
    }

    /// QEMU's own stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.shared.lock().stderr).into_owned()
    }

    /// Time since QEMU started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// QEMU's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The full QEMU command line, for messages.
    pub fn command(&self) -> &str {
        &self.command
    }

    fn failure(&self, state: &State, why: &str) -> anyhow::Error {
        let skip = state.lines.len().saturating_sub(TAIL_LINES);
        let mut msg = format!(
            "{why} ({:.1}s after QEMU started, hard timeout {:?})\ncommand: {}\n",
            self.started.elapsed().as_secs_f64(),
            self.timeout,
            self.command
        );
        msg.push_str(&format!(
            "console ({} lines{}):\n",
            state.lines.len(),
            if skip > 0 { ", the last ones" } else { "" }
        ));
        for line in &state.lines[skip..] {
            msg.push_str(&format!("  {line}\n"));
        }
        let stderr = String::from_utf8_lossy(&state.stderr);
        if !stderr.trim().is_empty() {
            msg.push_str(&format!("QEMU stderr:\n{}\n", stderr.trim_end()));
            if state
                .exit
                .is_some_and(|e| e.ending == Ending::Exited && !e.status.success())
            {
                msg.push_str(&format!("if QEMU itself is broken: {QEMU_HINT}\n"));
            }
        }
        anyhow::anyhow!(msg)
    }
}

fn ended(state: &State) -> String {
    match state.exit {
        None => "still running".into(),
        Some(e) => {
            let how = match e.ending {
                Ending::Exited => "exited",
                Ending::TimedOut => "killed at the hard timeout",
                Ending::Killed => "killed",
            };
            format!("{how} with {} after {:.1}s", e.status, e.at.as_secs_f64())
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        {
            let mut state = self.shared.lock();
            state.kill_requested = true;
            self.shared.changed.notify_all();
        }
        if let Some(supervisor) = self.supervisor.take() {
            let _ = supervisor.join();
        }
    }
}

/// Runs in its own thread for the life of QEMU: spawns it (so that
/// `PR_SET_PDEATHSIG`, which fires when the spawning *thread* ends, only
/// fires when the process dies), reads its output, kills it at the deadline
/// or on request, reaps it, and only then returns.
fn supervise(
    mut cmd: Command,
    shared: Arc<Shared>,
    timeout: Duration,
    slot: Slot,
    echo: bool,
    started: mpsc::Sender<anyhow::Result<(u32, Instant)>>,
) {
    die_with_parent(&mut cmd);
    let start = Instant::now();
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            let _ = started.send(Err(e.into()));
            return;
        }
    };
    let readers = start_readers(&mut child, &shared, start, echo);
    let _ = started.send(Ok((child.id(), start)));

    let deadline = start + timeout;
    let (status, ending) = loop {
        match child.try_wait() {
            Ok(Some(status)) => break (status, Ending::Exited),
            Ok(None) => {}
            Err(_) => break (kill(&mut child), Ending::Killed),
        }
        let now = Instant::now();
        if now >= deadline {
            break (kill(&mut child), Ending::TimedOut);
        }
        let state = shared.lock();
        if state.kill_requested {
            drop(state);
            break (kill(&mut child), Ending::Killed);
        }
        let _ = shared.changed.wait_timeout(state, POLL.min(deadline - now));
    };
    let at = start.elapsed();
    drop(slot);
    // QEMU is gone, so its pipes are closed and the readers finish.
    for reader in readers {
        let _ = reader.join();
    }
    let mut state = shared.lock();
    state.exit = Some(Exit { ending, status, at });
    shared.changed.notify_all();
}

/// Makes the child get SIGKILL when the thread that spawns it ends, which
/// the callers arrange to be no earlier than the child's reaping, so in
/// effect: when the test process dies.
pub(crate) fn die_with_parent(cmd: &mut Command) {
    let parent = std::process::id();
    // SAFETY: prctl, getppid and _exit are async-signal-safe, and nothing
    // here allocates.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent died between fork and prctl.
            if libc::getppid() as u32 != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

fn kill(child: &mut Child) -> ExitStatus {
    let _ = child.kill();
    loop {
        match child.wait() {
            Ok(status) => return status,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            // ECHILD cannot happen for our own unreaped child; do not spin.
            Err(e) => panic!("cannot reap QEMU: {e}"),
        }
    }
}

fn start_readers(
    child: &mut Child,
    shared: &Arc<Shared>,
    start: Instant,
    echo: bool,
) -> Vec<JoinHandle<()>> {
    let mut readers = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        let shared = shared.clone();
        readers.push(thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let line = ConsoleLine {
                    at: start.elapsed(),
                    text: clean_line(&buf),
                };
                if echo {
                    eprintln!("qemu {line}");
                }
                shared.lock().lines.push(line);
                shared.changed.notify_all();
            }
            shared.lock().stdout_closed = true;
            shared.changed.notify_all();
        }));
    } else {
        shared.lock().stdout_closed = true;
    }
    if let Some(mut stderr) = child.stderr.take() {
        let shared = shared.clone();
        readers.push(thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match stderr.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if echo {
                            eprint!("qemu stderr: {}", String::from_utf8_lossy(&buf[..n]));
                        }
                        shared.lock().stderr.extend_from_slice(&buf[..n]);
                    }
                }
            }
        }));
    }
    readers
}

/// A permit to run one QEMU (see the module docs).
struct Slot;

struct Slots {
    free: Mutex<usize>,
    returned: Condvar,
}

fn slots() -> &'static Slots {
    static SLOTS: OnceLock<Slots> = OnceLock::new();
    SLOTS.get_or_init(|| {
        let jobs = std::env::var("KILN_E2E_QEMU_JOBS")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|n| *n > 0)
            .unwrap_or_else(|| thread::available_parallelism().map_or(1, |n| n.get()));
        Slots {
            free: Mutex::new(jobs),
            returned: Condvar::new(),
        }
    })
}

impl Slot {
    fn acquire() -> anyhow::Result<Slot> {
        let slots = slots();
        let deadline = Instant::now() + SLOT_WAIT;
        let mut free = slots.free.lock().unwrap_or_else(|p| p.into_inner());
        while *free == 0 {
            let now = Instant::now();
            if now >= deadline {
                bail!(
                    "no QEMU slot free after {SLOT_WAIT:?} (KILN_E2E_QEMU_JOBS limits \
                     concurrent VMs per test process)"
                );
            }
            free = slots
                .returned
                .wait_timeout(free, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        *free -= 1;
        Ok(Slot)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let slots = slots();
        *slots.free.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        slots.returned.notify_one();
    }
}

/// A console line as text: terminal escape sequences (SeaBIOS and the
/// kernel clear the screen with `ESC c ESC [?7l ESC [2J`) and control
/// characters other than tab removed, invalid UTF-8 replaced.
pub fn clean_line(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        i += 1;
        match b {
            0x1b => match raw.get(i) {
                // CSI: parameters and intermediates, then a final byte.
                Some(b'[') => {
                    i += 1;
                    while i < raw.len() && !(0x40..=0x7e).contains(&raw[i]) {
                        i += 1;
                    }
                    i += 1;
                }
                // OSC: up to BEL or ESC \.
                Some(b']') => {
                    while i < raw.len() && raw[i] != 0x07 && raw[i] != 0x1b {
                        i += 1;
                    }
                    i += if raw.get(i) == Some(&0x1b) { 2 } else { 1 };
                }
                // Others: intermediates, then a final byte (`ESC c`, `ESC ( B`).
                _ => {
                    while i < raw.len() && (0x20..=0x2f).contains(&raw[i]) {
                        i += 1;
                    }
                    i += 1;
                }
            },
            b'\t' => out.push(b),
            0..=0x1f | 0x7f => {}
            _ => out.push(b),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

// A Vm can be handed to another thread.
const _: fn() = || {
    fn send<T: Send>() {}
    send::<Vm>();
};

/// The console lines of `lines` from the first one containing `from`,
/// for assertions that want the output after a marker.
pub fn after<'a>(lines: &'a [ConsoleLine], from: &str) -> &'a [ConsoleLine] {
    let start = lines
        .iter()
        .position(|l| l.text.contains(from))
        .unwrap_or(lines.len());
    &lines[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line() {
        let mut spec = BootSpec::new("/k", "/i");
        assert_eq!(spec.kernel_cmdline(), "console=ttyS0 panic=-1");
        spec.cmdline = " quiet kiln.autopoweroff=3 ".into();
        spec.extra_args = vec!["-nic".into(), "user,model=virtio-net-pci".into()];
        let args: Vec<String> = spec
            .args()
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        assert_eq!(
            args.join(" "),
            "-machine q35 -accel tcg -smp 1 -m 256 -nographic -nodefaults -serial stdio \
             -no-reboot -kernel /k -initrd /i -append"
                .to_owned()
                + " console=ttyS0 panic=-1 quiet kiln.autopoweroff=3"
                + " -nic user,model=virtio-net-pci"
        );
    }

    #[test]
    fn console_lines_lose_escapes_and_controls() {
        assert_eq!(
            clean_line(b"\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBIOS (version 1.16.2)\r\n"),
            "SeaBIOS (version 1.16.2)"
        );
        assert_eq!(
            clean_line(b"\x1bc\x1b[?7l\x1b[2JKILN-MARKER up"),
            "KILN-MARKER up"
        );
        assert_eq!(clean_line(b"a\tb\x1b(Bc\x1b]0;title\x07d\x08"), "a\tbcd");
        assert_eq!(clean_line(b"\x1b]0;t\x1b\\x\xff"), "x\u{fffd}");
        assert_eq!(clean_line(b"cut \x1b[1"), "cut ");
        assert_eq!(clean_line(b"\x1b"), "");
    }

    #[test]
    fn after_marker() {
        let line = |t: &str| ConsoleLine {
            at: Duration::ZERO,
            text: t.into(),
        };
        let lines = [line("a"), line("KILN-MARKER x"), line("b")];
        assert_eq!(after(&lines, "KILN-MARKER").len(), 2);
        assert!(after(&lines, "nope").is_empty());
    }
}
