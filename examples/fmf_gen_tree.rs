//! Generate a synthetic FMF tree for benchmarks: `fmf_gen_tree DIR [NODES]`.
//!
//! Layout: a root `main.fmf` with shared data and one `adjust` rule, one
//! directory per 100 files (each with its own `main.fmf` extending `tag` by
//! inheritance), and files holding 10 leaf nodes each (`/nK` in-file hierarchy).
//! `NODES` (default 10000) leaf nodes over `NODES / 10` files. Used by
//! `benches/fmf.rs` and `benches/fmf_vs_python.sh`.

use std::fmt::Write as _;
use std::path::Path;

/// Write the tree into `dir` (created if needed) with `nodes` leaf nodes.
pub fn generate(dir: &Path, nodes: usize) -> std::io::Result<()> {
    std::fs::create_dir_all(dir.join(".fmf"))?;
    std::fs::write(dir.join(".fmf/version"), "1\n")?;
    std::fs::write(
        dir.join("main.fmf"),
        "summary: generated tree\ncomponent: [core]\nrequire: [base]\ntag: [root]\n\
         contact: Jane Doe <jane@example.com>\nduration: 5m\n\
         adjust:\n  - when: distro == fedora\n    require+: [fedora-pkg]\n    because: test\n",
    )?;
    let files = nodes.div_ceil(10);
    for f in 0..files {
        let d = dir.join(format!("d{:04}", f / 100));
        if f % 100 == 0 {
            std::fs::create_dir_all(&d)?;
            std::fs::write(
                d.join("main.fmf"),
                format!("tag+: [dir{}]\ntier: {}\n", f / 100, (f / 100) % 3),
            )?;
        }
        let mut text = format!("summary: file {f}\ntest: ./test.sh\nenvironment:\n  FILE: '{f}'\n");
        let in_file = (nodes - f * 10).min(10);
        for n in 0..in_file {
            let _ = write!(
                text,
                "/n{n}:\n  summary+: ' node {n}'\n  tag+: [n{n}]\n  require+: [pkg-{n}]\n  priority: {n}\n"
            );
        }
        std::fs::write(d.join(format!("f{f:05}.fmf")), text)?;
    }
    Ok(())
}

#[allow(dead_code)]
fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next() else {
        eprintln!("usage: fmf_gen_tree DIR [NODES]");
        std::process::exit(2);
    };
    let nodes = args.next().and_then(|n| n.parse().ok()).unwrap_or(10_000);
    generate(Path::new(&dir), nodes)
}
