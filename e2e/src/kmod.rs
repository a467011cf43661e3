//! Kernel modules for the kernel fixture's `kernel.tar`.
//!
//! Debian's kernel package ships no `modules.dep` (its postinst runs
//! depmod), so dependencies are read from each module's `.modinfo` ELF
//! section, and a `modules.dep` for the chosen subset is written here.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// Modules shipped by default: overlayfs (read-write bundles) and the virtio
/// drivers a QEMU guest may use. Built-in ones are skipped.
pub const DEFAULT_MODULES: &[&str] = &[
    "overlay",
    "virtio_pci",
    "virtio_blk",
    "virtio_net",
    "virtio_console",
    "virtio_rng",
    "veth",
];

/// The module tree of one kernel release (`lib/modules/<release>`).
#[derive(Debug)]
pub struct ModuleTree {
    root: PathBuf,
    /// Module name → path relative to `root` (in `modules.order` order).
    modules: BTreeMap<String, String>,
    order: Vec<String>,
    builtin: BTreeSet<String>,
}

impl ModuleTree {
    /// Indexes `root` (a `lib/modules/<release>` directory).
    pub fn open(root: &Path) -> anyhow::Result<ModuleTree> {
        let order_text = fs::read_to_string(root.join("modules.order"))
            .with_context(|| format!("cannot read modules.order in {}", root.display()))?;
        let mut modules = BTreeMap::new();
        let mut order = Vec::new();
        for rel in order_text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if root.join(rel).is_file() {
                modules.insert(module_name(rel), rel.to_owned());
                order.push(rel.to_owned());
            }
        }
        let builtin = fs::read_to_string(root.join("modules.builtin"))
            .unwrap_or_default()
            .lines()
            .map(module_name)
            .collect();
        Ok(ModuleTree {
            root: root.to_owned(),
            modules,
            order,
            builtin,
        })
    }

    /// Every loadable module name.
    pub fn all(&self) -> Vec<String> {
        self.modules.keys().cloned().collect()
    }

    /// `wanted` plus everything they depend on, minus built-in modules.
    /// An unknown name that is not built in is an error.
    pub fn closure(&self, wanted: &[String]) -> anyhow::Result<BTreeMap<String, Vec<String>>> {
        let mut deps = BTreeMap::new();
        let mut todo: Vec<String> = wanted.iter().map(|w| w.replace('-', "_")).collect();
        while let Some(name) = todo.pop() {
            if deps.contains_key(&name) {
                continue;
            }
            let Some(rel) = self.modules.get(&name) else {
                if self.builtin.contains(&name) {
                    continue;
                }
                bail!("kernel module {name} is neither in the tree nor built in");
            };
            // modinfo spells some names with `-` (`regmap-spi`); the index
            // keys use `_`, as the kernel does.
            let direct: Vec<String> = modinfo_depends(&self.root.join(rel))?
                .iter()
                .map(|d| d.replace('-', "_"))
                .collect();
            todo.extend(direct.iter().cloned());
            deps.insert(name, direct);
        }
        Ok(deps)
    }

    /// Path of a module relative to the release directory.
    pub fn path_of(&self, name: &str) -> Option<&str> {
        self.modules.get(name).map(String::as_str)
    }

    /// `modules.dep` for `set` (from [`ModuleTree::closure`]): each module
    /// followed by all its dependencies, the one to load first listed last.
    pub fn modules_dep(&self, set: &BTreeMap<String, Vec<String>>) -> String {
        let mut out = String::new();
        for rel in self
            .order
            .iter()
            .filter(|r| set.contains_key(&module_name(r)))
        {
            let mut load_order = Vec::new();
            visit(&module_name(rel), set, &mut load_order);
            load_order.pop(); // the module itself comes last
            let deps: Vec<&str> = load_order
                .iter()
                .rev()
                .filter_map(|d| self.path_of(d))
                .collect();
            out.push_str(rel);
            out.push(':');
            for d in deps {
                out.push(' ');
                out.push_str(d);
            }
            out.push('\n');
        }
        out
    }

    /// `modules.order` restricted to `set`.
    pub fn modules_order(&self, set: &BTreeMap<String, Vec<String>>) -> String {
        self.order
            .iter()
            .filter(|r| set.contains_key(&module_name(r)))
            .map(|r| format!("{r}\n"))
            .collect()
    }
}

/// Depth-first post-order: dependencies before dependents.
fn visit(name: &str, set: &BTreeMap<String, Vec<String>>, out: &mut Vec<String>) {
    if out.iter().any(|n| n == name) {
        return;
    }
    if let Some(deps) = set.get(name) {
        for d in deps {
            visit(d, set, out);
        }
        out.push(name.to_owned());
    }
}

/// `kernel/fs/overlayfs/overlay.ko` → `overlay`; `-` becomes `_` as in kbuild.
pub fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

/// The `depends=` list in a module's `.modinfo` section.
pub fn modinfo_depends(path: &Path) -> anyhow::Result<Vec<String>> {
    let data = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let section = elf_section(&data, ".modinfo")
        .with_context(|| format!("{} has no readable .modinfo section", path.display()))?;
    let deps = section
        .split(|b| *b == 0)
        .filter_map(|kv| kv.strip_prefix(b"depends="))
        .flat_map(|v| {
            String::from_utf8_lossy(v)
                .split(',')
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter(|d| !d.is_empty())
        .collect();
    Ok(deps)
}

/// The bytes of section `name` in a little-endian ELF64 file.
fn elf_section<'a>(data: &'a [u8], name: &str) -> anyhow::Result<&'a [u8]> {
    if data.get(..4) != Some(b"\x7fELF".as_slice())
        || data.get(4) != Some(&2)
        || data.get(5) != Some(&1)
    {
        bail!("not a little-endian ELF64 file");
    }
    let u16_at = |off: usize| -> anyhow::Result<usize> {
        let b = data.get(off..off + 2).context("truncated ELF")?;
        Ok(u16::from_le_bytes([b[0], b[1]]) as usize)
    };
    let u32_at = |off: usize| -> anyhow::Result<usize> {
        let b = data.get(off..off + 4).context("truncated ELF")?;
        Ok(u32::from_le_bytes(b.try_into()?) as usize)
    };
    let u64_at = |off: usize| -> anyhow::Result<usize> {
        let b = data.get(off..off + 8).context("truncated ELF")?;
        Ok(usize::try_from(u64::from_le_bytes(b.try_into()?))?)
    };
    let shoff = u64_at(0x28)?;
    let shentsize = u16_at(0x3a)?;
    let shnum = u16_at(0x3c)?;
    let shstrndx = u16_at(0x3e)?;
    let section = |i: usize| -> anyhow::Result<(usize, &'a [u8])> {
        let h = shoff + i * shentsize;
        let off = u64_at(h + 24)?;
        let size = u64_at(h + 32)?;
        let bytes = data
            .get(off..off + size)
            .context("section outside the file")?;
        Ok((u32_at(h)?, bytes))
    };
    let (_, names) = section(shstrndx)?;
    for i in 0..shnum {
        let (name_off, bytes) = section(i)?;
        let rest = names.get(name_off..).unwrap_or_default();
        let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
        if &rest[..end] == name.as_bytes() {
            return Ok(bytes);
        }
    }
    bail!("no section {name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_follow_kbuild() {
        assert_eq!(module_name("kernel/fs/overlayfs/overlay.ko"), "overlay");
        assert_eq!(
            module_name("kernel/drivers/char/hw_random/virtio-rng.ko"),
            "virtio_rng"
        );
        assert_eq!(module_name("kernel/x/y.ko.xz"), "y");
    }

    #[test]
    fn load_order_puts_dependencies_last() {
        let set = BTreeMap::from([
            ("a".to_owned(), vec!["b".to_owned()]),
            ("b".to_owned(), vec!["c".to_owned()]),
            ("c".to_owned(), vec![]),
        ]);
        let mut order = Vec::new();
        visit("a", &set, &mut order);
        assert_eq!(order, ["c", "b", "a"]);
    }
}
