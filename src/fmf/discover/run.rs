//! [`discover`]: pick the plan, run its `how: fmf` discover sections into a temporary
//! directory, and assemble the [`DiscoveredTests`].

use std::collections::HashSet;
use std::path::Path;

use indexmap::IndexMap;

use super::discovered::{DiscoveredTest, DiscoveredTests};
use super::files::{copy_tree, source_dir};
use super::library::{LibraryResolver, trusted_library_dirs};
use super::options::DiscoverOptions;
use super::section::section_source;
use super::select::{is_test, matches_links, strings_of};
use super::{git, plan};
use crate::fmf::Tree;
use crate::fmf::error::FmfError;
use crate::fmf::pyre::RegexCache;
use crate::fmf::value::{Map, Value};

fn plan_err(message: impl Into<String>) -> FmfError {
    FmfError::Plan {
        message: message.into(),
    }
}

/// Discover tests from the tree at `opts.tree`. See the module documentation.
pub fn discover(opts: &DiscoverOptions) -> Result<DiscoveredTests, FmfError> {
    discover_in(Tree::load(&opts.tree)?, opts)
}

/// Discover tests from an already loaded (not yet adjusted) tree; `opts.tree` is
/// ignored. The tree is copied, the caller's value stays untouched.
pub fn discover_tree(tree: &Tree, opts: &DiscoverOptions) -> Result<DiscoveredTests, FmfError> {
    discover_in(tree.clone(), opts)
}

fn discover_in(mut tree: Tree, opts: &DiscoverOptions) -> Result<DiscoveredTests, FmfError> {
    if tree.nodes.is_empty() {
        return Err(plan_err("empty fmf tree"));
    }
    tree.adjust(&opts.context)?;
    let (plan_name, plan_map) = match &opts.plan {
        Some(name) => {
            let node = tree
                .find(name)
                .ok_or_else(|| plan_err(format!("plan '{name}' not found")))?;
            if node.data.contains_key("test") {
                return Err(plan_err(format!(
                    "'{name}' appears to be a test, not a plan"
                )));
            }
            if !node.is_leaf() {
                return Err(plan_err(format!("'{name}' matches multiple plans")));
            }
            (Some(name.clone()), node.data.clone())
        }
        None => {
            let mut m = Map::new();
            let mut d = Map::new();
            d.insert("how", Value::from("fmf"));
            m.insert("discover", Value::Map(d));
            let mut e = Map::new();
            e.insert("how", Value::from("tmt"));
            m.insert("execute", Value::Map(e));
            (None, m)
        }
    };
    let plan_label = plan::display_name(plan_name.as_deref());
    let plan = plan::plan_data(
        plan_name,
        plan_map.to_json_map(),
        tree.root(),
        opts.skip_unsupported_steps,
    )?;

    // Sections.
    let sections: Vec<Map> = match plan_map.get("discover") {
        Some(Value::Map(m)) => vec![m.clone()],
        Some(Value::List(l)) => l
            .iter()
            .map(|s| match s {
                Value::Map(m) => Ok(m.clone()),
                _ => Err(plan_err("discover section must be a mapping")),
            })
            .collect::<Result<_, _>>()?,
        _ => Vec::new(),
    };
    let sections: Vec<Map> = sections
        .into_iter()
        .filter(|s| match s.get("how") {
            None | Some(Value::Null) => true,
            Some(v) => v.as_str() == Some("fmf"),
        })
        .collect();
    if sections.is_empty() {
        return Err(plan_err(
            "no 'discover' section with 'how: fmf' in the plan",
        ));
    }
    let mut seen_names = HashSet::new();
    let multi = sections.len() > 1;
    for s in &sections {
        let name = s.get("name").map(Value::python_str);
        if multi {
            let Some(n) = &name else {
                return Err(plan_err(
                    "with several discover sections every one needs a 'name'",
                ));
            };
            if !seen_names.insert(n.clone()) {
                return Err(plan_err(format!("duplicate discover section name '{n}'")));
            }
        }
        if let Some(n) = &name
            && (n.contains('/') || n == "." || n == ".." || n.is_empty())
        {
            return Err(plan_err(format!("invalid discover section name '{n}'")));
        }
    }

    let tmp = tempfile::Builder::new()
        .prefix("atex-fmf-discover-")
        .tempdir()
        .map_err(|e| FmfError::Io {
            path: std::env::temp_dir(),
            source: e,
        })?;
    let cache = opts
        .cache_dir
        .clone()
        .unwrap_or_else(git::default_cache_dir);
    let trusted = trusted_library_dirs(&opts.library_paths)?;
    let mut tests: IndexMap<String, DiscoveredTest> = IndexMap::new();
    let mut missing_libraries = Vec::new();
    for section in &sections {
        let sname = section.get("name").map(Value::python_str);
        let source = section_source(section, &plan_label, &tree, opts, &cache)?;
        let source_tree: &Tree = source.tree.as_ref().unwrap_or(&tree);
        if source.modified.as_ref().is_some_and(Vec::is_empty) {
            tracing::info!(
                plan = %plan_label,
                section = sname.as_deref().unwrap_or(""),
                "modified-only: nothing changed, no tests from this section"
            );
            continue;
        }
        let dest = match &sname {
            Some(n) if multi || section.contains_key("name") => tmp.path().join(n),
            _ => tmp.path().to_path_buf(),
        };
        copy_tree(source_tree.root(), &dest)?;

        let mut names: Vec<String> = section.get("test").map(strings_of).unwrap_or_default();
        names.extend(opts.names.iter().cloned());
        // tmt appends the changed directories to the selected names.
        names.extend(
            source
                .modified
                .iter()
                .flatten()
                .map(|d| format!("^/{}", regex::escape(d))),
        );
        let mut filters: Vec<String> = section.get("filter").map(strings_of).unwrap_or_default();
        filters.extend(opts.filters.iter().cloned());
        let mut excludes: Vec<String> = opts.excludes.clone();
        excludes.extend(section.get("exclude").map(strings_of).unwrap_or_default());
        let links: Vec<String> = section.get("link").map(strings_of).unwrap_or_default();
        let mut regexes = RegexCache::new();
        let nodes = source_tree.prune(&names, &filters, &opts.conditions)?;
        let mut libs = LibraryResolver::new(
            dest.clone(),
            cache.clone(),
            source_tree,
            &opts.context,
            &trusted,
        );
        'node: for node in nodes {
            for ex in &excludes {
                if regexes.search(ex, &node.name)? {
                    continue 'node;
                }
            }
            if !is_test(node) {
                continue;
            }
            if !links.is_empty() && !matches_links(&links, node, &mut regexes)? {
                continue;
            }
            let mut data = node.data.clone();
            data.remove("adjust");
            let mut json = data.to_json_map();
            if opts.libraries {
                libs.resolve(&node.name, &mut json)?;
            }
            let rel = source_dir(node, source_tree.root());
            let (name, source_dir) = match &sname {
                Some(n) if section.contains_key("name") => {
                    (format!("/{n}{}", node.name), Path::new(n).join(rel))
                }
                _ => (node.name.clone(), rel),
            };
            tests.insert(
                name.clone(),
                DiscoveredTest {
                    name,
                    data: json,
                    source_dir,
                },
            );
        }
        missing_libraries.extend(libs.missing);
    }
    Ok(DiscoveredTests {
        plan,
        tests: tests.into_values().collect(),
        missing_libraries,
        root: tmp,
    })
}
