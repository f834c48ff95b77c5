//! Containers a killed run left behind, found by label and removed.

use super::cli::{Podman, PodmanError};
use super::{LABEL_ATEX, LABEL_RUN};
use crate::scope::Scope;

/// One container of atex found on the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The run it belongs to (its `atex.run` label).
    pub run: String,
}

/// Lists atex's containers (every state), of the run `run` only when given.
pub async fn find_leftovers(
    podman: &Podman,
    run: Option<&str>,
    scope: &Scope,
) -> Result<Vec<Leftover>, PodmanError> {
    let label = match run {
        Some(r) => format!("label={LABEL_RUN}={r}"),
        None => format!("label={LABEL_ATEX}=1"),
    };
    let format = format!("{{{{.ID}}}}\t{{{{.Names}}}}\t{{{{index .Labels \"{LABEL_RUN}\"}}}}");
    let out = podman
        .run(
            &[
                "ps",
                "--all",
                "--no-trunc",
                "--filter",
                &label,
                "--format",
                &format,
            ],
            scope,
        )
        .await?;
    Ok(out
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            let id = f.next()?.trim().to_string();
            let name = f.next().unwrap_or_default().trim().to_string();
            let run = f.next().unwrap_or_default().trim().to_string();
            (!id.is_empty()).then_some(Leftover { id, name, run })
        })
        .collect())
}

/// Removes the containers (`podman rm -f -t 0`) and kills what is left of their processes
/// on this machine (conmon, `runc init`); returns how many containers were removed.
pub async fn remove_leftovers(
    podman: &Podman,
    leftovers: &[Leftover],
    scope: &Scope,
) -> Result<usize, PodmanError> {
    let ids: Vec<&str> = leftovers.iter().map(|l| l.id.as_str()).collect();
    let mut failed = false;
    for chunk in ids.chunks(50) {
        if let Err(e) = podman.remove(chunk, scope).await {
            tracing::debug!(error = %crate::error::chain(&e), "removal failed; retrying after the leftover processes are gone");
            failed = true;
        }
    }
    let names: Vec<&str> = leftovers.iter().map(|l| l.name.as_str()).collect();
    super::procs::kill_leftover_processes(&names).await;
    // Processes of a cancelled creation may have kept a container's mounts busy.
    if failed {
        for chunk in ids.chunks(50) {
            podman.remove(chunk, scope).await?;
        }
    }
    for l in leftovers {
        tracing::info!(container = %l.name, run = %l.run, "removed");
    }
    Ok(ids.len())
}
