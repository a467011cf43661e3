//! The kernel section (B.3): of the kernel image, only the kernel binary,
//! the module tarball and the microcode archive are kept.

use std::cell::Cell;
use std::io::{self, Read};

use kiln_shared::Kernel;

use crate::engine::flatten::{self, FlattenOptions, LayerSource, Role};
use crate::engine::fs::{Entry, Kind, Sink, LINUXKIT_EPOCH};

/// Picks `boot/kernel`, `boot/cmdline`, `boot/ucode.cpio` and the contents
/// of the module tarball out of the flattened kernel image.
pub struct KernelPicker<'a> {
    out: &'a mut dyn Sink,
    opts: &'a FlattenOptions,
    binary: String,
    tar: Option<String>,
    ucode: Option<String>,
    cmdline: String,
    source: String,
    boot_written: bool,
    pub found_kernel: bool,
    pub found_tar: bool,
    pub found_ucode: bool,
    /// A failure inside the module tarball, kept to report with its cause.
    pub tar_error: Option<flatten::FlattenError>,
}

impl<'a> KernelPicker<'a> {
    pub fn new(
        kernel: &Kernel,
        source: &str,
        opts: &'a FlattenOptions,
        out: &'a mut dyn Sink,
    ) -> Self {
        let tar = match kernel.tar.as_deref() {
            None => Some("kernel.tar".to_owned()),
            Some("" | "none") => None,
            Some(other) => Some(other.to_owned()),
        };
        KernelPicker {
            out,
            opts,
            binary: kernel.binary.clone().unwrap_or_else(|| "kernel".into()),
            tar,
            ucode: kernel.ucode.clone().filter(|u| !u.is_empty()),
            cmdline: kernel.cmdline.clone().unwrap_or_default(),
            source: source.to_owned(),
            boot_written: false,
            found_kernel: false,
            found_tar: false,
            found_ucode: false,
            tar_error: None,
        }
    }

    /// The tarball named in the spec, if one is expected.
    pub fn expected_tar(&self) -> Option<&str> {
        self.tar.as_deref()
    }

    fn boot_dir(&mut self, like: &Entry) -> io::Result<()> {
        if !self.boot_written {
            let dir = derived(like, "boot", Kind::Dir, 0o755);
            self.out.add(&dir, &mut io::empty())?;
            self.boot_written = true;
        }
        Ok(())
    }
}

fn derived(like: &Entry, path: &str, kind: Kind, mode: u32) -> Entry {
    let mut e = Entry::new(path, kind, mode, LINUXKIT_EPOCH);
    e.provenance = like.provenance.clone();
    e
}

impl Sink for KernelPicker<'_> {
    fn add(&mut self, entry: &Entry, data: &mut dyn Read) -> io::Result<()> {
        if entry.kind != Kind::File {
            return Ok(());
        }
        if entry.path == self.binary {
            if self.found_kernel {
                return Err(io::Error::other(
                    "found more than one possible kernel image",
                ));
            }
            self.found_kernel = true;
            self.boot_dir(entry)?;
            let mut cmdline = derived(entry, "boot/cmdline", Kind::File, 0o644);
            cmdline.size = self.cmdline.len() as u64;
            let text = self.cmdline.clone();
            self.out.add(&cmdline, &mut text.as_bytes())?;
            let mut kernel = entry.clone();
            kernel.path = "boot/kernel".into();
            self.out.add(&kernel, data)
        } else if Some(&entry.path) == self.tar.as_ref() {
            self.found_tar = true;
            // The tarball's entries are copied as they are: no filtering and
            // no mount-point entries, only the kernel's provenance.
            let cell: Cell<Option<&mut dyn Read>> = Cell::new(Some(data));
            let layer = LayerSource::new(entry.path.clone(), move || {
                cell.take()
                    .map(|r| Box::new(r) as Box<dyn Read + '_>)
                    .ok_or_else(|| io::Error::other("kernel tarball read twice"))
            });
            match flatten::flatten(
                std::slice::from_ref(&layer),
                self.opts,
                Role::Raw,
                "",
                (&self.source, "kernel"),
                self.out,
            ) {
                Ok(_) => Ok(()),
                Err(e) => {
                    let message = e.to_string();
                    self.tar_error = Some(e);
                    Err(io::Error::other(message))
                }
            }
        } else if Some(&entry.path) == self.ucode.as_ref() {
            self.found_ucode = true;
            self.boot_dir(entry)?;
            let mut ucode = entry.clone();
            ucode.path = "boot/ucode.cpio".into();
            self.out.add(&ucode, data)
        } else {
            Ok(())
        }
    }
}
