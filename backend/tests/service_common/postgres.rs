//! A real PostgreSQL from Debian's `postgresql` package, started on a free
//! loopback port in a scratch directory, and the `kiln serve --role worker`
//! processes that share its queue. The service suites run against it when
//! `KILN_TEST_DATABASE=postgres` (see `scripts/test`).

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kiln_backend::service::{Config, Role};
use tempfile::TempDir;

/// Whether this run puts the service on PostgreSQL.
pub fn selected() -> bool {
    std::env::var("KILN_TEST_DATABASE").is_ok_and(|v| v == "postgres")
}

/// A running PostgreSQL cluster, stopped and removed on drop.
pub struct Postgres {
    child: Child,
    /// `postgres://kiln@127.0.0.1:PORT/postgres`.
    pub url: String,
    _dir: TempDir,
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGINT is PostgreSQL's fast shutdown.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Debian installs each major version under /usr/lib/postgresql/N/bin.
fn bin_dir() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed (apt-get install postgresql; .ci/install-deps does)")
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, p)| p.join("postgres").is_file())
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("no PostgreSQL server under /usr/lib/postgresql")
        .1
}

/// PostgreSQL refuses to run as root: then it runs as the `postgres` user
/// the package created.
fn server_user() -> Option<(u32, u32)> {
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let line = passwd
        .lines()
        .find(|l| l.starts_with("postgres:"))
        .expect("running as root, and there is no `postgres` user to run PostgreSQL as");
    let f: Vec<&str> = line.split(':').collect();
    Some((f[2].parse().unwrap(), f[3].parse().unwrap()))
}

fn as_server_user(cmd: &mut Command, user: Option<(u32, u32)>) -> &mut Command {
    if let Some((uid, gid)) = user {
        cmd.uid(uid).gid(gid);
    }
    cmd
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Postgres {
    /// initdb into a scratch directory, then start the server on loopback
    /// only, tuned for tests (no fsync), and wait until it answers.
    pub fn start() -> Postgres {
        let bin = bin_dir();
        let user = server_user();
        let dir = tempfile::Builder::new()
            .prefix("kiln-pg")
            .tempdir()
            .unwrap();
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        let data = dir.path().join("data");
        let out = as_server_user(
            Command::new(bin.join("initdb"))
                .args([
                    "--auth=trust",
                    "--username=kiln",
                    "--encoding=UTF8",
                    "--no-sync",
                ])
                .arg("-D")
                .arg(&data)
                .current_dir(dir.path()),
            user,
        )
        .output()
        .expect("cannot run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let mut child = as_server_user(
            Command::new(bin.join("postgres"))
                .arg("-D")
                .arg(&data)
                .args(["-h", "127.0.0.1", "-p", &port.to_string()])
                .arg("-k")
                .arg(dir.path())
                .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
                .args(["-c", "full_page_writes=off", "-c", "max_connections=200"])
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped()),
            user,
        )
        .spawn()
        .expect("cannot start postgres");
        let log = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(log).lines().map_while(Result::ok) {
                if std::env::var_os("KILN_TEST_PG_LOG").is_some() {
                    eprintln!("postgres: {line}");
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("postgres exited during start: {status}");
            }
            let ready = TcpStream::connect(("127.0.0.1", port)).is_ok()
                && Command::new(bin.join("pg_isready"))
                    .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "kiln"])
                    .stdout(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
            if ready {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "postgres did not accept connections"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Postgres {
            child,
            url: format!("postgres://kiln@127.0.0.1:{port}/postgres"),
            _dir: dir,
        }
    }
}

/// `kiln serve --role worker` processes with the in-process server's
/// configuration; killed on drop.
pub struct Workers {
    children: Vec<Child>,
    /// Each worker's `http://127.0.0.1:PORT` (health and metrics).
    pub bases: Vec<String>,
}

impl Drop for Workers {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Workers {
    /// Starts `n` workers sharing `cfg` (written as `worker.toml` in its
    /// home) and waits until each has opened the database.
    pub fn start(cfg: &Config, n: usize) -> Workers {
        let mut cfg = cfg.clone();
        cfg.role = Role::Worker;
        let file = cfg.home.join("worker.toml");
        std::fs::write(&file, toml::to_string(&cfg).unwrap()).unwrap();
        let (children, bases) = (0..n).map(|_| spawn_worker(&cfg.home, &file)).unzip();
        Workers { children, bases }
    }

    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }

    /// SIGKILLs worker `i`.
    pub fn kill(&mut self, i: usize) {
        let c = &mut self.children[i];
        unsafe { libc::kill(c.id() as i32, libc::SIGKILL) };
        c.wait().unwrap();
    }
}

fn spawn_worker(home: &Path, config: &Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["serve", "--role", "worker", "--config"])
        .arg(config)
        .env("KILN_HOME", home)
        .env("HOME", home)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start a kiln worker");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let base = loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(rest) = line.strip_prefix("kiln serve: listening on ") {
                    break rest.split_whitespace().next().unwrap_or("").to_owned();
                }
            }
            _ => panic!("the kiln worker exited before it started"),
        }
    };
    let verbose = std::env::var_os("KILN_TEST_WORKER_LOG").is_some();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if verbose {
                eprintln!("worker: {line}");
            }
        }
    });
    (child, base)
}
