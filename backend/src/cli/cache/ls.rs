//! `kiln cache ls`.

use std::io::{self, Write};

use serde::Serialize;

use kiln_backend::engine::store::ImageSummary;

use super::{human_size, Context, Failure};
use crate::cli::exit;

/// List the images in the store.
///
/// One line per name: reference, root digest, the platforms present and
/// the size of the blobs present.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    /// Aligned columns: REFERENCE DIGEST PLATFORM SIZE.
    Text,
    /// A JSON array of objects.
    Json,
}

/// One row, as JSON.
#[derive(Debug, Serialize)]
struct Row {
    /// The name (`null` for an unnamed entry).
    reference: Option<String>,
    digest: String,
    media_type: String,
    platforms: Vec<String>,
    /// Bytes of the blobs present that the entry reaches.
    size: u64,
    /// Whether every blob the entry needs is present.
    complete: bool,
}

pub fn run(ctx: &Context, args: Args) -> Result<u8, Failure> {
    let store = ctx.open_store()?;
    let mut images = store.list().map_err(Failure::failed)?;
    // Named entries by name, then unnamed ones by digest.
    images.sort_by(|a, b| {
        (a.name.is_none(), &a.name, &a.digest).cmp(&(b.name.is_none(), &b.name, &b.digest))
    });
    let rows: Vec<Row> = images.into_iter().map(row).collect();
    let mut out = io::stdout().lock();
    let written = match args.format {
        Format::Json => serde_json::to_writer_pretty(&mut out, &rows)
            .map_err(io::Error::other)
            .and_then(|()| writeln!(out)),
        Format::Text => write!(out, "{}", table(&rows)),
    };
    written
        .and_then(|()| out.flush())
        .map_err(|e| Failure::usage(format!("cannot write the listing: {e}")))?;
    Ok(exit::OK)
}

fn row(image: ImageSummary) -> Row {
    Row {
        reference: image.name,
        digest: image.digest.to_string(),
        media_type: image.media_type,
        platforms: image.platforms.iter().map(ToString::to_string).collect(),
        size: image.size,
        complete: image.complete,
    }
}

/// The rows as aligned columns with a header.
fn table(rows: &[Row]) -> String {
    let mut cells: Vec<[String; 4]> = vec![[
        "REFERENCE".to_owned(),
        "DIGEST".to_owned(),
        "PLATFORM".to_owned(),
        "SIZE".to_owned(),
    ]];
    for r in rows {
        let platforms = if r.platforms.is_empty() {
            "-".to_owned()
        } else {
            r.platforms.join(",")
        };
        let mut size = human_size(r.size);
        if !r.complete {
            size.push_str(" (incomplete)");
        }
        cells.push([
            r.reference.clone().unwrap_or_else(|| "<none>".to_owned()),
            r.digest.clone(),
            platforms,
            size,
        ]);
    }
    let mut widths = [0usize; 4];
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &cells {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 < row.len() {
                line.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            } else {
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up() {
        let rows = vec![
            Row {
                reference: Some("docker.io/library/alpine:3.20".into()),
                digest: "sha256:aa".into(),
                media_type: String::new(),
                platforms: vec!["linux/amd64".into(), "linux/arm64/v8".into()],
                size: 2048,
                complete: true,
            },
            Row {
                reference: None,
                digest: "sha256:bbbb".into(),
                media_type: String::new(),
                platforms: vec![],
                size: 10,
                complete: false,
            },
        ];
        let t = table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        let col = lines[0].find("DIGEST").unwrap();
        assert_eq!(lines[1].find("sha256:aa"), Some(col));
        assert_eq!(lines[2].find("sha256:bbbb"), Some(col));
        let size_col = lines[0].find("SIZE").unwrap();
        assert_eq!(lines[1].find("2.0 KiB"), Some(size_col));
        assert!(lines[2].starts_with("<none>"));
        assert!(lines[2].ends_with("10 B (incomplete)"));
        assert!(lines[2].contains("  -  "));
    }
}
