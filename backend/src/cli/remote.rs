//! `kiln remote build`: build on a kiln server with the token `kiln login`
//! stored: submit the spec, follow the build's event stream, then download
//! every artifact, checking its sha256 against the build result.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use super::credentials::{self, Credentials};
use super::exit;

/// Use a kiln server from the command line.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    Build(BuildArgs),
}

/// Build a spec on the server, follow its log, and download the artifacts.
#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// The server [default: $KILN_SERVER, else the only one `kiln login`
    /// stored].
    #[arg(long, value_name = "URL")]
    server: Option<String>,
    /// Output format; repeatable or comma-separated [default: kernel+initrd].
    #[arg(long = "format", short = 'f', value_name = "FORMAT")]
    formats: Vec<String>,
    /// Directory for the downloaded artifacts.
    #[arg(long, default_value = ".", value_name = "DIR")]
    dir: PathBuf,
    /// Base name of the outputs [default: the spec's file name without its
    /// extension].
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Target architecture: amd64 or arm64 [default: the server's].
    #[arg(long, value_name = "ARCH")]
    arch: Option<String>,
    /// The team that owns the build [default: the one stored at login].
    #[arg(long, value_name = "TEAM")]
    team: Option<String>,
    /// Pull every image even when the server's store has it.
    #[arg(long)]
    pull: bool,
    /// Skip signature verification (the trust policies must allow it).
    #[arg(long)]
    disable_content_trust: bool,
    /// Submit and print the build id without waiting.
    #[arg(long)]
    detach: bool,
    /// The spec file; `-` reads standard input.
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

/// A failed command: its exit code and message.
pub struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    pub fn usage(message: impl std::fmt::Display) -> Failure {
        Failure {
            code: exit::USAGE,
            message: message.to_string(),
        }
    }

    pub fn failed(message: impl std::fmt::Display) -> Failure {
        Failure {
            code: exit::INVALID,
            message: message.to_string(),
        }
    }

    pub fn report(self) -> u8 {
        eprintln!("kiln: {}", self.message);
        self.code
    }
}

/// An HTTP client (rustls) that also trusts `ca_cert` when given.
pub fn http_client(ca_cert: Option<&Path>) -> Result<reqwest::Client, Failure> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = ca_cert {
        let pem = std::fs::read(path)
            .map_err(|e| Failure::usage(format!("cannot read {}: {e}", path.display())))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| Failure::usage(format!("{}: {e}", path.display())))?;
        builder = builder.tls_certs_merge(certs);
    }
    builder
        .build()
        .map_err(|e| Failure::failed(format!("HTTP client: {e}")))
}

pub fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::failed(format!("cannot start the async runtime: {e}")))
}

/// The JSON body of a successful response, or a failure with the server's
/// `{code, message}`.
pub async fn check(
    response: Result<reqwest::Response, reqwest::Error>,
    doing: &str,
) -> Result<Value, Failure> {
    let r = response.map_err(|e| Failure::failed(format!("{doing}: {e}")))?;
    let status = r.status();
    let text = r
        .text()
        .await
        .map_err(|e| Failure::failed(format!("{doing}: {e}")))?;
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if status.is_success() {
        return Ok(body);
    }
    let message = body["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| body.to_string());
    let mut full = format!("{doing}: the server answered {status}: {message}");
    if let Some(diags) = body["details"]["diagnostics"].as_array() {
        for d in diags {
            full.push_str(&format!(
                "\n  {}:{}: {}: {}",
                d["line"], d["col"], d["code"], d["message"]
            ));
        }
    }
    Err(Failure::failed(full))
}

pub fn run(args: Args) -> u8 {
    let result = match args.command {
        Command::Build(b) => build(b),
    };
    match result {
        Ok(()) => exit::OK,
        Err(f) => f.report(),
    }
}

struct Remote {
    base: String,
    token: String,
    client: reqwest::Client,
}

impl Remote {
    async fn get(&self, path: &str, doing: &str) -> Result<Value, Failure> {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await;
        check(r, doing).await
    }
}

fn build(args: BuildArgs) -> Result<(), Failure> {
    let path = credentials::default_path().map_err(Failure::usage)?;
    let creds = Credentials::load(&path).map_err(Failure::usage)?;
    let server = args
        .server
        .clone()
        .or_else(|| std::env::var("KILN_SERVER").ok().filter(|s| !s.is_empty()));
    let (base, entry) = creds.pick(server.as_deref()).map_err(Failure::usage)?;
    let spec = if args.file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
            .map_err(|e| Failure::usage(format!("standard input: {e}")))?
    } else {
        std::fs::read_to_string(&args.file)
            .map_err(|e| Failure::usage(format!("cannot read {}: {e}", args.file.display())))?
    };
    let name = args.name.clone().unwrap_or_else(|| {
        args.file
            .file_stem()
            .filter(|_| args.file.as_os_str() != "-")
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "moby".to_owned())
    });
    let remote = Remote {
        client: http_client(entry.ca_cert.as_deref())?,
        base,
        token: entry.token,
    };
    let mut body = json!({
        "spec": spec,
        "formats": args.formats,
        "name": name,
        "pull": args.pull,
        "disable_content_trust": args.disable_content_trust,
    });
    if let Some(arch) = &args.arch {
        body["arch"] = json!(arch);
    }
    if let Some(team) = args.team.as_ref().or(entry.team.as_ref()) {
        body["team"] = json!(team);
    }
    let rt = runtime()?;
    rt.block_on(async {
        let r = remote
            .client
            .post(format!("{}/api/v1/builds", remote.base))
            .bearer_auth(&remote.token)
            .json(&body)
            .send()
            .await;
        let submitted = check(r, "submitting the build").await?;
        let id = submitted["id"]
            .as_str()
            .ok_or_else(|| Failure::failed("the server returned no build id"))?
            .to_owned();
        eprintln!("kiln: build {id} submitted to {}", remote.base);
        if args.detach {
            println!("{id}");
            return Ok(());
        }
        follow(&remote, &id).await?;
        let build = remote
            .get(&format!("/api/v1/builds/{id}"), "reading the build")
            .await?;
        if build["state"] != "succeeded" {
            return Err(Failure::failed(format!(
                "build {id} {}: {}",
                build["state"].as_str().unwrap_or("ended"),
                build["error"].as_str().unwrap_or("no reason given")
            )));
        }
        std::fs::create_dir_all(&args.dir)
            .map_err(|e| Failure::usage(format!("cannot create {}: {e}", args.dir.display())))?;
        let mut parts = Vec::new();
        for a in build["artifacts"].as_array().cloned().unwrap_or_default() {
            let file = download(&remote, &a, &args.dir).await?;
            parts.push(format!(
                "{} ({} bytes, sha256:{})",
                file.display(),
                a["size"],
                a["sha256"].as_str().unwrap_or("")
            ));
        }
        eprintln!("kiln: built {} on {}", parts.join(", "), remote.base);
        eprintln!("kiln: {}", trust_summary(&build["content_trust"]));
        Ok(())
    })
}

fn trust_summary(t: &Value) -> String {
    if t["disabled"] == true {
        return "content trust DISABLED (--disable-content-trust): no signature was verified"
            .to_owned();
    }
    let verified = t["verified"].as_array().cloned().unwrap_or_default();
    if verified.is_empty() {
        return "content trust: no image had to be signed".to_owned();
    }
    let items: Vec<String> = verified
        .iter()
        .map(|v| {
            format!(
                "{}@{} (key {})",
                v["image"].as_str().unwrap_or(""),
                v["digest"].as_str().unwrap_or(""),
                v["key_fingerprint"].as_str().unwrap_or("")
            )
        })
        .collect();
    format!("content trust: verified {}", items.join(", "))
}

/// Prints the build's log lines to stderr until its `end` event,
/// reconnecting with `Last-Event-ID` if the stream breaks.
async fn follow(remote: &Remote, id: &str) -> Result<(), Failure> {
    let mut last = String::new();
    let mut attempts = 0;
    loop {
        let mut req = remote
            .client
            .get(format!("{}/api/v1/builds/{id}/events", remote.base))
            .bearer_auth(&remote.token)
            .header("accept", "text/event-stream");
        if !last.is_empty() {
            req = req.header("last-event-id", &last);
        }
        let mut resp = match req.send().await {
            Ok(r) if r.status().is_success() => r,
            Ok(r) => return check(Ok(r), "following the build").await.map(drop),
            Err(e) if attempts < 5 => {
                attempts += 1;
                eprintln!("kiln: the event stream failed ({e}); reconnecting");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(e) => return Err(Failure::failed(format!("following the build: {e}"))),
        };
        let mut pending = String::new();
        let mut event = (String::new(), String::new(), String::new());
        loop {
            let chunk = match resp.chunk().await {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(_) => break,
            };
            pending.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(nl) = pending.find('\n') {
                let line = pending[..nl].trim_end_matches('\r').to_owned();
                pending.drain(..=nl);
                if line.is_empty() {
                    let (eid, kind, data) = std::mem::take(&mut event);
                    if !eid.is_empty() {
                        last = eid;
                    }
                    if show(&kind, &data) {
                        return Ok(());
                    }
                } else if let Some(v) = line.strip_prefix("id:") {
                    event.0 = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("event:") {
                    event.1 = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    event.2.push_str(v.strip_prefix(' ').unwrap_or(v));
                }
            }
        }
        attempts += 1;
        if attempts > 5 {
            return Err(Failure::failed(
                "the event stream kept ending before the build did",
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Prints one event; true at the end.
fn show(kind: &str, data: &str) -> bool {
    let v: Value = serde_json::from_str(data).unwrap_or(Value::Null);
    match kind {
        "log" => eprintln!("  {}", v["message"].as_str().unwrap_or(data)),
        "state" => eprintln!("  [{}]", v["state"].as_str().unwrap_or(data)),
        "artifact" => eprintln!(
            "  artifact {} ({} bytes)",
            v["name"].as_str().unwrap_or(""),
            v["size"]
        ),
        "end" => return true,
        _ => {}
    }
    false
}

/// Downloads one artifact into `dir` through a temporary file, checking
/// its size and sha256 against the build result before renaming it.
async fn download(remote: &Remote, a: &Value, dir: &Path) -> Result<PathBuf, Failure> {
    let name = a["name"].as_str().unwrap_or("");
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return Err(Failure::failed(format!(
            "the server named an artifact `{name}`"
        )));
    }
    let want = a["sha256"].as_str().unwrap_or("").to_owned();
    let url = format!("{}{}", remote.base, a["url"].as_str().unwrap_or(""));
    let mut resp = remote
        .client
        .get(&url)
        .bearer_auth(&remote.token)
        .send()
        .await
        .map_err(|e| Failure::failed(format!("downloading {name}: {e}")))?;
    if !resp.status().is_success() {
        return check(Ok(resp), &format!("downloading {name}"))
            .await
            .map(|_| PathBuf::new());
    }
    let target = dir.join(name);
    let tmp = dir.join(format!(".{name}.kiln-tmp"));
    let io_err = |e: std::io::Error| Failure::failed(format!("{}: {e}", tmp.display()));
    let mut file = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(io_err)?);
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let result = async {
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| Failure::failed(format!("downloading {name}: {e}")))?
        {
            hasher.update(&chunk);
            size += chunk.len() as u64;
            file.write_all(&chunk).map_err(io_err)?;
        }
        file.flush().map_err(io_err)?;
        let got = hex::encode(hasher.finalize());
        if got != want || Some(size) != a["size"].as_u64() {
            return Err(Failure::failed(format!(
                "{name}: downloaded {size} bytes with sha256 {got}, but the build recorded {} bytes with sha256 {want}",
                a["size"]
            )));
        }
        std::fs::rename(&tmp, &target)
            .map_err(|e| Failure::failed(format!("{}: {e}", target.display())))
    }
    .await;
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map(|()| target)
}
