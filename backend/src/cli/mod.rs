//! Argument parsing and dispatch. Each subcommand lives in its own module
//! and returns the process exit code.

mod attest;
mod build;
mod cache;
mod credentials;
mod login;
mod measure;
mod publish;
mod remote;
mod schema;
mod serve;
mod sign;
mod signer;
mod validate;
mod verify;
mod verify_build;
mod verify_release;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// kiln builds minimal, immutable Linux OS images from LinuxKit YAML specs,
/// reproducibly, and signs what it builds.
#[derive(Debug, Parser)]
#[command(name = "kiln", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Validate(validate::Args),
    Build(build::Args),
    Schema(schema::Args),
    Cache(cache::Args),
    Serve(serve::Args),
    Login(login::Args),
    Remote(remote::Args),
    #[command(flatten)]
    Signer(signer::Command),
    Sign(sign::Args),
    Verify(verify::Args),
    VerifyBuild(verify_build::Args),
    Publish(publish::Args),
    VerifyRelease(verify_release::Args),
    Measure(measure::Args),
    Attest(attest::Args),
}

/// Exit codes shared by every subcommand.
pub(crate) mod exit {
    /// Everything was valid or succeeded.
    pub const OK: u8 = 0;
    /// The input had errors.
    pub const INVALID: u8 = 1;
    /// Bad usage, or a file could not be read.
    pub const USAGE: u8 = 2;

    /// A subcommand's failure: its exit code and the message to print.
    pub type Failure = (u8, String);

    pub fn usage(e: impl std::fmt::Display) -> Failure {
        (USAGE, e.to_string())
    }

    pub fn failed(e: impl std::fmt::Display) -> Failure {
        (INVALID, e.to_string())
    }

    /// Prints a failure's message and gives the exit code to return.
    pub fn report(result: Result<u8, Failure>) -> u8 {
        result.unwrap_or_else(|(code, message)| {
            eprintln!("kiln: {message}");
            code
        })
    }
}

pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Validate(args) => validate::run(args),
        Command::Build(args) => build::run(args),
        Command::Schema(args) => schema::run(args),
        Command::Cache(args) => cache::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Login(args) => login::run(args),
        Command::Remote(args) => remote::run(args),
        Command::Signer(command) => signer::run(command),
        Command::Sign(args) => sign::run(args),
        Command::Verify(args) => verify::run(args),
        Command::VerifyBuild(args) => verify_build::run(args),
        Command::Publish(args) => publish::run(args),
        Command::VerifyRelease(args) => verify_release::run(args),
        Command::Measure(args) => measure::run(args),
        Command::Attest(args) => attest::run(args),
    };
    ExitCode::from(code)
}
