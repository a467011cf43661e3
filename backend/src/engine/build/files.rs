//! The `files` section: directories, symlinks and files added last.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use kiln_shared::ids::IdTable;
use kiln_shared::mode::parse_octal;
use kiln_shared::{FileEntry, Spec};

use crate::engine::fs::{Entry, Kind, Sink, LINUXKIT_EPOCH};

/// Where `source` paths are read from: a relative path is resolved against
/// the working directory, as linuxkit does, and `~/` against `home`.
pub struct SourceRoots<'a> {
    pub cwd: &'a Path,
    pub home: Option<&'a Path>,
}

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("files[{index}] ({path}): cannot read source {source_path}: {error}")]
    Source {
        index: usize,
        path: String,
        source_path: PathBuf,
        error: io::Error,
    },
    #[error("files[{index}]: {message}")]
    Invalid { index: usize, message: String },
    #[error("writing files[{index}] ({path}): {error}")]
    Write {
        index: usize,
        path: String,
        error: io::Error,
    },
}

/// Emits the files section in order. `metadata` renders the merged spec for
/// `metadata: yaml|json` entries.
pub fn emit(
    spec: &Spec,
    ids: &IdTable,
    roots: &SourceRoots<'_>,
    metadata: &dyn Fn(&str) -> Vec<u8>,
    sink: &mut dyn Sink,
) -> Result<(), FilesError> {
    let mut emitted_dirs: HashSet<String> = HashSet::new();
    for (index, file) in spec.files.iter().enumerate() {
        let path = file
            .path
            .as_deref()
            .unwrap_or("")
            .trim_start_matches('/')
            .trim_end_matches('/')
            .to_owned();
        let invalid = |message: String| FilesError::Invalid { index, message };
        if path.is_empty() {
            return Err(invalid("no path".into()));
        }
        let directory = file.directory.unwrap_or(false);
        let mode = match &file.mode {
            Some(text) => {
                parse_octal(text).ok_or_else(|| invalid(format!("mode `{text}` is not octal")))?
            }
            None if directory => 0o700,
            None => 0o600,
        };
        let uid = resolve(ids, file.uid.as_ref()).map_err(|e| invalid(format!("uid: {e}")))?;
        let gid = resolve(ids, file.gid.as_ref()).map_err(|e| invalid(format!("gid: {e}")))?;

        let (kind, data): (Kind, Data) = if directory {
            (Kind::Dir, Data::None)
        } else if let Some(target) = &file.symlink {
            (
                Kind::Symlink {
                    target: target.clone(),
                },
                Data::None,
            )
        } else if let Some(contents) = &file.contents {
            (Kind::File, Data::Bytes(contents.clone().into_bytes()))
        } else if let Some(format) = &file.metadata {
            (Kind::File, Data::Bytes(metadata(format)))
        } else if let Some(source) = &file.source {
            let source_path = source_path(source, roots);
            match File::open(&source_path).and_then(|f| Ok((f.metadata()?.len(), f))) {
                Ok((len, f)) => (Kind::File, Data::File(len, f)),
                Err(_) if file.optional.unwrap_or(false) => continue,
                Err(error) => {
                    return Err(FilesError::Source {
                        index,
                        path,
                        source_path,
                        error,
                    })
                }
            }
        } else {
            return Err(invalid(format!("contents of file ({path}) not specified")));
        };

        let location = format!("files[{index}]");
        let write = |error| FilesError::Write {
            index,
            path: path.clone(),
            error,
        };
        let parents: Vec<&str> = path.match_indices('/').map(|(i, _)| &path[..i]).collect();
        for parent in parents {
            if emitted_dirs.insert(parent.to_owned()) {
                let dir = entry(parent, Kind::Dir, dir_mode(mode), uid, gid, &location);
                sink.add(&dir, &mut io::empty()).map_err(write)?;
            }
        }
        let mut e = entry(&path, kind, mode, uid, gid, &location);
        match data {
            Data::None => sink.add(&e, &mut io::empty()),
            Data::Bytes(bytes) => {
                e.size = bytes.len() as u64;
                sink.add(&e, &mut bytes.as_slice())
            }
            Data::File(len, f) => {
                e.size = len;
                sink.add(&e, &mut f.take(len))
            }
        }
        .map_err(write)?;
        if directory {
            emitted_dirs.insert(path.clone());
        }
    }
    Ok(())
}

enum Data {
    None,
    Bytes(Vec<u8>),
    File(u64, File),
}

fn resolve(
    ids: &IdTable,
    id: Option<&kiln_shared::IdRef>,
) -> Result<u32, kiln_shared::ids::IdError> {
    id.map_or(Ok(0), |id| ids.resolve(id))
}

fn source_path(source: &str, roots: &SourceRoots<'_>) -> PathBuf {
    match (source.strip_prefix("~/"), roots.home) {
        (Some(rest), Some(home)) => home.join(rest),
        _ => roots.cwd.join(source),
    }
}

/// A parent directory gets the file's mode plus an execute bit for each of
/// user, group and other that has any permission (0600 gives 0700).
fn dir_mode(mode: u32) -> u32 {
    let mut out = mode & 0o777;
    for shift in [6, 3, 0] {
        if (mode >> shift) & 0o7 != 0 {
            out |= 0o1 << shift;
        }
    }
    out
}

fn entry(path: &str, kind: Kind, mode: u32, uid: u32, gid: u32, location: &str) -> Entry {
    let mut e = Entry::new(path, kind, mode, LINUXKIT_EPOCH);
    e.uid = uid;
    e.gid = gid;
    e.provenance
        .insert("LINUXKIT.source".into(), "linuxkit.files".into());
    e.provenance
        .insert("LINUXKIT.location".into(), location.into());
    e
}

/// Whether any entry asks for a source file that is missing and not
/// optional, checked before the (slow) image work starts.
pub fn missing_sources(spec: &Spec, roots: &SourceRoots<'_>) -> Vec<(usize, PathBuf)> {
    spec.files
        .iter()
        .enumerate()
        .filter(|(_, f): &(usize, &FileEntry)| {
            f.source.is_some()
                && f.contents.is_none()
                && f.directory != Some(true)
                && f.symlink.is_none()
                && !f.optional.unwrap_or(false)
        })
        .filter_map(|(i, f)| {
            let p = source_path(f.source.as_deref()?, roots);
            (!p.exists()).then_some((i, p))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Collect(Vec<(Entry, Vec<u8>)>);

    impl Sink for Collect {
        fn add(&mut self, entry: &Entry, data: &mut dyn Read) -> io::Result<()> {
            let mut bytes = Vec::new();
            data.read_to_end(&mut bytes)?;
            self.0.push((entry.clone(), bytes));
            Ok(())
        }
    }

    #[test]
    fn parents_directories_modes_and_sources() {
        let dir = std::env::temp_dir().join(format!("kiln-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("hello.sh"), "echo hi\n").unwrap();
        let spec = kiln_shared::validate(
            "services:\n  - name: web\n    image: a/b:1\nfiles:\n  - path: /etc/app/conf\n    contents: x\n    mode: \"0644\"\n    uid: web\n  - path: etc/app/run.sh\n    source: hello.sh\n  - path: etc/missing\n    source: nope\n    optional: true\n  - path: etc/link\n    symlink: /etc/app/conf\n  - path: etc/linuxkit.yml\n    metadata: yaml\n",
        )
        .spec
        .unwrap();
        let ids = IdTable::for_specs([&spec]);
        let roots = SourceRoots {
            cwd: &dir,
            home: None,
        };
        let mut sink = Collect::default();
        emit(&spec, &ids, &roots, &|_| b"meta".to_vec(), &mut sink).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let got: Vec<(&str, u32, u32, &[u8])> = sink
            .0
            .iter()
            .map(|(e, d)| (e.path.as_str(), e.mode, e.uid, d.as_slice()))
            .collect();
        assert_eq!(
            got,
            [
                ("etc", 0o755, 100, &b""[..]),
                ("etc/app", 0o755, 100, b""),
                ("etc/app/conf", 0o644, 100, b"x"),
                ("etc/app/run.sh", 0o600, 0, b"echo hi\n"),
                ("etc/link", 0o600, 0, b""),
                ("etc/linuxkit.yml", 0o600, 0, b"meta"),
            ]
        );
        assert_eq!(sink.0[2].0.provenance["LINUXKIT.location"], "files[0]");
    }

    #[test]
    fn dir_mode_adds_execute_where_readable() {
        assert_eq!(dir_mode(0o600), 0o700);
        assert_eq!(dir_mode(0o644), 0o755);
        assert_eq!(dir_mode(0o640), 0o750);
    }
}
