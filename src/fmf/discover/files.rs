//! Copying test trees and libraries into the discovery result's directory.

use std::path::{Path, PathBuf};

use crate::fmf::Node;
use crate::fmf::error::FmfError;

/// Parent directory of the last source file, relative to the tree root.
pub(super) fn source_dir(node: &Node, root: &Path) -> PathBuf {
    node.sources
        .last()
        .and_then(|p| p.parent())
        .and_then(|p| p.strip_prefix(root).ok())
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Copy `src` into `dest` (merging), skipping `.git`, preserving symlinks.
pub(super) fn copy_tree(src: &Path, dest: &Path) -> Result<(), FmfError> {
    let io = |path: &Path, e: std::io::Error| FmfError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    std::fs::create_dir_all(dest).map_err(|e| io(dest, e))?;
    let mut stack = vec![(src.to_path_buf(), dest.to_path_buf())];
    while let Some((from, to)) = stack.pop() {
        for entry in std::fs::read_dir(&from).map_err(|e| io(&from, e))? {
            let entry = entry.map_err(|e| io(&from, e))?;
            let name = entry.file_name();
            if name == ".git" {
                continue;
            }
            let path = entry.path();
            let target = to.join(&name);
            let ft = entry.file_type().map_err(|e| io(&path, e))?;
            if ft.is_symlink() {
                let link = std::fs::read_link(&path).map_err(|e| io(&path, e))?;
                if std::fs::symlink_metadata(&target).is_ok() {
                    let _ = std::fs::remove_file(&target);
                }
                std::os::unix::fs::symlink(&link, &target).map_err(|e| io(&target, e))?;
            } else if ft.is_dir() {
                std::fs::create_dir_all(&target).map_err(|e| io(&target, e))?;
                stack.push((path, target));
            } else if ft.is_file() {
                std::fs::copy(&path, &target).map_err(|e| io(&path, e))?;
            }
        }
    }
    Ok(())
}

/// Directory of a node's definition relative to its tree root.
pub(super) fn node_dir(node: &Node, root: &Path) -> PathBuf {
    let name_dir = root.join(node.name.trim_start_matches('/'));
    if name_dir.is_dir() {
        return PathBuf::from(node.name.trim_start_matches('/'));
    }
    source_dir(node, root)
}
