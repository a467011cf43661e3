//! `kiln schema`: print the JSON Schema of a spec.

use std::io::Write;

use super::exit;

/// Print the JSON Schema (draft-07) of a kiln/LinuxKit spec.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> u8 {
    let schema = kiln_shared::json_schema();
    let text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    match writeln!(std::io::stdout(), "{text}") {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("kiln: cannot write the schema: {e}");
            exit::USAGE
        }
    }
}
