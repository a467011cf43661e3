//! `kiln login URL`: get an API token for a kiln server and store it in
//! `$KILN_HOME/credentials.toml` (mode 0600) for `kiln remote`.

use std::io::BufRead as _;
use std::path::PathBuf;

use serde_json::{json, Value};

use super::credentials::{self, Credentials, Entry};
use super::exit;
use super::remote::{check, http_client, runtime, Failure};

/// Log in to a kiln server and store an API token for it. With
/// --password-stdin, kiln logs in as --username and creates a token in the
/// team; with --token-stdin, it checks and stores the given token.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The server's base URL, e.g. https://kiln.example:8443.
    #[arg(value_name = "URL")]
    server: String,
    /// The account to log in as [default: $USER].
    #[arg(long, short = 'u', value_name = "NAME")]
    username: Option<String>,
    /// Read the password from the first line of standard input.
    #[arg(long, conflicts_with = "token_stdin")]
    password_stdin: bool,
    /// Read an existing API token from standard input instead.
    #[arg(long)]
    token_stdin: bool,
    /// The team the token acts in [default: your only team].
    #[arg(long, value_name = "TEAM")]
    team: Option<String>,
    /// Trust this CA certificate (PEM) for the server's TLS certificate.
    #[arg(long, value_name = "FILE")]
    ca_cert: Option<PathBuf>,
}

pub fn run(args: Args) -> u8 {
    match login(args) {
        Ok(()) => exit::OK,
        Err(f) => f.report(),
    }
}

fn stdin_line(what: &str) -> Result<String, Failure> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Failure::usage(format!("reading the {what} from standard input: {e}")))?;
    let line = line.trim_end_matches(['\n', '\r']).to_owned();
    if line.is_empty() {
        return Err(Failure::usage(format!("no {what} on standard input")));
    }
    Ok(line)
}

fn login(args: Args) -> Result<(), Failure> {
    let server = credentials::normalize(&args.server).map_err(Failure::usage)?;
    let ca_cert = args
        .ca_cert
        .as_ref()
        .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone()));
    let client = http_client(ca_cert.as_deref())?;
    let rt = runtime()?;
    let (token, team) = if args.token_stdin {
        let token = stdin_line("token")?;
        let me = rt.block_on(async {
            let r = client
                .get(format!("{server}/api/v1/auth/me"))
                .bearer_auth(&token)
                .send()
                .await;
            check(r, "checking the token").await
        })?;
        let team = pick_team(&me, args.team.as_deref())?;
        (token, team)
    } else if args.password_stdin {
        let username = args
            .username
            .clone()
            .or_else(|| std::env::var("USER").ok())
            .ok_or_else(|| Failure::usage("say who logs in with --username"))?;
        let password = stdin_line("password")?;
        rt.block_on(async {
            let r = client
                .post(format!("{server}/api/v1/auth/login"))
                .json(&json!({"username": username, "password": password}))
                .send()
                .await;
            let cookie = match &r {
                Ok(resp) => resp
                    .headers()
                    .get("set-cookie")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.split(';').next())
                    .map(str::to_owned),
                Err(_) => None,
            };
            let me = check(r, "logging in").await?;
            let cookie =
                cookie.ok_or_else(|| Failure::failed("the server set no session cookie"))?;
            let team = pick_team(&me, args.team.as_deref())?;
            let host = std::fs::read_to_string("/etc/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_default();
            let r = client
                .post(format!("{server}/api/v1/teams/{team}/tokens"))
                .header("cookie", cookie)
                .header("x-csrf-token", me["csrf_token"].as_str().unwrap_or(""))
                .json(&json!({"name": format!("kiln login {username}@{host}")}))
                .send()
                .await;
            let created = check(r, "creating an API token").await?;
            let token = created["secret"]
                .as_str()
                .ok_or_else(|| Failure::failed("the server returned no token"))?
                .to_owned();
            Ok::<_, Failure>((token, team))
        })?
    } else {
        return Err(Failure::usage(
            "give the password with --password-stdin, or a token with --token-stdin",
        ));
    };
    let path = credentials::default_path().map_err(Failure::usage)?;
    let mut creds = Credentials::load(&path).map_err(Failure::usage)?;
    creds.server.insert(
        server.clone(),
        Entry {
            token,
            team: Some(team.clone()),
            ca_cert,
        },
    );
    creds.save(&path).map_err(Failure::failed)?;
    eprintln!(
        "kiln: logged in to {server} (team {team}); token stored in {}",
        path.display()
    );
    Ok(())
}

/// `--team`, which must be one of the caller's, or the caller's only team.
fn pick_team(me: &Value, wanted: Option<&str>) -> Result<String, Failure> {
    let teams: Vec<&str> = me["teams"]
        .as_array()
        .map(|a| a.iter().filter_map(|m| m["team"].as_str()).collect())
        .unwrap_or_default();
    match wanted {
        Some(t) if teams.contains(&t) => Ok(t.to_owned()),
        Some(t) => Err(Failure::failed(format!(
            "you are not a member of team `{t}` (your teams: {})",
            teams.join(", ")
        ))),
        None => match teams.as_slice() {
            [one] => Ok((*one).to_owned()),
            [] => Err(Failure::failed("you belong to no team")),
            many => Err(Failure::usage(format!(
                "you belong to several teams ({}); say which with --team",
                many.join(", ")
            ))),
        },
    }
}
