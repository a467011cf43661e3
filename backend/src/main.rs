//! The `kiln` command line: a thin layer over the `kiln_backend` library.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::run()
}
