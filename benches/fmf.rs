//! FMF engine benchmark: parse + resolve + adjust a generated tree of 10,000
//! nodes over 1,000 files (inheritance + one adjust rule), and 100,000 nodes to
//! check linear growth.

use std::hint::black_box;

use atex::fmf::{Context, Tree};
use criterion::{Criterion, criterion_group, criterion_main};

#[path = "../examples/fmf_gen_tree.rs"]
mod gen_tree;

fn bench(c: &mut Criterion) {
    let ctx = Context::new()
        .with("distro", "fedora-40")
        .with("arch", "x86_64");
    let mut group = c.benchmark_group("fmf");
    group.sample_size(10);
    for nodes in [10_000usize, 100_000] {
        let dir = tempfile::tempdir().expect("tempdir");
        gen_tree::generate(dir.path(), nodes).expect("generate tree");
        group.bench_function(format!("load_adjust_{nodes}"), |b| {
            b.iter(|| {
                let mut tree = Tree::load(dir.path()).expect("load");
                tree.adjust(&ctx).expect("adjust");
                black_box(tree.selected().len())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
