//! `atex run --sync DIR:REMOTE_DIR [--sync-exclude PATTERN] --setup-script FILE`: the
//! setup hooks run on each remote after its executor started (syncs first, in the order
//! given, then the script).

use std::path::PathBuf;
use std::sync::Arc;

use atex::connection::DirSync;
use atex::orchestrator::adhoc::{ScriptHook, SetupHook};

/// A bad `--sync`, `--sync-exclude` or `--setup-script`.
#[derive(Debug, thiserror::Error)]
pub enum HookArgError {
    /// `--sync` is not `DIR:REMOTE_DIR`.
    #[error("--sync '{0}' is not DIR:REMOTE_DIR (REMOTE_DIR absolute)")]
    SyncSyntax(String),
    /// The local directory of `--sync` is not a directory.
    #[error("--sync '{0}': {1} is not a directory")]
    SyncSource(String, String),
    /// A bad remote directory or exclude pattern.
    #[error("--sync '{0}'")]
    Sync(String, #[source] Box<atex::connection::SyncError>),
    /// `--setup-script` cannot be read.
    #[error("cannot read --setup-script {}", .0.display())]
    Script(PathBuf, #[source] std::io::Error),
}

/// The hooks the flags ask for, in the order they run.
pub fn hooks(
    syncs: &[String],
    excludes: &[String],
    script: Option<&PathBuf>,
) -> Result<Vec<Arc<dyn SetupHook>>, HookArgError> {
    let mut out: Vec<Arc<dyn SetupHook>> = Vec::new();
    for spec in syncs {
        // The remote directory is absolute: split at the last ":/".
        let (local, remote) = spec
            .rfind(":/")
            .map(|i| (&spec[..i], &spec[i + 1..]))
            .filter(|(l, _)| !l.is_empty())
            .ok_or_else(|| HookArgError::SyncSyntax(spec.clone()))?;
        if !std::path::Path::new(local).is_dir() {
            return Err(HookArgError::SyncSource(spec.clone(), local.to_string()));
        }
        let mut sync = DirSync::new(local, remote)
            .map_err(|e| HookArgError::Sync(spec.clone(), Box::new(e)))?;
        for pattern in excludes {
            sync = sync
                .exclude(pattern)
                .map_err(|e| HookArgError::Sync(spec.clone(), Box::new(e)))?;
        }
        out.push(Arc::new(sync));
    }
    if let Some(path) = script {
        let hook =
            ScriptHook::from_file(path).map_err(|e| HookArgError::Script(path.clone(), e))?;
        out.push(Arc::new(hook));
    }
    Ok(out)
}
