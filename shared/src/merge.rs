//! Folding several spec files into one, as `linuxkit build a.yml b.yml` does.

use crate::model::{Kernel, Spec};

impl Spec {
    /// Folds `later` into `self`. Kernel `image`, `cmdline` and `binary` are
    /// replaced by a later non-empty value; `tar` and `ucode` by any later
    /// value that is present, even empty. Every list is appended.
    pub fn merge(&mut self, later: Spec) {
        if let Some(k) = later.kernel {
            let kernel = self.kernel.get_or_insert_with(Kernel::default);
            for (mine, theirs) in [
                (&mut kernel.image, k.image),
                (&mut kernel.cmdline, k.cmdline),
                (&mut kernel.binary, k.binary),
            ] {
                if theirs.as_deref().is_some_and(|s| !s.is_empty()) {
                    *mine = theirs;
                }
            }
            if k.tar.is_some() {
                kernel.tar = k.tar;
            }
            if k.ucode.is_some() {
                kernel.ucode = k.ucode;
            }
        }
        self.init.extend(later.init);
        self.onboot.extend(later.onboot);
        self.onshutdown.extend(later.onshutdown);
        self.services.extend(later.services);
        self.files.extend(later.files);
        self.volumes.extend(later.volumes);
        if let Some(t) = later.trust {
            let trust = self.trust.get_or_insert_with(Default::default);
            if let Some(images) = t.image {
                trust.image.get_or_insert_with(Vec::new).extend(images);
            }
            if let Some(orgs) = t.org {
                trust.org.get_or_insert_with(Vec::new).extend(orgs);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::model::{ImageEntry, Kernel, Spec};

    fn kernel(image: &str, cmdline: &str, tar: Option<&str>) -> Spec {
        Spec {
            kernel: Some(Kernel {
                image: Some(image.into()),
                cmdline: Some(cmdline.into()),
                tar: tar.map(Into::into),
                ..Kernel::default()
            }),
            ..Spec::default()
        }
    }

    #[test]
    fn non_empty_kernel_fields_win_and_lists_append() {
        let mut a = kernel("k:1", "console=ttyS0", Some("kernel.tar"));
        a.services.push(ImageEntry {
            name: "a".into(),
            image: "x".into(),
            ..ImageEntry::default()
        });
        let mut b = kernel("", "quiet", Some(""));
        b.services.push(ImageEntry {
            name: "b".into(),
            image: "y".into(),
            ..ImageEntry::default()
        });
        a.merge(b);
        let k = a.kernel.unwrap();
        assert_eq!(k.image.as_deref(), Some("k:1"));
        assert_eq!(k.cmdline.as_deref(), Some("quiet"));
        assert_eq!(k.tar.as_deref(), Some(""));
        let names: Vec<_> = a.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
    }
}
