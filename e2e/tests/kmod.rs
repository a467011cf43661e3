//! Module dependency closure and modules.dep against Debian's real kernel
//! module tree (from the deb cache).

use kiln_e2e::debs::DebCache;
use kiln_e2e::kmod::ModuleTree;

fn tree() -> ModuleTree {
    let cache = DebCache::from_env();
    let meta = cache
        .fetch("linux-image-amd64")
        .unwrap_or_else(|e| panic!("{e:#}"));
    let image = meta.depends().unwrap().remove(0);
    let package = cache.fetch(&image).unwrap_or_else(|e| panic!("{e:#}"));
    let modules = package.tree.join("lib/modules");
    let release = std::fs::read_dir(&modules)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    ModuleTree::open(&release.path()).unwrap()
}

#[test]
fn bridge_pulls_in_stp_and_llc_in_load_order() {
    let tree = tree();
    let set = tree.closure(&["bridge".to_owned()]).unwrap();
    let names: Vec<&str> = set.keys().map(String::as_str).collect();
    assert_eq!(names, ["bridge", "llc", "stp"]);
    let dep = tree.modules_dep(&set);
    let line = dep.lines().find(|l| l.contains("/bridge.ko:")).unwrap();
    // llc is loaded first, so it is listed last
    assert!(line.ends_with("/llc.ko"), "{line}");
    assert!(line.contains("/stp.ko "), "{line}");
    assert!(dep.lines().any(|l| l.ends_with("/llc.ko:")), "{dep}");
}

#[test]
fn built_in_modules_are_skipped_and_unknown_ones_fail() {
    let tree = tree();
    // the 8250 serial driver is built into Debian's kernel
    let set = tree.closure(&["8250".to_owned()]).unwrap();
    assert!(set.is_empty(), "{set:?}");
    let err = tree.closure(&["no_such_module".to_owned()]).unwrap_err();
    assert!(err.to_string().contains("no_such_module"), "{err}");
}
