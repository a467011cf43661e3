//! Builds every fixture into a directory and prints one line per image:
//! `<name>:<tag> <digest> <layout dir>`.
//!
//! `cargo run -p kiln-e2e --example build-fixtures -- OUT_DIR`

fn main() -> anyhow::Result<()> {
    let Some(out) = std::env::args_os().nth(1) else {
        anyhow::bail!("usage: build-fixtures OUT_DIR");
    };
    let opts = kiln_e2e::fixtures::FixtureOptions::from_env(std::path::Path::new(&out))?;
    let set = kiln_e2e::fixtures::build_all(&opts)?;
    for f in set.all() {
        println!("{}:{} {} {}", f.name, f.tag, f.digest(), f.layout.display());
    }
    println!("kernel-release {}", set.kernel_release);
    Ok(())
}
