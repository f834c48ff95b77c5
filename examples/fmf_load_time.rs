//! Times an FMF tree load the way `benches/fmf_vs_python.sh` times the Python reference:
//! inside the process, around loading the tree, applying `adjust` for `distro=fedora-40`
//! and walking the listed nodes (no process start-up, no output).
//!
//! ```text
//! cargo run --release --example fmf_load_time -- TREE_DIR
//! ```
//!
//! Prints `SECONDS NODES`, the same line as the script's Python `load.py`. With
//! `RUST_LOG=atex=debug` the load's phases (walk, parse, grow, inherit) go to stderr.

/// With the opt-in feature `mimalloc`, the allocator the `atex` program is then built with.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;
use std::time::Instant;

use atex::fmf::{Context, Tree};

fn main() -> ExitCode {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: fmf_load_time TREE_DIR");
        return ExitCode::from(2);
    };
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .init();
    }
    let start = Instant::now();
    let loaded = Tree::load(&dir).and_then(|mut tree| {
        let t = Instant::now();
        tree.adjust(&Context::new().with("distro", "fedora-40"))?;
        let listed = tree.selected().len();
        tracing::debug!(adjust_and_walk = ?t.elapsed(), "fmf tree adjusted");
        Ok((tree, listed))
    });
    let elapsed = start.elapsed().as_secs_f64();
    // Like the Python reference, which keeps its tree, the time does not include freeing
    // the tree: it is dropped after the clock stops.
    match loaded {
        Ok((_tree, n)) => {
            println!("{elapsed:.4} {n}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}", atex::error::chain(&e));
            ExitCode::FAILURE
        }
    }
}
