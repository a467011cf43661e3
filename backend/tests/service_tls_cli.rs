//! The real `kiln serve` over HTTPS (rustls) with an openssl-made
//! certificate: TLS answers, session cookies are `Secure`, plain HTTP and
//! clients that do not trust the certificate get nothing. Then the CLI
//! against it: `kiln login` stores a token (0600) and `kiln remote build`
//! submits, follows the log, and downloads artifacts whose sha256 matches.

mod service_common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use serde_json::{json, Value};
use service_common::{sha256_hex, FILES_SPEC};

struct Proc {
    child: Child,
    base: String,
    password: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn kiln() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
}

/// A self-signed certificate for 127.0.0.1 and localhost, made by openssl.
fn certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=kiln test",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-addext",
            "extendedKeyUsage=serverAuth",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl must be installed");
    assert!(out.status.success(), "{out:?}");
    (cert, key)
}

fn serve_tls(home: &Path, cert: &Path, key: &Path) -> Proc {
    let mut child = kiln()
        .args(["serve", "--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(cert)
        .arg("--tls-key")
        .arg(key)
        .env("KILN_HOME", home)
        .env("HOME", home)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut password = String::new();
    let base = loop {
        let line = lines.next().expect("kiln serve exited").unwrap();
        if let Some(p) = line.strip_prefix("kiln serve: admin password: ") {
            password = p.trim().to_owned();
        }
        if let Some(rest) = line.strip_prefix("kiln serve: listening on ") {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    Proc {
        child,
        base,
        password,
    }
}

fn client(cert: &Path) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(cert).unwrap()).unwrap();
    reqwest::Client::builder()
        .tls_certs_merge([ca])
        .build()
        .unwrap()
}

fn run(cmd: &mut Command, stdin: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}\n--- stdout\n{}--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_rustls_and_the_cli_against_it() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path());
    let home = dir.path().join("server");
    let p = serve_tls(&home, &cert, &key);
    assert!(p.base.starts_with("https://127.0.0.1:"), "{}", p.base);
    let https = client(&cert);

    let r = https
        .get(format!("{}/healthz", p.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = https
        .post(format!("{}/api/v1/auth/login", p.base))
        .json(&json!({"username": "admin", "password": p.password}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    for attr in ["HttpOnly", "SameSite=Strict", "Secure"] {
        assert!(cookie.contains(attr), "{cookie}");
    }

    // Without the certificate trusted, and over plain HTTP: no answer.
    let untrusting = reqwest::Client::new();
    assert!(untrusting
        .get(format!("{}/healthz", p.base))
        .send()
        .await
        .is_err());
    let addr = p.base.trim_start_matches("https://").to_owned();
    let plain = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        buf
    })
    .await
    .unwrap();
    assert!(
        !String::from_utf8_lossy(&plain).contains("200 OK"),
        "plain HTTP got an answer"
    );

    // kiln login with the password on stdin; the token lands in 0600.
    let user_home = dir.path().join("user");
    let cli = |args: &[&str]| {
        let mut c = kiln();
        c.args(args)
            .env("KILN_HOME", &user_home)
            .env("HOME", &user_home)
            .env_remove("KILN_SERVER")
            .current_dir(dir.path());
        c
    };
    let wrong = run(
        cli(&[
            "login",
            &p.base,
            "-u",
            "admin",
            "--password-stdin",
            "--ca-cert",
        ])
        .arg(&cert),
        "not-the-password\n",
    );
    assert_eq!(wrong.status.code(), Some(1), "{}", text(&wrong));
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("wrong user name or password"),
        "{}",
        text(&wrong)
    );
    let login = run(
        cli(&[
            "login",
            &p.base,
            "-u",
            "admin",
            "--password-stdin",
            "--ca-cert",
        ])
        .arg(&cert),
        &format!("{}\n", p.password),
    );
    assert!(login.status.success(), "{}", text(&login));
    let creds = user_home.join("credentials.toml");
    let mode = std::fs::metadata(&creds).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let stored: toml::Table = std::fs::read_to_string(&creds).unwrap().parse().unwrap();
    let entry = &stored["server"][p.base.as_str()];
    let token = entry["token"].as_str().unwrap().to_owned();
    assert_eq!(entry["team"].as_str(), Some("default"));
    let r = https
        .get(format!("{}/api/v1/auth/me", p.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the stored token works");

    // kiln remote build: submit, follow, download, check.
    std::fs::write(dir.path().join("hello.yml"), FILES_SPEC).unwrap();
    let out = run(
        &mut cli(&["remote", "build", "-f", "tar", "--dir", "out", "hello.yml"]),
        "",
    );
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("  writing tar"), "{stderr}");
    assert!(
        stderr.contains("content trust: no image had to be signed"),
        "{stderr}"
    );
    let tar = std::fs::read(dir.path().join("out/hello.tar")).unwrap();
    let r = https
        .get(format!("{}/api/v1/builds?limit=1", p.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let list: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    let artifact = &list["builds"][0];
    let id = artifact["id"].as_str().unwrap();
    let r = https
        .get(format!("{}/api/v1/builds/{id}", p.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let build: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(build["artifacts"][0]["name"], "hello.tar");
    assert_eq!(build["artifacts"][0]["sha256"], sha256_hex(&tar).as_str());
    assert!(
        stderr.contains(&format!("sha256:{}", sha256_hex(&tar))),
        "{stderr}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, ["hello.tar"]);

    // An invalid spec: exit 1 with the server's diagnostics.
    std::fs::write(dir.path().join("bad.yml"), "onboot:\n  - name: x\n").unwrap();
    let out = run(&mut cli(&["remote", "build", "bad.yml"]), "");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("422") && stderr.contains("image"),
        "{stderr}"
    );

    // --token-stdin stores a given token; a wrong one is refused.
    let other_home = dir.path().join("other");
    let mut c = kiln();
    c.args(["login", &p.base, "--token-stdin", "--ca-cert"])
        .arg(&cert)
        .env("KILN_HOME", &other_home)
        .env("HOME", &other_home);
    let bad = run(&mut c, "kiln_not_a_token\n");
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad));
    assert!(!other_home.join("credentials.toml").exists());
    let good = run(&mut c, &format!("{token}\n"));
    assert!(good.status.success(), "{}", text(&good));
    assert!(other_home.join("credentials.toml").exists());
}
