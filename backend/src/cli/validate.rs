//! `kiln validate`: check spec files without building them.

use std::io::{self, Read, Write};
use std::path::PathBuf;

use kiln_shared::{Code, Diagnostic, Pos, Source};

use super::exit;

/// Check spec files, reporting every problem with its line, column and key
/// path. Exits 0 when every file is valid (warnings allowed), 1 when any file
/// has an error, 2 for usage errors or unreadable files.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Validate the files as one merged spec, as `kiln build a.yml b.yml`
    /// merges them, instead of each on its own.
    #[arg(long)]
    merge: bool,
    /// Spec files to check; `-` reads standard input.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    /// One line per problem: `FILE:LINE:COL: error[CODE]: MESSAGE (at PATH)`.
    Text,
    /// A JSON array of diagnostics.
    Json,
}

/// A spec file's name (as it is reported) and text.
pub(super) struct Input {
    pub name: String,
    pub text: String,
}

pub fn run(args: Args) -> u8 {
    let mut unreadable = false;
    let mut inputs = Vec::new();
    let mut diagnostics = Vec::new();
    for path in &args.files {
        match read(path) {
            Ok(Ok(input)) => inputs.push(input),
            Ok(Err(diagnostic)) => diagnostics.push(diagnostic),
            Err(e) => {
                eprintln!("kiln: cannot read {}: {e}", path.display());
                unreadable = true;
            }
        }
    }
    let sources: Vec<Source<'_>> = inputs
        .iter()
        .map(|i| Source {
            name: &i.name,
            text: &i.text,
        })
        .collect();
    if args.merge {
        diagnostics.extend(kiln_shared::validate_merged(&sources).diagnostics);
    } else {
        for source in &sources {
            diagnostics
                .extend(kiln_shared::validate_merged(std::slice::from_ref(source)).diagnostics);
        }
    }

    if let Err(e) = print(&diagnostics, args.format) {
        eprintln!("kiln: cannot write the report: {e}");
        return exit::USAGE;
    }
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    let warnings = diagnostics.len() - errors;
    if args.format == Format::Text {
        eprintln!(
            "{} file{} checked: {errors} error{}, {warnings} warning{}",
            args.files.len(),
            plural(args.files.len()),
            plural(errors),
            plural(warnings)
        );
    }
    if unreadable {
        exit::USAGE
    } else if errors > 0 {
        exit::INVALID
    } else {
        exit::OK
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// Reads a file, or standard input for `-`. Text that is not UTF-8 is a
/// diagnostic about the file, not a failure to read it.
pub(super) fn read(path: &PathBuf) -> io::Result<Result<Input, Diagnostic>> {
    let (name, bytes) = if path.as_os_str() == "-" {
        let mut bytes = Vec::new();
        io::stdin().read_to_end(&mut bytes)?;
        ("<stdin>".to_owned(), bytes)
    } else {
        (path.display().to_string(), std::fs::read(path)?)
    };
    Ok(match String::from_utf8(bytes) {
        Ok(text) => Ok(Input { name, text }),
        Err(e) => {
            let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let line = valid.iter().filter(|b| **b == b'\n').count() + 1;
            let col = valid.iter().rev().take_while(|b| **b != b'\n').count() + 1;
            let mut d = Diagnostic::new(
                Code::YamlSyntax,
                Pos {
                    line: line as u32,
                    col: col as u32,
                },
                "",
                "the file is not valid UTF-8",
            );
            d.file = Some(name);
            Err(d)
        }
    })
}

fn print(diagnostics: &[Diagnostic], format: Format) -> io::Result<()> {
    let mut out = io::stdout().lock();
    match format {
        Format::Text => {
            for d in diagnostics {
                writeln!(out, "{d}")?;
            }
        }
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, diagnostics)?;
            writeln!(out)?;
        }
    }
    out.flush()
}
