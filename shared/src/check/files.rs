//! `files` entries.

use super::entries::check_id;
use super::Checker;
use crate::{mode, path, Code};

pub(super) fn check(c: &mut Checker<'_>) {
    for (d, doc) in c.docs.iter().enumerate() {
        for (i, file) in doc.spec.files.iter().enumerate() {
            let at = path!["files", i];
            let name = file.path.as_deref().unwrap_or("");
            if name.trim_start_matches('/').is_empty() {
                c.report(
                    d,
                    Code::FileNoPath,
                    at.key("path"),
                    "file entry has no `path`",
                );
            }
            let directory = file.directory.unwrap_or(false);
            let has_symlink = file.symlink.is_some();
            let has_contents = file.contents.is_some();
            if directory && has_contents {
                c.report(
                    d,
                    Code::FileContentConflict,
                    at.key("contents"),
                    format!("`{name}` is a directory and cannot have `contents`"),
                );
            }
            if directory || has_symlink || has_contents {
                let what = if directory {
                    "a directory"
                } else if has_symlink {
                    "a symlink"
                } else {
                    "given by `contents`"
                };
                for (key, set) in [
                    ("source", file.source.is_some()),
                    ("metadata", file.metadata.is_some()),
                ] {
                    if set {
                        c.report(
                            d,
                            Code::FileContentConflict,
                            at.key(key),
                            format!("`{name}` is {what}, so it cannot also have `{key}`"),
                        );
                    }
                }
            } else {
                match (&file.source, &file.metadata) {
                    (None, None) => c.report(
                        d,
                        Code::FileNoContent,
                        at.clone(),
                        format!("contents of file `{name}` not specified: give one of `contents`, `source`, `metadata`, `directory` or `symlink`"),
                    ),
                    (Some(_), Some(_)) => c.report(
                        d,
                        Code::FileContentConflict,
                        at.key("metadata"),
                        format!("`{name}` has both `source` and `metadata`; keep one"),
                    ),
                    _ => {}
                }
            }
            if let Some(metadata) = &file.metadata {
                if metadata != "yaml" && metadata != "json" {
                    c.report(
                        d,
                        Code::BadMetadata,
                        at.key("metadata"),
                        format!("`metadata: {metadata}` is not supported; use `yaml` or `json`"),
                    );
                }
            }
            if let Some(text) = &file.mode {
                if mode::parse_octal(text).is_none() {
                    c.report(
                        d,
                        Code::BadFileMode,
                        at.key("mode"),
                        format!("file mode `{text}` is not an octal number such as \"0644\""),
                    );
                }
            }
            for (key, id) in [("uid", &file.uid), ("gid", &file.gid)] {
                if let Some(id) = id {
                    check_id(c, d, at.key(key), id);
                }
            }
        }
    }
}
