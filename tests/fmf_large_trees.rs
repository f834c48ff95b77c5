//! Trees large enough for the FMF engine to parse files and apply `adjust` on several
//! threads: every node gets what one thread would give it, and an error names the first
//! broken file or node in tree order, as it would on one thread.

use std::fmt::Write as _;
use std::path::Path;

use atex::fmf::{Context, FmfError, Tree, Value};

/// Files in the generated tree (parsing goes parallel from 64 files).
const FILES: usize = 150;
/// Nodes per file (adjusting goes parallel from 1,024 nodes).
const NODES_PER_FILE: usize = 10;

/// Writes a tree of `FILES` files with `NODES_PER_FILE` nodes each; `file_text` may
/// replace the text of a file.
fn write_tree(root: &Path, file_text: impl Fn(usize) -> Option<String>) {
    std::fs::create_dir_all(root.join(".fmf")).expect("mkdir .fmf");
    std::fs::write(root.join(".fmf/version"), "1\n").expect("version");
    std::fs::write(
        root.join("main.fmf"),
        "require: [base]\nadjust:\n  - when: distro == fedora\n    require+: [fedora-pkg]\n",
    )
    .expect("main.fmf");
    for f in 0..FILES {
        let dir = root.join(format!("d{}", f / 50));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let text = file_text(f).unwrap_or_else(|| {
            let mut text = format!("summary: file {f}\ntest: ./test.sh\n");
            for n in 0..NODES_PER_FILE {
                let _ = write!(
                    text,
                    "/n{n}:\n  require+: [pkg-{f}-{n}]\n  adjust+:\n    - when: distro == fedora-40\n      tag+: [adjusted-{f}-{n}]\n"
                );
            }
            text
        });
        std::fs::write(dir.join(format!("f{f:03}.fmf")), text).expect("write");
    }
}

fn fedora() -> Context {
    Context::new().with("distro", "fedora-40")
}

fn strings(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_list)
        .map(|items| items.iter().map(Value::python_str).collect())
        .unwrap_or_default()
}

#[test]
fn every_node_of_a_large_tree_is_parsed_and_adjusted() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_tree(dir.path(), |_| None);
    let mut tree = Tree::load(dir.path()).expect("load");
    tree.adjust(&fedora()).expect("adjust");
    let selected = tree.selected();
    assert_eq!(selected.len(), FILES * NODES_PER_FILE);
    // Tree order: directories, then files in name order, then nodes in file order.
    let mut expected_names = Vec::new();
    for f in 0..FILES {
        for n in 0..NODES_PER_FILE {
            expected_names.push(format!("/d{}/f{f:03}/n{n}", f / 50));
        }
    }
    let names: Vec<&str> = selected.iter().map(|node| node.name()).collect();
    assert_eq!(names, expected_names);
    for node in selected {
        let (f, n) = {
            let mut parts = node.name().rsplit('/');
            let n = parts
                .next()
                .and_then(|s| s.strip_prefix('n'))
                .expect("node");
            let f = parts
                .next()
                .and_then(|s| s.strip_prefix('f'))
                .expect("file");
            (
                f.parse::<usize>().expect("f"),
                n.parse::<usize>().expect("n"),
            )
        };
        assert_eq!(
            strings(node.data().get("require")),
            vec![
                "base".to_string(),
                format!("pkg-{f}-{n}"),
                "fedora-pkg".into()
            ],
            "{}",
            node.name()
        );
        assert_eq!(
            strings(node.data().get("tag")),
            vec![format!("adjusted-{f}-{n}")],
            "{}",
            node.name()
        );
        assert_eq!(
            node.data().get("summary").map(Value::python_str),
            Some(format!("file {f}"))
        );
    }
}

#[test]
fn the_first_broken_file_in_tree_order_is_reported() {
    for broken in [vec![20, 140], vec![140]] {
        let dir = tempfile::tempdir().expect("tempdir");
        write_tree(dir.path(), |f| {
            broken
                .contains(&f)
                .then(|| "summary: [unclosed\n".to_string())
        });
        let err = Tree::load(dir.path()).expect_err("a broken file fails the load");
        let FmfError::Yaml { path, .. } = &err else {
            panic!("expected a YAML error, got {err:?}");
        };
        let first = format!("f{:03}.fmf", broken[0]);
        assert!(path.ends_with(&first), "{broken:?}: {}", path.display());
    }
}

#[test]
fn the_first_broken_rule_in_tree_order_is_reported() {
    for broken in [vec![10, 145], vec![145]] {
        let dir = tempfile::tempdir().expect("tempdir");
        write_tree(dir.path(), |f| {
            broken
                .contains(&f)
                .then(|| format!("/bad:\n  adjust:\n    - when: 'distro =='\n      tag+: [x{f}]\n"))
        });
        let mut tree = Tree::load(dir.path()).expect("load");
        let err = tree
            .adjust(&fedora())
            .expect_err("a broken rule fails adjust");
        let FmfError::Rule { node, .. } = &err else {
            panic!("expected a rule error, got {err:?}");
        };
        let first = broken[0];
        assert_eq!(
            node,
            &format!("/d{}/f{first:03}/bad", first / 50),
            "{broken:?}"
        );
    }
}
