//! Times an FMF tree load the way `benches/fmf_vs_python.sh` times the Python reference:
//! inside the process, around loading the tree, applying `adjust` for `distro=fedora-40`
//! and walking the listed nodes (no process start-up, no output).
//!
//! ```text
//! cargo run --release --example fmf_load_time -- TREE_DIR
//! ```
//!
//! Prints `SECONDS NODES`, the same line as the script's Python `load.py`.

use std::process::ExitCode;
use std::time::Instant;

use atex::fmf::{Context, Tree};

fn main() -> ExitCode {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: fmf_load_time TREE_DIR");
        return ExitCode::from(2);
    };
    let start = Instant::now();
    let listed = Tree::load(&dir).and_then(|mut tree| {
        tree.adjust(&Context::new().with("distro", "fedora-40"))?;
        Ok(tree.selected().len())
    });
    let elapsed = start.elapsed().as_secs_f64();
    match listed {
        Ok(n) => {
            println!("{elapsed:.4} {n}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}", atex::error::chain(&e));
            ExitCode::FAILURE
        }
    }
}
